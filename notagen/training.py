"""One training loop for every stage: any model whose forward returns `.loss`, on `accelerate`.

    result = train(model, train_dataset, eval_dataset, collate_fn, TrainConfig(...))

The same code runs as `python script.py` (one device) and under
`accelerate launch [--multi_gpu|--cpu --num_processes N] [--mixed_precision bf16] script.py`.

Design choices
- Data parallel through accelerate (DDP, gloo on CPU). The data is split by our own
  `ShardedSampler` (DistributedSampler-style: a seeded permutation per epoch, padded to a multiple
  of the process count, every process a disjoint stride) and batches are moved to the device by
  hand: the DataLoader is *not* passed to `accelerator.prepare`, which would shard it a second
  time. The sampler can start mid-epoch, so a resumed run reads exactly the batches that an
  uninterrupted one would, without loading the skipped ones.
- Gradient accumulation by hand: `accelerator.no_sync` on all but the last micro-batch of a
  group, so DDP all-reduces once per optimizer step. A short last group of an epoch is averaged
  over its own size. Then gradient clipping, optimizer step, scheduler step (warm-up, then
  constant, linear or cosine). The scheduler is not given to `accelerator.prepare`, which would
  step it once per process.
- Mixed precision (bf16/fp16) is accelerate's autocast (+ GradScaler for fp16); weights stay fp32.
- Checkpoints (written atomically by rank 0, after every process has contributed its RNG state):
  * best file `<weights_name>`: the published layout (model, optimizer, lr_sched, epoch,
    best_epoch, min_eval_loss) + config, written when the eval loss improves (train loss when
    there is no eval set);
  * resume file `<resume_name>`: the same plus the step within the epoch, the global step, the
    running epoch loss, the GradScaler, and the python/numpy/torch(/cuda) RNG states of every
    process. Written every `save_every_steps` optimizer steps, at each epoch end and at `max_steps`.
  `load_from_checkpoint` continues from the resume file step-exactly (same per-step losses and
  final weights as an uninterrupted run); without one it falls back to the best file and
  continues after its epoch, as the published code does.
- RNG: data randomness should come from the dataset itself (see notagen.data: per example, seeded
  by seed/epoch/index); the DataLoader gets its own generator per epoch, so creating a loader never
  draws from the global RNG that dropout uses.
- Logging: tqdm on the main process, a text log (`<log_name>`), a JSON-lines step log next to it
  (`<log stem>.steps.jsonl`: step, epoch, loss, per-process losses, lr, grad norm), and
  accelerate's trackers when `report_to` names them (tensorboard / wandb; never required).
  Warnings of the `notagen` loggers (e.g. skipped data files) also go to the text log.

Reusable pieces for other trainers (M3, DPO): `TrainConfig`, `make_accelerator`, `ShardedSampler`,
`build_optimizer`, `build_scheduler`, `capture_rng_state` / `restore_rng_state`,
`save_training_state` / `load_training_state`, `RunLogger`, `evaluate`, `default_compute_loss`.
"""
from __future__ import annotations

import dataclasses
import json
import logging
import math
import os
import random
import sys
import time
from collections.abc import Callable, Mapping
from contextlib import nullcontext
from dataclasses import dataclass, field
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset, Sampler

from .checkpoint import read_checkpoint, load_state_dict_checked, save_checkpoint
from .io import atomic_write_json, atomic_write_text
from .paths import resolve_input_path, resolve_output_dir

logger = logging.getLogger("notagen.training")


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


# ---- accelerator, seeds, RNG state -------------------------------------------------------------
def make_accelerator(config: TrainConfig):
    """An `Accelerator` for this config: DDP kwargs, mixed precision, trackers (validated)."""
    from accelerate import Accelerator
    from accelerate.utils import DistributedDataParallelKwargs

    trackers = resolve_trackers(config.report_to)
    # `accelerate launch --multi_gpu` (torchrun) on a machine without accelerators: accelerate only
    # builds the gloo process group when told "cpu", so say it rather than train N separate copies
    world_size = int(os.environ.get("WORLD_SIZE", "1"))
    cpu = config.cpu or (world_size > 1 and not _has_accelerator_device())
    return Accelerator(
        mixed_precision=config.mixed_precision or None,
        cpu=cpu,
        log_with=trackers or None,
        project_dir=config.output_dir,
        kwargs_handlers=[DistributedDataParallelKwargs(find_unused_parameters=config.find_unused_parameters)],
    )


def _has_accelerator_device() -> bool:
    if torch.cuda.is_available():
        return True
    for name in ("xpu", "npu", "mlu", "musa", "hpu"):
        backend = getattr(torch, name, None)
        if backend is not None and getattr(backend, "is_available", lambda: False)():
            return True
    return False


def resolve_trackers(report_to: str) -> list[str]:
    """`report_to` -> accelerate tracker names; a named tracker that is not installed is an error."""
    from accelerate.utils import is_tensorboard_available, is_wandb_available

    names = [n.strip().lower() for n in str(report_to or "").split(",") if n.strip()]
    names = [n for n in names if n not in ("none", "no", "false", "")]
    available = {"tensorboard": is_tensorboard_available(), "wandb": is_wandb_available()}
    if "all" in names:
        return [n for n, ok in available.items() if ok]
    for name in names:
        if name not in available:
            raise ValueError(f"unknown tracker {name!r} in report_to; use none, tensorboard, wandb or all")
        if not available[name]:
            raise ImportError(f"report_to asks for {name}, which is not installed "
                              f"(pip install {name}) - or set report_to none")
    return names


def seed_everything(seed: int, process_specific: bool = False) -> None:
    """Seed python, numpy and torch (+ the process index when `process_specific`)."""
    from accelerate.utils import set_seed

    set_seed(seed, device_specific=process_specific)


def capture_rng_state(device: torch.device | None = None) -> dict:
    """This process's RNG states, in a form `torch.load(weights_only=True)` accepts."""
    np_state = np.random.get_state()
    state = {
        "python": random.getstate(),
        "numpy": (np_state[0], [int(x) for x in np_state[1]], int(np_state[2]), int(np_state[3]),
                  float(np_state[4])),
        "torch": torch.get_rng_state(),
    }
    if device is not None and device.type == "cuda" and torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state(device)
    return state


def restore_rng_state(state: dict, device: torch.device | None = None) -> None:
    random.setstate(_as_tuple(state["python"]))
    name, keys, pos, has_gauss, cached = state["numpy"]
    np.random.set_state((name, np.array(keys, dtype=np.uint32), pos, has_gauss, cached))
    torch.set_rng_state(state["torch"])
    if "cuda" in state and device is not None and device.type == "cuda":
        torch.cuda.set_rng_state(state["cuda"], device)


def _as_tuple(value):
    if isinstance(value, (list, tuple)):
        return tuple(_as_tuple(v) for v in value)
    return value


# ---- sampler -----------------------------------------------------------------------------------
class ShardedSampler(Sampler[int]):
    """DistributedSampler-style split: each process reads a disjoint stride of one seeded order.

    The order depends only on (seed, epoch); with `pad` the order is extended (cyclically) to a
    multiple of `num_replicas`, so every process gets the same number of examples (DDP needs it).
    `set_start(k)` skips this process's first k examples of the epoch (mid-epoch resume)."""

    def __init__(self, num_examples: int, num_replicas: int = 1, rank: int = 0, shuffle: bool = True,
                 seed: int = 0, pad: bool = True):
        if num_examples < 1:
            raise ValueError("cannot sample from an empty dataset")
        if not 0 <= rank < num_replicas:
            raise ValueError(f"rank {rank} is not in [0, {num_replicas})")
        self.num_examples, self.num_replicas, self.rank = num_examples, num_replicas, rank
        self.shuffle, self.seed, self.pad = shuffle, seed, pad
        self.epoch, self.start = 0, 0

    def set_epoch(self, epoch: int) -> None:
        self.epoch, self.start = epoch, 0

    def set_start(self, start: int) -> None:
        self.start = start

    def order(self) -> list[int]:
        if self.shuffle:
            generator = torch.Generator().manual_seed(self.seed * 1_000_003 + self.epoch)
            order = torch.randperm(self.num_examples, generator=generator).tolist()
        else:
            order = list(range(self.num_examples))
        if self.pad:
            total = math.ceil(self.num_examples / self.num_replicas) * self.num_replicas
            order = (order * math.ceil(total / len(order)))[:total]
        return order

    def shard(self) -> list[int]:
        """This process's examples of the whole epoch (ignoring `start`)."""
        return self.order()[self.rank::self.num_replicas]

    def __iter__(self):
        return iter(self.shard()[self.start:])

    def __len__(self) -> int:
        return max(0, len(self.shard()) - self.start)


# ---- optimizer, schedule -----------------------------------------------------------------------
class WarmupSchedule:
    """LR factor for optimizer step i (0-based): linear warm-up, then constant/linear/cosine."""

    def __init__(self, warmup_steps: int, total_steps: int, kind: str = "constant"):
        self.warmup_steps, self.total_steps, self.kind = warmup_steps, total_steps, kind

    def __call__(self, step: int) -> float:
        if step < self.warmup_steps:
            return (step + 1) / self.warmup_steps
        if self.kind == "constant":
            return 1.0
        progress = min(1.0, (step - self.warmup_steps) / max(1, self.total_steps - self.warmup_steps))
        if self.kind == "linear":
            return 1.0 - progress
        return 0.5 * (1.0 + math.cos(math.pi * progress))


def build_optimizer(model: torch.nn.Module, config: TrainConfig) -> torch.optim.Optimizer:
    """AdamW over all parameters, in `model.parameters()` order (as published, so published
    optimizer states load); parameters without gradients are skipped by AdamW itself."""
    return torch.optim.AdamW(model.parameters(), lr=config.learning_rate, weight_decay=config.weight_decay)


def build_scheduler(optimizer: torch.optim.Optimizer, config: TrainConfig, total_steps: int):
    return torch.optim.lr_scheduler.LambdaLR(
        optimizer, WarmupSchedule(config.warmup_steps, total_steps, config.lr_schedule))


# ---- logging -----------------------------------------------------------------------------------
class RunLogger:
    """Text log + JSON-lines step log + trackers, written by the main process only."""

    def __init__(self, accelerator, config: TrainConfig):
        self.accelerator = accelerator
        self.config = config
        self.main = accelerator.is_main_process
        self.trackers = bool(accelerator.log_with)
        self._handler = None
        if self.main:
            Path(config.output_dir).mkdir(parents=True, exist_ok=True)
            self._handler = logging.FileHandler(config.log_path, encoding="utf-8")
            self._handler.setLevel(logging.WARNING)
            self._handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
            logging.getLogger("notagen").addHandler(self._handler)
        if self.trackers:
            flat = {k: v for k, v in config.to_dict().items() if isinstance(v, (int, float, str, bool))}
            accelerator.init_trackers(config.run_name, config=flat)

    def text(self, message: str, echo: bool = True) -> None:
        if not self.main:
            return
        with open(self.config.log_path, "a", encoding="utf-8") as handle:
            handle.write(message.rstrip("\n") + "\n")
        if echo:
            _print(message)

    def step(self, record: dict) -> None:
        if self.main:
            with open(self.config.steps_log_path, "a", encoding="utf-8") as handle:
                handle.write(json.dumps(record) + "\n")
                handle.flush()
        if self.trackers:
            metrics = {f"train/{k}": v for k, v in record.items() if k in ("loss", "lr", "grad_norm")}
            self.accelerator.log(metrics, step=record["step"])

    def metrics(self, values: dict, step: int) -> None:
        if self.trackers:
            self.accelerator.log(values, step=step)

    def truncate_steps(self, last_step: int) -> None:
        """On resume: forget step records past the checkpoint, so the log reads like one run."""
        path = self.config.steps_log_path
        if not self.main or not path.exists():
            return
        kept = []
        for line in path.read_text(encoding="utf-8").splitlines():
            try:
                if json.loads(line)["step"] <= last_step:
                    kept.append(line)
            except (json.JSONDecodeError, KeyError, TypeError):
                continue  # a line cut by a crash
        atomic_write_text(path, "".join(line + "\n" for line in kept))

    def close(self) -> None:
        if self._handler is not None:
            logging.getLogger("notagen").removeHandler(self._handler)
            self._handler.close()
        if self.trackers:
            self.accelerator.end_training()


def _print(message: str) -> None:
    try:
        from tqdm import tqdm
        tqdm.write(message, file=sys.stderr)
    except ImportError:  # pragma: no cover
        print(message, file=sys.stderr)


# ---- checkpoints -------------------------------------------------------------------------------
def save_training_state(path: Path, accelerator, model, optimizer, scheduler, state: TrainState,
                        config: TrainConfig | None = None, **extra) -> None:
    """Write a resume checkpoint. Call it on EVERY process (RNG states are gathered); rank 0 writes."""
    from accelerate.utils import gather_object

    rng_states = gather_object([capture_rng_state(accelerator.device)])
    loss_sum, loss_count = _reduce_sum(accelerator, [state.epoch_loss_sum, float(state.epoch_loss_count)])
    if accelerator.is_main_process:
        scaler = getattr(accelerator, "scaler", None)
        save_checkpoint(
            path, accelerator.unwrap_model(model),
            optimizer=optimizer.state_dict(), lr_sched=scheduler.state_dict(),
            epoch=state.completed_epochs, best_epoch=state.best_epoch, min_eval_loss=state.min_eval_loss,
            progress={**dataclasses.asdict(state), "epoch_loss_sum": loss_sum, "epoch_loss_count": int(loss_count)},
            rng=rng_states, num_processes=accelerator.num_processes,
            scaler=scaler.state_dict() if scaler is not None else None,
            train_config=config.to_dict() if config is not None else None,
            **extra,
        )
    accelerator.wait_for_everyone()


def load_training_state(path: Path) -> dict:
    """A checkpoint dict (see `read_checkpoint`); resume files carry `progress` and `rng`."""
    return read_checkpoint(path)


def _reduce_sum(accelerator, values: list[float]) -> list[float]:
    tensor = torch.tensor(values, dtype=torch.float64, device=accelerator.device)
    if accelerator.num_processes > 1:
        tensor = accelerator.reduce(tensor, reduction="sum")
    return tensor.tolist()


# ---- loss --------------------------------------------------------------------------------------
def default_compute_loss(model, batch) -> torch.Tensor:
    """`model(**batch).loss` for dict batches, `model(*batch)` for tuples, `model(batch)` otherwise."""
    if isinstance(batch, Mapping):
        output = model(**batch)
    elif isinstance(batch, (list, tuple)):
        output = model(*batch)
    else:
        output = model(batch)
    if hasattr(output, "loss"):
        return output.loss
    if isinstance(output, Mapping):
        return output["loss"]
    return output


def split_loss_and_metrics(output) -> tuple[torch.Tensor, dict]:
    """compute_loss may return a loss, or (loss, {name: float}) whose values join the step log."""
    if isinstance(output, tuple):
        return output[0], dict(output[1] or {})
    return output, {}


@torch.no_grad()
def evaluate(accelerator, model, dataset: Dataset, collate_fn, batch_size: int,
             compute_loss: Callable = default_compute_loss, num_workers: int = 0) -> float:
    """Mean batch loss over `dataset`, split over all processes (no duplicates, no DDP collectives)."""
    from accelerate.utils import send_to_device

    sampler = ShardedSampler(len(dataset), accelerator.num_processes, accelerator.process_index,
                             shuffle=False, pad=False)
    loader = DataLoader(dataset, batch_size=batch_size, sampler=sampler, collate_fn=collate_fn,
                        num_workers=num_workers, generator=torch.Generator().manual_seed(0))
    inner = accelerator.unwrap_model(model)
    was_training = inner.training
    inner.eval()
    total = torch.zeros(2, dtype=torch.float64, device=accelerator.device)
    with accelerator.autocast():
        for batch in loader:
            loss, _ = split_loss_and_metrics(compute_loss(inner, send_to_device(batch, accelerator.device)))
            total[0] += loss.detach().double()
            total[1] += 1
    inner.train(was_training)
    if accelerator.num_processes > 1:
        total = accelerator.reduce(total, reduction="sum")
    return (total[0] / total[1]).item() if total[1] > 0 else math.nan


# ---- the loop ----------------------------------------------------------------------------------
def train(model: torch.nn.Module, train_dataset: Dataset, eval_dataset: Dataset | None = None,
          collate_fn: Callable | None = None, config: TrainConfig | None = None, *,
          compute_loss: Callable[[torch.nn.Module, Any], Any] = default_compute_loss,
          optimizer: torch.optim.Optimizer | None = None, accelerator=None,
          checkpoint_extra: dict | None = None) -> TrainResult:
    """Train `model` (forward -> `.loss`) on `train_dataset`; see the module docstring.

    compute_loss(model, batch) -> scalar loss, or (loss, {name: float}) to log more per step, for
    models that need more than `model(**batch)`.
    optimizer: defaults to `build_optimizer(model, config)` (built after the model is on device).
    checkpoint_extra: more entries for every checkpoint (e.g. a stage's settings).
    Datasets may define `set_epoch(epoch)`; it is called on the training set each epoch."""
    from accelerate.utils import send_to_device
    from tqdm.auto import tqdm

    config = config or TrainConfig()
    check_output_dir(config)
    if config.num_threads > 0:
        torch.set_num_threads(config.num_threads)
    accelerator = accelerator or make_accelerator(config)
    device = accelerator.device
    run_log = RunLogger(accelerator, config)
    extra = dict(checkpoint_extra or {})
    if accelerator.is_main_process and isinstance(extra.get("settings"), dict) and not config.load_from_checkpoint:
        # the resolved settings of a fresh start: `--config <output_dir>/settings.json` repeats the run
        started = {k: v for k, v in extra["settings"].items() if k not in ("load_from_checkpoint", "overwrite")}
        atomic_write_json(Path(config.output_dir) / "settings.json", started)
    if len(train_dataset) == 0:
        raise ValueError("the training dataset is empty")

    sampler = ShardedSampler(len(train_dataset), accelerator.num_processes, accelerator.process_index,
                             shuffle=True, seed=config.seed)
    batches_per_epoch = math.ceil(len(sampler) / config.batch_size)
    steps_per_epoch = math.ceil(batches_per_epoch / config.accumulation_steps)
    total_steps = steps_per_epoch * config.num_epochs
    if config.max_steps:  # the run ends there, so linear/cosine decay reach 0 there (as in HF Trainer)
        total_steps = min(total_steps, config.max_steps)

    model.to(device)
    model.train()
    optimizer = optimizer or build_optimizer(model, config)
    scheduler = build_scheduler(optimizer, config, total_steps)
    state = TrainState()

    resume = _load_resume(config, accelerator, run_log) if config.load_from_checkpoint else None
    if resume is not None:
        checkpoint, exact = resume
        load_state_dict_checked(model, checkpoint["model"], source=str(exact))
        try:
            optimizer.load_state_dict(checkpoint["optimizer"])
        except (KeyError, ValueError) as error:
            run_log.text(f"warning: optimizer state in {exact} does not fit ({error}); fresh optimizer")
        if "lr_sched" in checkpoint:
            scheduler.load_state_dict(checkpoint["lr_sched"])
        state = _state_from_checkpoint(checkpoint, accelerator)
    else:
        seed_everything(config.seed, process_specific=True)
        if accelerator.is_main_process:  # a fresh run starts fresh logs
            config.steps_log_path.unlink(missing_ok=True)

    model, optimizer = accelerator.prepare(model, optimizer)
    if resume is not None:
        checkpoint, _ = resume
        scaler = getattr(accelerator, "scaler", None)
        if scaler is not None and checkpoint.get("scaler"):
            scaler.load_state_dict(checkpoint["scaler"])
        rngs = checkpoint.get("rng")
        if rngs and checkpoint.get("num_processes") == accelerator.num_processes:
            restore_rng_state(rngs[accelerator.process_index], device)
        else:
            why = (f"it was written by {checkpoint.get('num_processes')} process(es), this run has "
                   f"{accelerator.num_processes}" if rngs else "it holds no RNG states")
            run_log.text(f"warning: not a step-exact continuation ({why}): data split and random "
                         f"streams differ from an uninterrupted run")
            seed_everything(config.seed + state.global_step, process_specific=True)
        run_log.truncate_steps(state.global_step)
        del checkpoint, resume

    sampler.set_epoch(state.epoch)
    _log_start(run_log, accelerator, config, sampler, steps_per_epoch, state, model)
    result_train, result_eval = [], []
    stopped = False
    start_time = time.time()

    while state.epoch <= config.num_epochs and not stopped:
        epoch = state.epoch
        sampler.set_epoch(epoch)
        if hasattr(train_dataset, "set_epoch"):
            train_dataset.set_epoch(epoch)
        first_step = state.step_in_epoch
        sampler.set_start(first_step * config.accumulation_steps * config.batch_size)
        loader = DataLoader(train_dataset, batch_size=config.batch_size, sampler=sampler,
                            collate_fn=collate_fn, num_workers=config.num_workers,
                            pin_memory=device.type == "cuda",
                            generator=torch.Generator().manual_seed(config.seed * 7919 + epoch))
        batches = iter(loader)
        epoch_sum = torch.zeros((), dtype=torch.float64, device=device)
        epoch_count = 0
        if first_step == 0:
            state.epoch_loss_sum, state.epoch_loss_count = 0.0, 0
        bar = tqdm(total=steps_per_epoch, initial=first_step, desc=f"epoch {epoch}", dynamic_ncols=True,
                   disable=not (accelerator.is_main_process and config.progress_bar))
        for step in range(first_step, steps_per_epoch):
            group = min(config.accumulation_steps, batches_per_epoch - step * config.accumulation_steps)
            step_loss = torch.zeros((), dtype=torch.float64, device=device)
            step_metrics: dict[str, float] = {}
            for micro in range(group):
                batch = send_to_device(next(batches), device, non_blocking=True)
                syncing = micro == group - 1
                with nullcontext() if syncing else accelerator.no_sync(model):
                    loss, metrics = split_loss_and_metrics(compute_loss(model, batch))
                    accelerator.backward(loss / group)
                step_loss += loss.detach().double()
                for name, value in metrics.items():
                    step_metrics[name] = step_metrics.get(name, 0.0) + float(value) / group
            grad_norm, lr = None, optimizer.param_groups[0]["lr"]
            if config.max_grad_norm > 0:
                grad_norm = accelerator.clip_grad_norm_(model.parameters(), config.max_grad_norm)
            optimizer.step()
            if not accelerator.optimizer_step_was_skipped:
                scheduler.step()
            optimizer.zero_grad(set_to_none=True)
            epoch_sum += step_loss
            epoch_count += group
            state.global_step += 1
            state.step_in_epoch = step + 1
            bar.update(1)

            if config.log_every_steps and state.global_step % config.log_every_steps == 0:
                losses = accelerator.gather((step_loss / group).reshape(1).float()).tolist()
                record = {"step": state.global_step, "epoch": epoch, "loss": sum(losses) / len(losses),
                          "process_losses": losses, "lr": lr,
                          "grad_norm": float(grad_norm) if grad_norm is not None else None}
                if step_metrics:  # extra values from compute_loss (e.g. DPO reward margins), process mean
                    names = sorted(step_metrics)
                    values = accelerator.gather(torch.tensor([[step_metrics[n] for n in names]],
                                                             dtype=torch.float64, device=device))
                    record.update(zip(names, values.mean(dim=0).tolist()))
                run_log.step(record)
                bar.set_postfix(loss=f"{record['loss']:.4f}", lr=f"{record['lr']:.2e}")

            at_max = bool(config.max_steps) and state.global_step >= config.max_steps
            last_of_epoch = step + 1 == steps_per_epoch
            if not last_of_epoch and (at_max or (config.save_every_steps
                                                 and state.global_step % config.save_every_steps == 0)):
                _fold_epoch_loss(state, epoch_sum, epoch_count)
                epoch_sum.zero_()
                epoch_count = 0
                save_training_state(config.resume_path, accelerator, model, optimizer, scheduler, state,
                                    config, **extra)
                if at_max:
                    if accelerator.is_main_process and not config.weights_path.exists():
                        # stopped before any epoch end: leave usable weights (the best file is
                        # otherwise written at epoch ends only)
                        save_checkpoint(config.weights_path, accelerator.unwrap_model(model),
                                        optimizer=optimizer.state_dict(), lr_sched=scheduler.state_dict(),
                                        epoch=epoch, best_epoch=state.best_epoch,
                                        min_eval_loss=state.min_eval_loss, **extra)
                    run_log.text(f"stopped at max_steps {config.max_steps} (step {state.global_step}); "
                                 f"continue with load_from_checkpoint")
                    stopped = True
                    break
        bar.close()
        if stopped:
            break

        # ---- end of epoch: mean train loss, eval, best + resume checkpoints
        _fold_epoch_loss(state, epoch_sum, epoch_count)
        loss_sum, loss_count = _reduce_sum(accelerator, [state.epoch_loss_sum, float(state.epoch_loss_count)])
        train_loss = loss_sum / max(1.0, loss_count)
        eval_loss = math.nan
        if eval_dataset is not None and len(eval_dataset) > 0:
            eval_loss = evaluate(accelerator, model, eval_dataset, collate_fn,
                                 config.eval_batch_size or config.batch_size, compute_loss, config.num_workers)
        criterion = eval_loss if not math.isnan(eval_loss) else train_loss
        state.completed_epochs = epoch
        improved = criterion < state.min_eval_loss
        if improved:
            state.best_epoch, state.min_eval_loss = epoch, criterion
        run_log.text(f"Epoch {epoch}\ntrain_loss: {train_loss:.6f}\neval_loss: {eval_loss:.6f}\n"
                     f"time: {time.strftime('%Y-%m-%d %H:%M:%S')} ({time.time() - start_time:.1f} s)"
                     + (f"\nsaved best weights: {config.weights_path}" if improved else "") + "\n")
        run_log.metrics({"train/epoch_loss": train_loss, "eval/loss": eval_loss, "epoch": epoch},
                        step=state.global_step)
        result_train.append(train_loss)
        result_eval.append(eval_loss)
        if improved and accelerator.is_main_process:
            save_checkpoint(config.weights_path, accelerator.unwrap_model(model),
                            optimizer=optimizer.state_dict(), lr_sched=scheduler.state_dict(),
                            epoch=epoch, best_epoch=state.best_epoch, min_eval_loss=state.min_eval_loss,
                            **extra)
        state.epoch, state.step_in_epoch = epoch + 1, 0
        state.epoch_loss_sum, state.epoch_loss_count = 0.0, 0
        save_training_state(config.resume_path, accelerator, model, optimizer, scheduler, state, config, **extra)
        if config.max_steps and state.global_step >= config.max_steps and state.epoch <= config.num_epochs:
            run_log.text(f"stopped at max_steps {config.max_steps}; continue with load_from_checkpoint")
            stopped = True

    if not stopped:
        run_log.text(f"finished: {state.completed_epochs} epochs, {state.global_step} steps, best epoch "
                     f"{state.best_epoch} (loss {state.min_eval_loss:.6f}), {time.time() - start_time:.1f} s")
    run_log.close()
    accelerator.wait_for_everyone()
    accelerator.unwrap_model(model, keep_fp32_wrapper=False)  # restore the plain forward
    return TrainResult(state.global_step, state.completed_epochs, state.best_epoch, state.min_eval_loss,
                       result_train, result_eval, stopped, config.weights_path, config.resume_path,
                       config.log_path)


def _fold_epoch_loss(state: TrainState, epoch_sum: torch.Tensor, epoch_count: int) -> None:
    """Add this process's not yet recorded losses to the state (kept per process until saved)."""
    state.epoch_loss_sum += float(epoch_sum)
    state.epoch_loss_count += epoch_count


class RunExistsError(FileExistsError):
    """A fresh run asked for in a folder that holds a run of the same name."""


def check_output_dir(config: TrainConfig) -> None:
    """Refuse, before anything is written, to start a fresh run over an earlier run's files: one
    forgotten flag must not replace hours of training. Resuming or `overwrite` are the ways on.
    Temporaries of a checkpoint save that was killed are removed."""
    for name in (config.weights_name, config.resume_name):  # left by a save that was killed
        for temporary in Path(config.output_dir).glob(f".{name}.*.tmp"):
            temporary.unlink(missing_ok=True)
    if config.load_from_checkpoint or config.overwrite:
        return
    found = [path.name for path in (config.weights_path, config.resume_path, config.steps_log_path)
             if path.exists()]
    if found:
        raise RunExistsError(f"{config.output_dir} holds a run of the same name ({', '.join(found)}): continue it "
                             f"with --load_from_checkpoint true, start over with --overwrite true (its files are "
                             f"replaced), or choose another --output_dir")


def _load_resume(config: TrainConfig, accelerator, run_log: RunLogger):
    """(checkpoint, path) to continue from, or an error naming what was looked for."""
    for path in (config.resume_path, config.weights_path):
        if path.is_file():
            checkpoint = load_training_state(path)
            run_log.text(f"resuming from {path}" + ("" if "progress" in checkpoint else
                                                    " (epoch-level: no step/RNG state in this file)"))
            return checkpoint, path
    raise FileNotFoundError(f"load_from_checkpoint is set but neither {config.resume_path} nor "
                            f"{config.weights_path} exists (same output_dir, tag and sizes as the run "
                            f"to continue?)")


def _state_from_checkpoint(checkpoint: dict, accelerator) -> TrainState:
    progress = checkpoint.get("progress")
    if progress is None:  # a published checkpoint: continue after its epoch
        epoch = int(checkpoint.get("epoch", 0))
        return TrainState(epoch=epoch + 1, completed_epochs=epoch,
                          best_epoch=int(checkpoint.get("best_epoch", epoch)),
                          min_eval_loss=float(checkpoint.get("min_eval_loss", math.inf)))
    known = {f.name for f in dataclasses.fields(TrainState)}
    state = TrainState(**{k: v for k, v in progress.items() if k in known})
    if not accelerator.is_main_process:  # the saved running loss is the sum over all processes
        state.epoch_loss_sum, state.epoch_loss_count = 0.0, 0
    return state


def _log_start(run_log: RunLogger, accelerator, config: TrainConfig, sampler: ShardedSampler,
               steps_per_epoch: int, state: TrainState, model) -> None:
    from accelerate.utils import gather_object

    shard = sampler.shard()
    info = gather_object([{"process": accelerator.process_index, "examples": len(shard),
                           "device": str(accelerator.device), "first": shard[:4]}])
    params = sum(p.numel() for p in accelerator.unwrap_model(model).parameters())
    lines = [f"run {config.run_name}: {params / 1e6:.2f}M parameters, {accelerator.num_processes} process(es), "
             f"mixed precision {accelerator.mixed_precision}, {steps_per_epoch} optimizer steps per epoch "
             f"(batch {config.batch_size} x accumulation {config.accumulation_steps} per process)"]
    lines += [f"  process {i['process']} on {i['device']}: {i['examples']} examples per epoch, epoch "
              f"{state.epoch} order starts {i['first']}" for i in info]
    if state.global_step:
        lines.append(f"  continuing at epoch {state.epoch}, step {state.step_in_epoch} of the epoch "
                     f"(global step {state.global_step})")
    run_log.text("\n".join(lines))


# ---- the NotaGen stages (pretrain/ and finetune/ train-gen.py) ----------------------------------
SIZE_SETTINGS = ("patch_size", "patch_length", "patch_num_layers", "char_num_layers", "hidden_size")


def find_weights_file(path: str | Path) -> Path:
    """A weights file, or the single `weights_notagen_*.pth` inside a folder."""
    path = resolve_input_path(path)
    if path.is_dir():
        found = sorted(path.glob("weights_notagen_*.pth"))
        if len(found) != 1:
            names = ", ".join(p.name for p in found) or "none"
            raise FileNotFoundError(f"{path} must hold exactly one weights_notagen_*.pth to use as "
                                    f"pre-trained weights (found {names}); give the file instead")
        return found[0]
    if not path.is_file():
        raise FileNotFoundError(f"pre-trained weights not found: {path}")
    return path


def notagen_model_config(settings, base=None):
    """Sizes: settings that are not 0 override the preset (pre-training) or must match the
    pre-trained file (fine-tuning, `base` = the file's config)."""
    from .config import resolve_config

    given = {name: int(getattr(settings, name, 0) or 0) for name in SIZE_SETTINGS}
    if base is not None:
        clashes = [f"{n}={v} (file: {getattr(base, n)})" for n, v in given.items() if v and v != getattr(base, n)]
        if clashes:
            raise ValueError(f"size settings do not fit the pre-trained weights: {', '.join(clashes)}; "
                             f"leave them at 0 to take the sizes from the file")
        return base
    config = resolve_config(getattr(settings, "preset", "") or "small")
    return config.with_(**{n: v for n, v in given.items() if v})


def notagen_compute_loss(patch_sample: int):
    """NotaGen's loss on a collated batch; patch sampling in training only (eval sees all patches)."""
    def compute_loss(model, batch):
        sample = patch_sample if model.training else 0
        return model(batch["patches"], batch["masks"], patch_sample=sample).loss
    return compute_loss


def run_notagen_training(settings: SimpleNamespace, stage: str) -> TrainResult:
    """Everything `pretrain/train-gen.py` and `finetune/train-gen.py` do, from parsed settings."""
    from .checkpoint import load_model
    from .config import run_name as notagen_run_name, weights_file_name
    from .data import NotaGenDataset, collate_patches
    from .model import NotaGenLMHeadModel

    if stage not in ("pretrain", "finetune"):
        raise ValueError(f"unknown stage {stage!r}")
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    if getattr(settings, "num_threads", 0) > 0:
        torch.set_num_threads(settings.num_threads)
    seed_everything(settings.seed)  # the same initial weights in every process

    pretrained = None
    if stage == "finetune":
        if not getattr(settings, "pretrained_path", ""):
            raise ValueError("set pretrained_path (a weights file, or a folder holding one) to fine-tune")
        pretrained = find_weights_file(settings.pretrained_path)
        model = load_model(pretrained)
        model_config = notagen_model_config(settings, base=model.config)
        model.train()
    else:
        model_config = notagen_model_config(settings)
        model = NotaGenLMHeadModel(model_config)
    # GPT-2's token embedding of the patch decoder is never used (inputs are embeddings): keep it
    # out of DDP's gradient bookkeeping, but in the optimizer (published optimizer layout)
    model.patch_level_decoder.base.wte.weight.requires_grad_(False)

    key_mode = getattr(settings, "key_mode", "") or ("near" if stage == "finetune" else "uniform")
    data_args = dict(patch_size=model_config.patch_size, patch_length=model_config.patch_length,
                     patch_stream=settings.patch_stream, seed=settings.seed,
                     require_prompt_lines=stage == "finetune")
    train_index = resolve_input_path(settings.data_train_index_path)
    train_data = NotaGenDataset(train_index, key_mode=key_mode, **data_args)
    eval_data = None
    if settings.data_eval_index_path:
        eval_index = resolve_input_path(settings.data_eval_index_path)
        eval_data = NotaGenDataset(eval_index, key_mode=key_mode, **data_args)

    tag_name = notagen_run_name(model_config, settings.exp_tag, settings.learning_rate, settings.batch_size)
    report_to = settings.report_to
    if getattr(settings, "wandb_logging", False) and "wandb" not in report_to:
        report_to = "wandb" if report_to in ("", "none") else f"{report_to},wandb"
    config = TrainConfig.from_settings(
        settings, output_dir=str(resolve_output_dir(settings.output_dir)),
        weights_name=weights_file_name(model_config, settings.exp_tag, settings.learning_rate, settings.batch_size),
        run_name=f"notagen_{tag_name}", report_to=report_to)
    check_output_dir(config)  # before prompts.txt is written
    if stage == "finetune" and int(os.environ.get("RANK", "0")) == 0:
        # the prompts this model knows (data-formats.md s.6), where the inference script looks
        triples = train_data.prompt_triples()
        if triples:
            atomic_write_text(Path(config.output_dir) / "prompts.txt",
                              "".join(f"{p}|{c}|{i}\n" for p, c, i in triples))
    extra = {"stage": stage, "settings": {k: v for k, v in vars(settings).items()
                                          if isinstance(v, (int, float, str, bool)) or v is None}}
    if pretrained is not None:
        extra["pretrained_from"] = str(pretrained)
    return train(model, train_data, eval_data, collate_patches, config,
                 compute_loss=notagen_compute_loss(settings.patch_sampling_batch_size),
                 checkpoint_extra=extra)

