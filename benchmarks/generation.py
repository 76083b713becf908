"""Generation speed: the published loop's structure vs the cached, batched engine.

    python benchmarks/generation.py                      # small preset, contexts 64/512/1536
    python benchmarks/generation.py --memory-preset x    # also peak memory of the X preset
    python benchmarks/generation.py --threads 0          # torch's default thread count (see --help)

Random weights (seeded), float32, sampling with the published k=9, p=0.9, T=1.2. A context of n
patches is BOS + n-1 one-patch prompt lines. Patches/s is measured after the first patch (so the
prefill of the prompt is not counted): the median time of a round (one new patch per piece) over
`--patches` rounds, so bursts of load from other processes on a shared machine count less.
- baseline: `reference_generate`, the published loop's structure: one piece; for every patch the
  whole context goes through the patch-level decoder, for every char the patch so far goes
  through the char-level decoder.
- engine: `Engine.stream` with key/value caches, batch 1 and 8; in a batch, piece i starts from
  n - i patches, so rows have different lengths (the masked path, as after stream rebuilds).
"""
from __future__ import annotations

import argparse
import json
import random
import resource
import statistics
import subprocess
import sys
import time
from pathlib import Path

import torch  # noqa: E402

from notagen.generation import Engine, GenerationSettings, Prompt, reference_generate  # noqa: E402
from notagen.model import build_model  # noqa: E402

def context_prompt(patches: int, seed: int) -> Prompt:
    """BOS + (patches - 1) metadata lines of 15 chars: exactly `patches` context patches."""
    rng = random.Random(seed)
    letters = "abcdefghijklmnopqrstuvwxyz"
    return Prompt.from_lines("%" + "".join(rng.choice(letters) for _ in range(13))
                             for _ in range(patches - 1))

def round_seconds(events, pieces: int) -> list[float]:
    """Seconds of each round after the first (a round = one new patch for every piece), from a
    GenerationEvent stream; the first round also holds the prompt prefill and is left out."""
    marks, patch_events = [], 0
    for event in events:
        if event.result is not None:
            continue
        patch_events += 1
        if patch_events > pieces and (patch_events - pieces) % pieces == 0:  # prompts, then rounds
            marks.append(time.perf_counter())
    return [b - a for a, b in zip(marks, marks[1:])]

def patches_per_second(events, pieces: int) -> float:
    """Median round time -> patches/s: robust to bursts of load from other processes."""
    return pieces / statistics.median(round_seconds(events, pieces))

def settings(patches: int, batch: int, seed: int) -> GenerationSettings:
    return GenerationSettings.published(top_k=9, top_p=0.9, temperature=1.2, seed=seed, batch_size=batch,
                              max_patches=patches, max_chars=10**9, max_seconds=10**9,
                              max_empty_patches=10**9)

def bench_baseline(model, context: int, patches: int) -> float:
    events = reference_generate(model, context_prompt(context, 0), settings(patches + 1, 1, 0))
    return patches_per_second(events, 1)

def bench_engine(engine, context: int, batch: int, patches: int) -> float:
    prompts = [context_prompt(context - i, i) for i in range(batch)]
    return patches_per_second(engine.stream(prompts, settings(patches + 1, batch, 0)), batch)

def measure_memory(preset: str, context: int, patches: int, batch: int) -> dict:
    """Peak process memory (and CUDA peak) generating with random weights of `preset`."""
    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    torch.manual_seed(0)
    model = build_model(preset).to(device).eval()
    if device.type == "cuda":
        model = model.to(torch.bfloat16)
        torch.cuda.reset_peak_memory_stats()
    context = min(context, model.config.patch_length - patches - 2)
    prompts = [context_prompt(context - i, i) for i in range(batch)]
    started = time.perf_counter()
    speed = patches_per_second(Engine(model).stream(prompts, settings(patches + 1, batch, 0)), batch)
    info = {"preset": preset, "device": str(device), "context": context, "batch": batch,
            "params_millions": round(sum(p.numel() for p in model.parameters()) / 1e6, 1),
            "patches_per_second": round(speed, 3), "total_seconds": round(time.perf_counter() - started, 1),
            "max_rss_mib": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1)}
    if device.type == "cuda":
        info["cuda_max_allocated_mib"] = round(torch.cuda.max_memory_allocated() / 2**20, 1)
    return info

def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--preset", default="small")
    parser.add_argument("--contexts", default="64,512,1536")
    parser.add_argument("--batches", default="1,8")
    parser.add_argument("--patches", type=int, default=16, help="timed rounds (patches per piece), engine")
    parser.add_argument("--baseline-patches", type=int, default=3, help="timed patches, baseline")
    parser.add_argument("--threads", type=int, default=1,
                        help="torch threads for baseline and engine alike (0: torch's default). 1 by default: "
                             "on this shared 2-core machine a second thread makes both far slower and noisier")
    parser.add_argument("--skip-baseline", action="store_true")
    parser.add_argument("--device", default="cpu", help="cpu, cuda, cuda:N")
    parser.add_argument("--dtype", default="float32", choices=["float32", "bfloat16"])
    parser.add_argument("--memory-preset", default="", help="also measure peak memory of this preset")
    parser.add_argument("--memory-only", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--memory-context", type=int, default=1000)
    parser.add_argument("--memory-batch", type=int, default=1)
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    if args.memory_only:  # child process: a fresh max-RSS counter
        print(json.dumps(measure_memory(args.memory_preset, args.memory_context, 8, args.memory_batch)))
        return

    torch.manual_seed(0)
    device, dtype = torch.device(args.device), getattr(torch, args.dtype)
    model = build_model(args.preset).to(device=device, dtype=dtype).eval()
    engine = Engine(model)
    contexts = [int(c) for c in args.contexts.split(",")]
    batches = [int(b) for b in args.batches.split(",")]
    where = torch.cuda.get_device_name(device) if device.type == "cuda" else f"{torch.get_num_threads()} threads"
    print(f"preset {args.preset}: {model.config}; torch {torch.__version__}, {where}, {args.dtype}")
    rows = []
    for context in contexts:
        row = {"context": context}
        if not args.skip_baseline:
            row["baseline"] = bench_baseline(model, context, args.baseline_patches)
        for batch in batches:
            row[f"engine_b{batch}"] = bench_engine(engine, context, batch, args.patches)
        rows.append(row)
        if device.type == "cuda":
            row["cuda_peak_mib"] = round(torch.cuda.max_memory_allocated(device) / 2**20, 1)
        print(json.dumps({k: round(v, 3) if isinstance(v, float) else v for k, v in row.items()}), flush=True)

    print("\npatches/s (speed-up vs baseline)")
    header = f"| context | {'baseline | ' if not args.skip_baseline else ''}" + " | ".join(
        f"engine batch {b}" for b in batches) + " |"
    print(header)
    print("|" + "---|" * (header.count("|") - 1))
    for row in rows:
        base = row.get("baseline")
        cells = [f"{row['context']}"] + ([f"{base:.2f}"] if base else [])
        for batch in batches:
            value = row[f"engine_b{batch}"]
            cells.append(f"{value:.2f}" + (f" ({value / base:.1f}x)" if base else ""))
        print("| " + " | ".join(cells) + " |")
    for batch in batches:
        costs = {row["context"]: 1 / row[f"engine_b{batch}"] for row in rows}
        if len(costs) > 1:
            ratio = costs[max(costs)] / costs[min(costs)]
            print(f"engine batch {batch}: per-patch cost at {max(costs)} / at {min(costs)} patches = {ratio:.2f}")

    if args.memory_preset:
        command = [sys.executable, __file__, "--memory-only", "--memory-preset", args.memory_preset,
                   "--memory-context", str(args.memory_context), "--memory-batch", str(args.memory_batch)]
        if args.threads:
            command += ["--threads", str(args.threads)]
        output = subprocess.run(command, check=True, capture_output=True, text=True).stdout
        print("\npeak memory:", output.strip().splitlines()[-1])

if __name__ == "__main__":
    main()
