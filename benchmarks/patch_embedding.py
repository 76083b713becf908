"""Gathered patch embedding vs the published one-hot product, at the small preset (hidden 768).

Both run in the same process on the same weights and batch; the script prints the speed ratio
(forward and forward+backward) and checks that the outputs agree.
Usage: python benchmarks/patch_embedding.py [--batch 4] [--patches 512] [--repeats 5]
"""
from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import torch

from notagen import PRESETS  # noqa: E402
from notagen.model import PatchEmbedding  # noqa: E402

def best_time(step, repeats: int) -> float:
    step()  # warm-up
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        step()
        times.append(time.perf_counter() - start)
    return min(times)

def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--batch", type=int, default=4)
    parser.add_argument("--patches", type=int, default=512)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    args = parser.parse_args()

    config = PRESETS["small"]
    torch.manual_seed(0)
    embedding = PatchEmbedding(config.patch_size, config.hidden_size).to(args.device)
    patches = torch.randint(0, 128, (args.batch, args.patches, config.patch_size), device=args.device)
    sync = torch.cuda.synchronize if args.device.startswith("cuda") else (lambda: None)

    def timed(forward, backward: bool):
        def step():
            out = forward(patches)
            if backward:
                out.sum().backward()
            sync()
        return best_time(step, args.repeats)

    gap = (embedding(patches) - embedding.forward_one_hot(patches)).abs().max().item()
    print(f"small preset, {args.batch} x {args.patches} patches on {args.device}; max |gathered - one-hot| = {gap:.2e}")
    for label, backward in (("forward", False), ("forward+backward", True)):
        one_hot = timed(embedding.forward_one_hot, backward)
        gathered = timed(embedding.forward, backward)
        print(f"{label:>17}: one-hot {one_hot * 1e3:8.2f} ms | gathered {gathered * 1e3:8.2f} ms | "
              f"speed-up x{one_hot / gathered:.1f}")

if __name__ == "__main__":
    main()
