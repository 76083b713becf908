"""Several processes: starting a stage script again under `accelerate launch`, and the helpers its
processes share.

A stage with a `num_processes` setting above 1, started as a plain `python script.py`, runs
`accelerate launch --multi_gpu --num_processes N script.py <its arguments>` and waits for it:
torchrun starts the processes, one per GPU where there are GPUs, else a gloo group of CPU
processes (accelerate 1.x runs `launch --cpu --num_processes N` as one process). Inside the
launched processes WORLD_SIZE is set, so the script runs its work instead of launching again.
torch.distributed and accelerate are imported inside the helpers that need them: this module is
imported by light tools too (every stage's `run_stage`, the tests' conftest).
"""
from __future__ import annotations

import os
import socket
import subprocess
import sys
from pathlib import Path


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
    """Every process of `procs` (a `notagen.generation.run.Processes`) reaches this point before any
    goes on; nothing to wait for alone."""
    if procs.count > 1:
        from accelerate import PartialState  # lazy: see the module docstring

        PartialState().wait_for_everyone()


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
