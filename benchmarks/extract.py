"""Benchmark CLaMP 2 feature extraction: batched (segments of many files per forward pass) against
one file at a time (the published loop's shape: one segment per forward pass).

    python benchmarks/extract.py                          # tiny_clamp2.pth from the golden vectors
    python benchmarks/extract.py --preset published --device cuda --num_files 256 --batch_size 32
    python benchmarks/extract.py --weights clamp2.pth --input_dir runs/generated

Inputs: the .abc files of --input_dir, or else the real pieces of the golden vectors, cycled up to
--num_files. Without --weights a randomly initialised model of --preset is timed (speed only).
Prints files/s of both ways and the largest difference between their features.
"""
from __future__ import annotations

import argparse
import json
import sys
import time
from itertools import cycle, islice
from pathlib import Path

import numpy as np  # noqa: E402
import torch  # noqa: E402

from notagen.clamp2 import (M3_PRESETS, Clamp2MusicModel, M3Patchilizer, encode_for_feature,  # noqa: E402
                            extract_feature, extract_features_batched, list_abc_files, load_clamp2_music)
from notagen.clamp2.features import segment  # noqa: E402
from notagen.paths import VECTORS_DIR as VECTORS  # noqa: E402

def vector_texts() -> list[str]:
    texts = [case["text"] for case in json.loads((VECTORS / "m3_clamp2.json").read_text())["cases"]]
    pipeline = VECTORS / "data_pipeline.json"
    if pipeline.exists():
        texts += [item["interleaved"] for item in json.loads(pipeline.read_text())["items"]]
    return texts

def timed(function) -> tuple[float, object]:
    if torch.cuda.is_available():
        torch.cuda.synchronize()
    start = time.perf_counter()
    result = function()
    if torch.cuda.is_available():
        torch.cuda.synchronize()
    return time.perf_counter() - start, result

def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--weights", default=None, help="CLaMP 2 / M3 checkpoint (default: tiny_clamp2.pth "
                        "of the golden vectors unless --preset is given)")
    parser.add_argument("--preset", default=None, choices=sorted(M3_PRESETS), help="random-init model size")
    parser.add_argument("--input_dir", default=None, help="folder of .abc files (default: vector pieces)")
    parser.add_argument("--num_files", type=int, default=64)
    parser.add_argument("--batch_size", type=int, default=16, help="segments per forward pass when batched")
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--threads", type=int, default=0, help="torch CPU threads (0 = torch default)")
    args = parser.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)

    if args.preset:
        torch.manual_seed(0)
        model = Clamp2MusicModel(M3_PRESETS[args.preset], projection_size=768).to(args.device).eval()
        source = f"random {args.preset} model"
    else:
        weights = Path(args.weights) if args.weights else VECTORS / "tiny_clamp2.pth"
        model = load_clamp2_music(weights, device=args.device)
        source = str(weights)
    patchilizer = M3Patchilizer(model.config.patch_size)

    if args.input_dir:
        pool = [path.read_text(encoding="utf-8") for path in list_abc_files(args.input_dir)]
    else:
        pool = vector_texts()
    texts = list(islice(cycle(pool), args.num_files))
    segments = sum(len(segment(encode_for_feature(patchilizer, t), model.config.patch_length)[0]) for t in texts)
    print(f"{source} on {args.device}: patch_length {model.config.patch_length}, hidden "
          f"{model.config.hidden_size}, {model.config.num_layers} layers; {len(texts)} files, "
          f"{segments} segments, torch threads {torch.get_num_threads()}")

    extract_features_batched(model, patchilizer, texts[:2], args.batch_size)  # warm-up
    single_time, singles = timed(lambda: [extract_feature(model, patchilizer, t) for t in texts])
    batched_time, batched = timed(lambda: extract_features_batched(model, patchilizer, texts, args.batch_size))
    difference = max(float(np.abs(a - b).max()) for a, b in zip(singles, batched))
    print(f"one file at a time: {len(texts) / single_time:8.2f} files/s ({single_time:.2f} s)")
    print(f"batched (batch {args.batch_size:3d}): {len(texts) / batched_time:8.2f} files/s "
          f"({batched_time:.2f} s), {single_time / batched_time:.1f}x")
    print(f"largest feature difference between the two: {difference:.2e}")

if __name__ == "__main__":
    main()
