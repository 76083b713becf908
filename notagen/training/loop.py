"""`train()`: the loop itself, in named phases.

    setup      check the folder, build the accelerator, logger, sampler, optimizer and schedule;
               continue from a checkpoint or seed a fresh start; `accelerator.prepare`
    epoch      batches from the sampler's position, one `optimizer_step` each, logs and
               periodic resume checkpoints; stops early at `max_steps`
    epoch end  mean train loss, eval loss, best weights, resume checkpoint
    finish     closing log line, TrainResult

The epoch loss is tallied in one place (`Run.fold_loss`, called before every save and at the
epoch end); the best weights are written by one function (`save_weights`).
"""
from __future__ import annotations

import math
import time
from collections.abc import Callable, Mapping
from contextlib import nullcontext
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from accelerate.utils import gather_object, send_to_device
from torch.utils.data import DataLoader, Dataset
from tqdm.auto import tqdm

from ..checkpoint import load_state_dict_checked
from ..lora import has_lora, load_adapter_state
from ..settings import apply_num_threads, record_settings
from .checkpoints import (check_output_dir, find_resume, reduce_sum, save_training_state, save_weights,
                          state_from_checkpoint)
from .parts import (RunLogger, ShardedSampler, build_optimizer, build_scheduler, make_accelerator,
                    restore_rng_state, seed_everything)
from .settings import TrainConfig, TrainResult, TrainState


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
def evaluate_loss(accelerator, model, dataset: Dataset, collate_fn, batch_size: int,
                  compute_loss: Callable = default_compute_loss, num_workers: int = 0) -> float:
    """Mean batch loss over `dataset`, split over all processes (no duplicates, no DDP collectives)."""
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


@dataclass
class Run:
    """What one call of `train()` holds while it runs."""
    config: TrainConfig
    accelerator: Any
    model: torch.nn.Module
    optimizer: torch.optim.Optimizer
    scheduler: Any
    sampler: ShardedSampler
    run_log: RunLogger
    state: TrainState
    batches_per_epoch: int
    steps_per_epoch: int
    extra: dict  # more entries of every checkpoint
    loss_sum: torch.Tensor = None  # this process's micro-batch losses not yet folded into `state`
    loss_count: int = 0
    train_losses: list[float] = field(default_factory=list)
    eval_losses: list[float] = field(default_factory=list)
    started: float = field(default_factory=time.time)

    def __post_init__(self):
        self.loss_sum = torch.zeros((), dtype=torch.float64, device=self.accelerator.device)

    def fold_loss(self) -> None:
        """Move the running losses into the state (kept per process until a save sums them)."""
        self.state.epoch_loss_sum += float(self.loss_sum)
        self.state.epoch_loss_count += self.loss_count
        self.loss_sum.zero_()
        self.loss_count = 0

    def at_max_steps(self) -> bool:
        return bool(self.config.max_steps) and self.state.global_step >= self.config.max_steps

    def save_resume(self) -> None:
        """The resume checkpoint (every process takes part)."""
        self.fold_loss()
        save_training_state(self.config.resume_path, self.accelerator, self.model, self.optimizer,
                            self.scheduler, self.state, self.config, **self.extra)

    def save_best(self, epoch: int) -> None:
        save_weights(self.config.weights_path, self.accelerator, self.model, self.optimizer, self.scheduler,
                     self.state, epoch, **self.extra)


def train(model: torch.nn.Module, train_dataset: Dataset, eval_dataset: Dataset | None = None,
          collate_fn: Callable | None = None, config: TrainConfig | None = None, *,
          compute_loss: Callable[[torch.nn.Module, Any], Any] = default_compute_loss,
          optimizer: torch.optim.Optimizer | None = None, accelerator=None,
          checkpoint_extra: dict | None = None) -> TrainResult:
    """Train `model` (forward -> `.loss`) on `train_dataset`; see the package docstring.

    compute_loss(model, batch) -> scalar loss, or (loss, {name: float}) to log more per step, for
    models that need more than `model(**batch)`.
    optimizer: defaults to `build_optimizer(model, config)` (built after the model is on device).
    checkpoint_extra: more entries for every checkpoint (e.g. a stage's settings).
    Datasets may define `set_epoch(epoch)`; it is called on the training set each epoch."""
    run = setup(model, train_dataset, config or TrainConfig(), optimizer, accelerator, checkpoint_extra)
    stopped = False
    while run.state.epoch <= run.config.num_epochs and not stopped:
        epoch = run.state.epoch
        run_epoch(run, train_dataset, collate_fn, compute_loss)
        if run.state.step_in_epoch >= run.steps_per_epoch:  # ">": resumed with fewer steps per epoch
            end_epoch(run, epoch, eval_dataset, collate_fn, compute_loss)
        else:  # stopped mid-epoch at max_steps: leave resumable state and usable weights
            run.save_resume()
            if not run.config.weights_path.exists():
                run.save_best(epoch)
        stopped = run.at_max_steps() and run.state.epoch <= run.config.num_epochs
    return finish(run, stopped)


def setup(model, train_dataset, config: TrainConfig, optimizer, accelerator, checkpoint_extra) -> Run:
    """Everything before the first step; a resumed run ends here in the state it was saved in."""
    check_output_dir(config)
    apply_num_threads(config)
    accelerator = accelerator or make_accelerator(config)
    device = accelerator.device
    run_log = RunLogger(accelerator, config)
    extra = dict(checkpoint_extra or {})
    if accelerator.is_main_process and isinstance(extra.get("settings"), dict) and not config.load_from_checkpoint:
        # the resolved settings of a fresh start: `--config <output_dir>/settings.json` repeats the run
        record_settings(extra["settings"], Path(config.output_dir) / "settings.json")
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
    resume = find_resume(config, run_log) if config.load_from_checkpoint else None
    if resume is not None:
        checkpoint, path = resume
        load_weights(model, checkpoint, path)
        try:
            optimizer.load_state_dict(checkpoint["optimizer"])
        except (KeyError, ValueError) as error:
            run_log.text(f"warning: optimizer state in {path} does not fit ({error}); fresh optimizer")
        if "lr_sched" in checkpoint:
            scheduler.load_state_dict(checkpoint["lr_sched"])
        state = state_from_checkpoint(checkpoint, accelerator)
    else:
        seed_everything(config.seed, process_specific=True)
        if accelerator.is_main_process:  # a fresh run starts fresh logs
            config.steps_log_path.unlink(missing_ok=True)

    model, optimizer = accelerator.prepare(model, optimizer)
    if resume is not None:  # what only exists after prepare: the GradScaler, and the RNG to restore last
        _restore_after_prepare(resume[0], accelerator, config, state, run_log)
        del resume
    sampler.set_epoch(state.epoch)
    run = Run(config, accelerator, model, optimizer, scheduler, sampler, run_log, state,
              batches_per_epoch, steps_per_epoch, extra)
    _log_start(run)
    return run


def load_weights(model, checkpoint: dict, path: Path) -> None:
    """A checkpoint's weights into the model: all of them, or a LoRA run's adapters."""
    if checkpoint.get("adapter_only"):
        if not has_lora(model):
            raise ValueError(f"{path} holds LoRA adapters only: continue it with the same lora_rank")
        saved, now = checkpoint.get("lora") or {}, model.lora.to_dict()
        if saved and saved != now:
            raise ValueError(f"{path} holds adapters made with {saved}, this run asks for {now}: "
                             f"continue with the same lora settings")
        load_adapter_state(model, checkpoint["model"], source=str(path))
    elif has_lora(model):
        raise ValueError(f"{path} holds merged weights, not adapters: a LoRA run continues from its resume "
                         f"file (resume_*.pth); start over with --overwrite true")
    else:
        load_state_dict_checked(model, checkpoint["model"], source=str(path))


def _restore_after_prepare(checkpoint: dict, accelerator, config: TrainConfig, state: TrainState,
                           run_log: RunLogger) -> None:
    scaler = getattr(accelerator, "scaler", None)
    if scaler is not None and checkpoint.get("scaler"):
        scaler.load_state_dict(checkpoint["scaler"])
    rngs = checkpoint.get("rng")
    if rngs and checkpoint.get("num_processes") == accelerator.num_processes:
        restore_rng_state(rngs[accelerator.process_index], accelerator.device)
    else:
        why = (f"it was written by {checkpoint.get('num_processes')} process(es), this run has "
               f"{accelerator.num_processes}" if rngs else "it holds no RNG states")
        run_log.text(f"warning: not a step-exact continuation ({why}): data split and random "
                     f"streams differ from an uninterrupted run")
        seed_everything(config.seed + state.global_step, process_specific=True)
    run_log.truncate_steps(state.global_step)


def run_epoch(run: Run, train_dataset: Dataset, collate_fn, compute_loss) -> None:
    """The optimizer steps of `run.state.epoch` from where it stands, up to its end or `max_steps`."""
    config, state, device = run.config, run.state, run.accelerator.device
    epoch = state.epoch
    run.sampler.set_epoch(epoch)
    if hasattr(train_dataset, "set_epoch"):
        train_dataset.set_epoch(epoch)
    first_step = state.step_in_epoch
    run.sampler.set_start(first_step * config.accumulation_steps * config.batch_size)
    loader = DataLoader(train_dataset, batch_size=config.batch_size, sampler=run.sampler,
                        collate_fn=collate_fn, num_workers=config.num_workers,
                        pin_memory=device.type == "cuda",
                        generator=torch.Generator().manual_seed(config.seed * 7919 + epoch))
    batches = iter(loader)
    if first_step == 0:
        state.epoch_loss_sum, state.epoch_loss_count = 0.0, 0
    bar = tqdm(total=run.steps_per_epoch, initial=first_step, desc=f"epoch {epoch}", dynamic_ncols=True,
               disable=not (run.accelerator.is_main_process and config.progress_bar))
    for step in range(first_step, run.steps_per_epoch):
        group = min(config.accumulation_steps, run.batches_per_epoch - step * config.accumulation_steps)
        record = optimizer_step(run, batches, group, compute_loss)
        state.step_in_epoch = step + 1
        bar.update(1)
        if record is not None:
            run.run_log.step(record)
            bar.set_postfix(loss=f"{record['loss']:.4f}", lr=f"{record['lr']:.2e}")
        if run.at_max_steps():
            break
        periodic = config.save_every_steps and state.global_step % config.save_every_steps == 0
        if periodic and step + 1 < run.steps_per_epoch:  # the epoch end saves anyway
            run.save_resume()
    bar.close()


def optimizer_step(run: Run, batches, group: int, compute_loss) -> dict | None:
    """`group` micro-batches (DDP syncs on the last), clip, step; the step's log record when due."""
    accelerator, model, optimizer, config = run.accelerator, run.model, run.optimizer, run.config
    device = accelerator.device
    step_loss = torch.zeros((), dtype=torch.float64, device=device)
    step_metrics: dict[str, float] = {}
    for micro in range(group):
        batch = send_to_device(next(batches), device, non_blocking=True)
        with nullcontext() if micro == group - 1 else accelerator.no_sync(model):
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
        run.scheduler.step()
    optimizer.zero_grad(set_to_none=True)
    run.loss_sum += step_loss
    run.loss_count += group
    run.state.global_step += 1

    if not (config.log_every_steps and run.state.global_step % config.log_every_steps == 0):
        return None
    losses = accelerator.gather((step_loss / group).reshape(1).float()).tolist()
    record = {"step": run.state.global_step, "epoch": run.state.epoch, "loss": sum(losses) / len(losses),
              "process_losses": losses, "lr": lr, "grad_norm": float(grad_norm) if grad_norm is not None else None}
    if step_metrics:  # extra values from compute_loss (e.g. DPO reward margins), process mean
        names = sorted(step_metrics)
        values = accelerator.gather(torch.tensor([[step_metrics[n] for n in names]], dtype=torch.float64,
                                                 device=device))
        record.update(zip(names, values.mean(dim=0).tolist()))
    return record


def end_epoch(run: Run, epoch: int, eval_dataset, collate_fn, compute_loss) -> None:
    """Mean train loss, eval loss, best weights when the criterion improved, resume checkpoint."""
    config, state, accelerator = run.config, run.state, run.accelerator
    run.fold_loss()
    loss_sum, loss_count = reduce_sum(accelerator, [state.epoch_loss_sum, float(state.epoch_loss_count)])
    train_loss = loss_sum / max(1.0, loss_count)
    eval_loss = math.nan
    if eval_dataset is not None and len(eval_dataset) > 0:
        eval_loss = evaluate_loss(accelerator, run.model, eval_dataset, collate_fn,
                                  config.eval_batch_size or config.batch_size, compute_loss, config.num_workers)
    criterion = eval_loss if not math.isnan(eval_loss) else train_loss
    state.completed_epochs = epoch
    improved = criterion < state.min_eval_loss
    if improved:
        state.best_epoch, state.min_eval_loss = epoch, criterion
    run.run_log.text(f"Epoch {epoch}\ntrain_loss: {train_loss:.6f}\neval_loss: {eval_loss:.6f}\n"
                     f"time: {time.strftime('%Y-%m-%d %H:%M:%S')} ({time.time() - run.started:.1f} s)"
                     + (f"\nsaved best weights: {config.weights_path}" if improved else "") + "\n")
    run.run_log.metrics({"train/epoch_loss": train_loss, "eval/loss": eval_loss, "epoch": epoch},
                        step=state.global_step)
    run.train_losses.append(train_loss)
    run.eval_losses.append(eval_loss)
    if improved:
        run.save_best(epoch)
    state.epoch, state.step_in_epoch = epoch + 1, 0
    state.epoch_loss_sum, state.epoch_loss_count = 0.0, 0
    run.save_resume()


def finish(run: Run, stopped: bool) -> TrainResult:
    config, state, accelerator = run.config, run.state, run.accelerator
    if stopped:
        run.run_log.text(f"stopped at max_steps {config.max_steps} (step {state.global_step}); "
                         f"continue with load_from_checkpoint")
    else:
        run.run_log.text(f"finished: {state.completed_epochs} epochs, {state.global_step} steps, best epoch "
                         f"{state.best_epoch} (loss {state.min_eval_loss:.6f}), {time.time() - run.started:.1f} s")
    run.run_log.close()
    accelerator.wait_for_everyone()
    accelerator.unwrap_model(run.model, keep_fp32_wrapper=False)  # restore the plain forward
    return TrainResult(state.global_step, state.completed_epochs, state.best_epoch, state.min_eval_loss,
                       run.train_losses, run.eval_losses, stopped, config.weights_path, config.resume_path,
                       config.log_path)


def _log_start(run: Run) -> None:
    accelerator, config, state = run.accelerator, run.config, run.state
    shard = run.sampler.shard()
    info = gather_object([{"process": accelerator.process_index, "examples": len(shard),
                           "device": str(accelerator.device), "first": shard[:4]}])
    params = sum(p.numel() for p in accelerator.unwrap_model(run.model).parameters())
    lines = [f"run {config.run_name}: {params / 1e6:.2f}M parameters, {accelerator.num_processes} process(es), "
             f"mixed precision {accelerator.mixed_precision}, {run.steps_per_epoch} optimizer steps per epoch "
             f"(batch {config.batch_size} x accumulation {config.accumulation_steps} per process)"]
    lines += [f"  process {i['process']} on {i['device']}: {i['examples']} examples per epoch, epoch "
              f"{state.epoch} order starts {i['first']}" for i in info]
    if state.global_step:
        lines.append(f"  continuing at epoch {state.epoch}, step {state.step_in_epoch} of the epoch "
                     f"(global step {state.global_step})")
    run.run_log.text("\n".join(lines))
