"""The typed settings of the training loop and what it reports: `TrainConfig`, `TrainState`, `TrainResult`."""
from __future__ import annotations

import dataclasses
import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from types import SimpleNamespace


def _help(text: str, default=dataclasses.MISSING):
    return field(default=default, metadata={"help": text})


@dataclass
class TrainConfig:
    """Settings of the training loop (every field has help text: `TrainConfig.describe()`)."""
    output_dir: str = _help("where checkpoints and logs go", "runs/train")
    weights_name: str = _help("file name of the best checkpoint (published layout)", "weights.pth")
    resume_name: str = _help("file name of the resume checkpoint; '' = weights_name with 'weights' -> 'resume'", "")
    log_name: str = _help("file name of the text log; '' = weights_name with 'weights' -> 'logs', .txt", "")
    run_name: str = _help("name shown to trackers; '' = weights_name without extension", "")
    num_epochs: int = _help("passes over the training data", 1)
    batch_size: int = _help("examples per micro-batch per process", 1)
    eval_batch_size: int = _help("examples per eval batch per process; 0 = batch_size", 0)
    accumulation_steps: int = _help("micro-batches per optimizer step (per process)", 1)
    learning_rate: float = _help("peak learning rate (AdamW)", 1e-4)
    weight_decay: float = _help("AdamW weight decay", 0.01)
    warmup_steps: int = _help("optimizer steps of linear warm-up from lr/warmup to lr", 0)
    lr_schedule: str = _help("after warm-up: constant, linear (to 0) or cosine (to 0)", "constant")
    max_grad_norm: float = _help("clip the gradient norm to this; 0 = no clipping", 1.0)
    mixed_precision: str = _help("no, bf16 or fp16; '' = what accelerate launch / its config says", "")
    seed: int = _help("seed of data order, model-side randomness and dropout", 0)
    num_workers: int = _help("DataLoader worker processes per training process", 0)
    save_every_steps: int = _help("write the resume checkpoint every N optimizer steps; 0 = at epoch ends only", 0)
    log_every_steps: int = _help("log the training loss every N optimizer steps", 10)
    max_steps: int = _help("stop (resumably) after this many optimizer steps in total, where linear/cosine decay reach 0; 0 = all epochs", 0)
    load_from_checkpoint: bool = _help("continue from the resume checkpoint (or the best one) in output_dir", False)
    overwrite: bool = _help("start over in an output_dir that holds this run's files (they are replaced)", False)
    report_to: str = _help("trackers: none, tensorboard, wandb, or a comma list", "none")
    find_unused_parameters: bool = _help("DDP option for models with parameters that get no gradient", False)
    progress_bar: bool = _help("show a tqdm progress bar on the main process", True)
    cpu: bool = _help("train on the CPU even when an accelerator is present", False)
    num_threads: int = _help("CPU threads per process for torch; 0 = torch's default (accelerate launch "
                             "with several processes sets 1)", 0)

    def __post_init__(self):
        if self.lr_schedule not in ("constant", "linear", "cosine"):
            raise ValueError(f"lr_schedule must be constant, linear or cosine, not {self.lr_schedule!r}")
        for name in ("num_epochs", "batch_size", "accumulation_steps"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be at least 1, got {getattr(self, name)}")
        stem = Path(self.weights_name).stem
        if not self.resume_name:
            self.resume_name = (stem.replace("weights", "resume", 1) if "weights" in stem else f"resume_{stem}") + ".pth"
        if not self.log_name:
            self.log_name = (stem.replace("weights", "logs", 1) if "weights" in stem else f"logs_{stem}") + ".txt"
        if not self.run_name:
            self.run_name = stem

    @property
    def weights_path(self) -> Path:
        return Path(self.output_dir) / self.weights_name

    @property
    def resume_path(self) -> Path:
        return Path(self.output_dir) / self.resume_name

    @property
    def log_path(self) -> Path:
        return Path(self.output_dir) / self.log_name

    @property
    def steps_log_path(self) -> Path:
        return self.log_path.with_suffix(".steps.jsonl")

    @classmethod
    def describe(cls) -> dict[str, str]:
        return {f.name: f.metadata.get("help", "") for f in dataclasses.fields(cls)}

    @classmethod
    def from_settings(cls, settings: SimpleNamespace | Mapping, **overrides) -> "TrainConfig":
        """Pick the fields this class knows from stage settings (a parse_settings namespace or dict)."""
        values = dict(settings) if isinstance(settings, Mapping) else vars(settings)
        known = {f.name for f in dataclasses.fields(cls)}
        chosen = {k: v for k, v in values.items() if k in known}
        chosen.update(overrides)
        return cls(**chosen)

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)


@dataclass
class TrainState:
    """Where a run stands; stored in checkpoints."""
    epoch: int = 1  # the epoch in progress (1-based)
    step_in_epoch: int = 0  # optimizer steps done in that epoch
    global_step: int = 0
    completed_epochs: int = 0
    best_epoch: int = 0
    min_eval_loss: float = math.inf
    epoch_loss_sum: float = 0.0  # sum of micro-batch losses of this epoch, all processes
    epoch_loss_count: int = 0


@dataclass
class TrainResult:
    global_step: int
    completed_epochs: int
    best_epoch: int
    min_eval_loss: float
    train_losses: list[float]  # mean training loss of each completed epoch (this invocation)
    eval_losses: list[float]  # eval loss of each completed epoch (this invocation)
    stopped_at_max_steps: bool
    weights_path: Path
    resume_path: Path
    log_path: Path

