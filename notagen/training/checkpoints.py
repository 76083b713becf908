"""Checkpoints of a training run: the resume file (step-exact), the best weights (published
layout), and the guard that keeps a fresh run from replacing an earlier one."""
from __future__ import annotations

import dataclasses
import math
from pathlib import Path

import torch
from accelerate.utils import gather_object

from ..checkpoint import read_checkpoint, save_checkpoint
from ..lora import has_lora
from .parts import RunLogger, capture_rng_state
from .settings import TrainConfig, TrainState


def save_training_state(path: Path, accelerator, model, optimizer, scheduler, state: TrainState,
                        config: TrainConfig | None = None, **extra) -> None:
    """Write a resume checkpoint. Call it on EVERY process (RNG states are gathered); rank 0 writes.
    A LoRA model's resume file holds its adapters only (the base is the pre-trained file)."""
    rng_states = gather_object([capture_rng_state(accelerator.device)])
    loss_sum, loss_count = reduce_sum(accelerator, [state.epoch_loss_sum, float(state.epoch_loss_count)])
    if accelerator.is_main_process:
        scaler = getattr(accelerator, "scaler", None)
        save_checkpoint(
            path, accelerator.unwrap_model(model), adapter_only=True,
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


def reduce_sum(accelerator, values: list[float]) -> list[float]:
    tensor = torch.tensor(values, dtype=torch.float64, device=accelerator.device)
    if accelerator.num_processes > 1:
        tensor = accelerator.reduce(tensor, reduction="sum")
    return tensor.tolist()


def save_weights(path: Path, accelerator, model, optimizer, scheduler, state: TrainState, epoch: int,
                 **extra) -> None:
    """Write the best-weights file (`save_model_files`); rank 0 only, no collectives."""
    if accelerator.is_main_process:
        save_model_files(path, accelerator.unwrap_model(model), optimizer=optimizer.state_dict(),
                         lr_sched=scheduler.state_dict(), epoch=epoch, best_epoch=state.best_epoch,
                         min_eval_loss=state.min_eval_loss, **extra)


def save_model_files(path: Path, model, optimizer=None, lr_sched=None, **extra) -> None:
    """A model's weights file in the published layout (adapters merged) with `extra` entries; for a
    LoRA model also its adapter file beside it (`adapter_path`), without the optimizer state."""
    states = {key: value for key, value in (("optimizer", optimizer), ("lr_sched", lr_sched)) if value is not None}
    save_checkpoint(path, model, **states, **extra)
    if has_lora(model):
        save_checkpoint(adapter_path(path), model, adapter_only=True, **extra)


def adapter_path(weights_path: Path) -> Path:
    """Where the adapter file of a LoRA run's weights goes: `weights_x.pth` -> `adapter_x.pth`."""
    name = Path(weights_path).name
    return Path(weights_path).with_name("adapter_" + name[len("weights_"):] if name.startswith("weights_")
                                        else "adapter_" + name)


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


def find_resume(config: TrainConfig, run_log: RunLogger):
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


def state_from_checkpoint(checkpoint: dict, accelerator) -> TrainState:
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
