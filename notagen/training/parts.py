"""The loop's parts, each usable alone (the M3 and DPO trainers reuse them): the accelerator,
seeds and RNG states, the sharded sampler, the learning-rate schedule and the run logger."""
from __future__ import annotations

import json
import logging
import math
import os
import random
import sys

from pathlib import Path

import numpy as np
import torch
from accelerate import Accelerator
from accelerate.utils import (DistributedDataParallelKwargs, is_tensorboard_available, is_wandb_available,
                               set_seed)
from torch.utils.data import Sampler
from tqdm import tqdm

from ..io import atomic_write_text
from ..precision import warn_if_emulated
from .settings import TrainConfig


# ---- accelerator, seeds, RNG state -------------------------------------------------------------
def make_accelerator(config: TrainConfig):
    """An `Accelerator` for this config: DDP kwargs, mixed precision, trackers (validated)."""
    trackers = resolve_trackers(config.report_to)
    # `accelerate launch --multi_gpu` (torchrun) on a machine without accelerators: accelerate only
    # builds the gloo process group when told "cpu", so say it rather than train N separate copies
    world_size = int(os.environ.get("WORLD_SIZE", "1"))
    cpu = config.cpu or (world_size > 1 and not _has_accelerator_device())
    if config.mixed_precision == "bf16" and (cpu or not _has_accelerator_device()):
        warn_if_emulated("mixed_precision bf16 on the CPU")
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
    tqdm.write(message, file=sys.stderr)  # above a progress bar, not through it

