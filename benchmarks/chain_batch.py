"""Pieces a minute of the CLaMP-DPO chain's generation at several batch sizes, or on several processes.

    python benchmarks/chain_batch.py                                  # the main job's start model
    python benchmarks/chain_batch.py --weights weights/embedded --pieces 128 --batches 64 128
    python benchmarks/chain_batch.py --processes 1 2                  # RL_NUM_PROCESSES: 1 against 2

The chain's generation settings are RL/loop.py's, parsed from the command line main.py gives it
(`main.clamp_dpo_args`, main.py's defaults) and built by the loop's own `sampling_settings`;
1 torch thread. A piece does not depend
on the batch it is written in, so every batch size writes the same pieces and only the time
differs. Prints pieces/min and the ratio to the first batch size (the baseline, the chain's own).
With `--processes`, the pieces are split as `RL/loop.py --num_processes N` splits them (process r
writes every N-th piece from r; here N spawned processes, 1 thread each, at the first batch size),
and the ratio is to the first process count.
"""
from __future__ import annotations

import argparse
import dataclasses
import multiprocessing
import sys
import time
from pathlib import Path

import torch  # noqa: E402

import main as main_job  # noqa: E402  (the main job's settings: one home for the chain's values)
from notagen.checkpoint import load_model  # noqa: E402
from notagen.generation import GenerationSettings, Prompt, engine_for  # noqa: E402
from notagen.launch import Processes  # noqa: E402
from notagen.paths import REPO_ROOT, resolve_weights_path  # noqa: E402
from notagen.rl import sampling_settings  # noqa: E402
from notagen.settings import parse_settings  # noqa: E402

START_MODEL = "runs/main/rl_start"  # the main job's CLaMP-DPO start model

def chain_settings() -> GenerationSettings:
    """The generation settings of the main job's CLaMP-DPO chain (main.py's defaults, seed 0)."""
    job = parse_settings(REPO_ROOT / "main.py", [])
    runs, corpus = REPO_ROOT / job.runs_dir, REPO_ROOT / job.corpus_dir
    args = main_job.clamp_dpo_args(job, runs, corpus, runs / "rl_start")[1:]  # [0] is the script
    return sampling_settings(parse_settings(REPO_ROOT / "RL" / "config.py", args))

def finished_pieces(engine, prompt: Prompt, batch: int, indices: list[int]) -> int:
    """Write the pieces numbered `indices` at `batch` with the chain's settings; how many finished."""
    settings = dataclasses.replace(chain_settings(), batch_size=batch)
    stream = engine.stream([prompt] * len(indices), settings, indices=indices)
    return sum(event.result.status == "finished" for event in stream if event.result is not None)

def pieces_per_minute(engine, prompt: Prompt, pieces: int, batch: int) -> tuple[float, int]:
    """Pieces a minute writing `pieces` pieces at `batch`, and how many of them finished."""
    started = time.perf_counter()
    finished = finished_pieces(engine, prompt, batch, list(range(pieces)))
    return pieces / (time.perf_counter() - started) * 60, finished

def _write_share(weights: str, prompt: Prompt, pieces: int, batch: int, rank: int, count: int) -> int:
    """One spawned process's share of the pieces, as the loop's ranks take it; how many finished."""
    torch.set_num_threads(1)
    mine = Processes(rank, count, torch.device("cpu")).share(pieces)
    return finished_pieces(engine_for(load_model(Path(weights))), prompt, batch, mine)

def pieces_per_minute_on(weights: Path, prompt: Prompt, pieces: int, batch: int, count: int) -> tuple[float, int]:
    """Pieces a minute writing `pieces` pieces on `count` processes, and how many finished."""
    started = time.perf_counter()
    with multiprocessing.get_context("spawn").Pool(count) as pool:
        finished = pool.starmap(_write_share, [(str(weights), prompt, pieces, batch, rank, count)
                                               for rank in range(count)])
    return pieces / (time.perf_counter() - started) * 60, sum(finished)

def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--weights", default=START_MODEL, help="a checkpoint file or a folder holding one")
    parser.add_argument("--prompt", default=main_job.PROMPT)
    parser.add_argument("--pieces", type=int, default=256)
    parser.add_argument("--batches", type=int, nargs="+", default=[main_job.RL_GENERATION_BATCH_SIZE, 32, 128])
    parser.add_argument("--processes", type=int, nargs="+", default=None,
                        help="compare these process counts (at the first batch size) instead of batch sizes")
    args = parser.parse_args()
    torch.set_num_threads(1)
    weights = resolve_weights_path(args.weights)
    prompt = Prompt.from_lines(tuple(f"%{field}" for field in args.prompt.split("|")))
    if args.processes:
        print(f"{weights.name}: {args.pieces} pieces a run, batch {args.batches[0]}, 1 thread a process")
        baseline = None
        for count in args.processes:
            rate, finished = pieces_per_minute_on(weights, prompt, args.pieces, args.batches[0], count)
            baseline = baseline or rate
            print(f"{count} process(es): {rate:6.1f} pieces/min ({finished} finished), "
                  f"{rate / baseline:.2f}x {args.processes[0]} process(es)", flush=True)
        return
    engine = engine_for(load_model(weights))
    print(f"{weights.name}: {args.pieces} pieces a run, 1 thread")
    baseline = None
    for batch in args.batches:
        rate, finished = pieces_per_minute(engine, prompt, args.pieces, batch)
        baseline = baseline or rate
        print(f"batch {batch:4d}: {rate:6.1f} pieces/min ({finished} finished), {rate / baseline:.2f}x batch {args.batches[0]}",
              flush=True)

if __name__ == "__main__":
    main()
