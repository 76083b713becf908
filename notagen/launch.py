"""Several processes: starting a stage script again under `accelerate launch`, and the helpers its
processes share: this process's place (`processes` -> `Processes`: rank, count, device, its share of
the pieces), one seed for all (`shared_seed`), everyone's results (`gathered`), waiting for
everyone (`wait_for_everyone`) and the end (`end_processes`). Inference (`generation/run.py`) and
the CLaMP-DPO loop (`rl/loop.py`) split their pieces with them.

A stage with a `num_processes` setting above 1, started as a plain `python script.py`, runs
`accelerate launch --multi_gpu --num_processes N script.py <its arguments>` and waits for it:
torchrun starts the processes, one per GPU where there are GPUs, else a gloo group of CPU
processes (accelerate 1.x runs `launch --cpu --num_processes N` as one process). Inside the
launched processes WORLD_SIZE is set, so the script runs its work instead of launching again.
torch.distributed and accelerate are imported inside the helpers that need them, and only when
there are several processes: this module is imported by light tools too (every stage's
`run_stage`, the tests' conftest), and accelerate takes seconds to import.
"""
from __future__ import annotations

import os
import random
import socket
import subprocess
import sys
from datetime import timedelta
from pathlib import Path
from typing import TYPE_CHECKING, NamedTuple

if TYPE_CHECKING:  # annotations only: torch is not imported to launch
    import torch


def launched() -> bool:
    """True inside processes that accelerate launch / torchrun started."""
    return int(os.environ.get("WORLD_SIZE", "1")) > 1


def end_processes() -> None:
    """The end of a launched script's work: every process waits for the others, then closes the
    process group. Left open until the interpreter exits, gloo's threads are torn down unjoined and
    a process can abort ("terminate called without an active exception") after its work is done."""
    import torch.distributed as dist  # lazy: see the module docstring

    if dist.is_available() and dist.is_initialized():
        dist.barrier()
        dist.destroy_process_group()


def wait_for_everyone(procs) -> None:
    """Every process of `procs` (`Processes`) reaches this point before any goes on; nothing to wait
    for alone."""
    if procs.count > 1:
        from accelerate import PartialState  # lazy: see the module docstring

        PartialState().wait_for_everyone()


class Processes(NamedTuple):
    """This process's place in an `accelerate launch` run (rank 0 of 1 when run alone)."""
    rank: int
    count: int
    device: torch.device

    def share(self, num_samples: int) -> list[int]:
        """The piece numbers this process writes: every count-th, from its rank."""
        return list(range(self.rank, num_samples, self.count))


def processes(device: torch.device, asked: str) -> Processes:
    """Alone: rank 0 of 1 on `device`. Under `accelerate launch` / torchrun (WORLD_SIZE > 1): this
    process's rank, on its own GPU when the device was left to "auto"."""
    if not launched():
        return Processes(0, 1, device)
    from accelerate import PartialState  # lazy: see the module docstring

    # gloo on CPUs, nccl on GPUs; processes wait for the slowest one's share (hours in a big run, far
    # past NCCL's default timeout) and for rank 0's ranking and reports in RL/loop.py
    state = PartialState(cpu=device.type == "cpu", timeout=timedelta(hours=24))
    return Processes(state.process_index, state.num_processes,
                     state.device if (asked or "auto") == "auto" else device)


def shared_seed(seed: int, procs: Processes) -> int:
    """The run's seed (drawn when < 0), the same in every process."""
    if seed < 0:
        seed = random.SystemRandom().randrange(1 << 31)
    if procs.count > 1:
        from accelerate.utils import broadcast_object_list  # lazy: see the module docstring

        seed = broadcast_object_list([seed])[0]
    return seed


def gathered(entries: list[dict], procs: Processes) -> list[dict]:
    """Every process's summary entries, on every process, in piece order."""
    if procs.count > 1:
        from accelerate.utils import gather_object  # lazy: see the module docstring

        entries = gather_object(entries)
    return sorted(entries, key=lambda e: e["index"])


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on now (for the processes' rendezvous)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def accelerate_command(script: str | Path, argv: list[str], num_processes: int) -> list[str]:
    accelerate = Path(sys.executable).with_name("accelerate")
    return [str(accelerate) if accelerate.exists() else "accelerate", "launch", "--multi_gpu",
            "--num_processes", str(num_processes), "--num_machines", "1", "--mixed_precision", "no",
            "--dynamo_backend", "no", "--main_process_port", str(free_port()), str(script), *argv]


def relaunch(script: str | Path, argv: list[str], num_processes: int) -> int:
    """Run `script argv` on `num_processes` processes; their exit code."""
    command = accelerate_command(script, argv, num_processes)
    print(f"starting {num_processes} processes: {' '.join(command[:4])} ... {Path(script).name}", flush=True)
    threads = os.environ.get("OMP_NUM_THREADS") or str(max(1, (os.cpu_count() or 1) // num_processes))
    return subprocess.run(command, env={**os.environ, "OMP_NUM_THREADS": threads}).returncode  # cores shared out
