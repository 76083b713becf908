"""bfloat16 on this CPU against float32, in the same process: a training step (autocast, weights
fp32, as `--mixed_precision bf16` trains) and batch-1 generation (bf16 weights, as `--dtype
bfloat16` generates); optionally `torch.compile` of the training step (`--compile`).

    python benchmarks/bf16.py                     # small preset
    python benchmarks/bf16.py --preset tiny --patches 64

bf16 pays where the CPU multiplies in bf16 (AVX512-BF16 or AMX: `notagen.precision.cpu_bf16`
says which); elsewhere PyTorch emulates it and it is slower. Steps alternate (fp32, bf16, ...) and
the median is reported; generation uses the median round time (see generation.py).
"""
from __future__ import annotations

import argparse
import copy
import statistics
import sys
import time
from contextlib import nullcontext
from pathlib import Path

import torch  # noqa: E402

from generation import context_prompt, patches_per_second  # noqa: E402
from notagen.config import resolve_config  # noqa: E402
from notagen.generation import Engine, GenerationSettings  # noqa: E402
from notagen.model import NotaGenLMHeadModel  # noqa: E402
from notagen.precision import cpu_bf16  # noqa: E402
from train_step import make_step, real_batch  # noqa: E402

def time_steps(steps: dict, rounds: int) -> dict[str, float]:
    times = {name: [] for name in steps}
    for round_ in range(rounds + 1):  # the first round warms up (and compiles)
        for name, step in steps.items():
            started = time.perf_counter()
            step()
            if round_:
                times[name].append(time.perf_counter() - started)
    return {name: statistics.median(values) for name, values in times.items()}

def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--preset", default="small")
    parser.add_argument("--patches", type=int, default=128, help="patches per training sequence")
    parser.add_argument("--steps", type=int, default=3, help="timed training steps of each kind")
    parser.add_argument("--context", type=int, default=64, help="context patches before generation")
    parser.add_argument("--rounds", type=int, default=24, help="generated patches timed")
    parser.add_argument("--compile", action="store_true", help="also torch.compile the fp32 and bf16 steps")
    parser.add_argument("--threads", type=int, default=0)
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    print(f"CPU bf16: {cpu_bf16() or 'none (emulated)'}; torch {torch.__version__}, {torch.get_num_threads()} threads")
    config = resolve_config(args.preset)
    torch.manual_seed(0)
    model = NotaGenLMHeadModel(config)
    model.patch_level_decoder.base.wte.weight.requires_grad_(False)
    patches = real_batch(1, args.patches, config.patch_size)
    masks = torch.ones(patches.shape[:2], dtype=torch.long)
    bf16 = lambda: torch.autocast("cpu", dtype=torch.bfloat16)  # noqa: E731
    steps = {"fp32": make_step(model, patches, masks, nullcontext), "bf16 autocast": make_step(model, patches, masks, bf16)}
    if args.compile:
        compiled = torch.compile(model)
        steps["fp32 compiled"] = make_step(compiled, patches, masks, nullcontext)
        steps["bf16 compiled"] = make_step(compiled, patches, masks, bf16)
    train = time_steps(steps, args.steps)
    print(f"\ntraining step, preset {args.preset} ({sum(p.numel() for p in model.parameters()) / 1e6:.0f}M), "
          f"1 x {args.patches} patches:")
    for name, seconds in train.items():
        print(f"  {name:>14}: {seconds:.3f} s/step  x{train['fp32'] / seconds:.2f}")

    for batch in (1, 8):
        rates = {}
        prompts = [context_prompt(args.context - i, i) for i in range(batch)]
        settings = GenerationSettings.published(seed=0, max_patches=args.rounds + 2, max_empty_patches=0, batch_size=batch)
        for name, dtype in (("fp32", torch.float32), ("bf16", torch.bfloat16)):
            engine = Engine(copy.deepcopy(model).to(dtype).eval())  # the same weights in each precision
            rates[name] = patches_per_second(engine.stream(prompts, settings), batch)
        print(f"\ngeneration, batch {batch}, context {args.context} patches:")
        for name, rate in rates.items():
            print(f"  {name:>14}: {rate:.1f} patches/s  x{rate / rates['fp32']:.2f}")

if __name__ == "__main__":
    main()
