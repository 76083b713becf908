"""int8 against float32 generation on the CPU (`--dtype int8`, `notagen.quantize`): patches/s at
batch 1 and 8 and their ratio, peak RSS, and the mean KL divergence of int8's next-char
distribution from float32's, in nats per char.

    python benchmarks/quantized.py                                  # small preset, random weights
    python benchmarks/quantized.py --preset x --patches 6 --kl-texts 2
    python benchmarks/quantized.py --weights weights/embedded/      # a real checkpoint (sizes from the file)

- Weights: a checkpoint with --weights (int8 as `load_model(dtype=torch.int8)` makes it from the
  file), otherwise random weights of the preset (seeded; int8: `quantize_model` of a copy), which
  the output says.
- Speed: as benchmarks/generation.py (random metadata lines as the context, piece i of a batch
  starts from context - i patches; median round time after the first patch). float32 and int8
  alternate `--repeats` times; the best of each is reported (other processes on a shared machine
  only ever slow a run down).
- Peak RSS (VmHWM): each dtype in a fresh child process (a process's peak only grows): build or load,
  then generate `--memory-patches` patches at batch 1 after a `--memory-context` context. The int8
  child builds block by block (random: `random_int8_model`; a checkpoint: read with mmap), so the
  whole float32 model never exists.
- KL: the chorale bwv269 of tests/vectors/data_pipeline.json in the first `--kl-texts` of its 15
  keys, the shipped model's prompt lines in front, teacher-forced through each model's forward;
  the mean of KL(float32 || int8) over every target char. In the forward each int8 product
  quantizes its input with one scale over the whole piece, coarser than generation's one row per
  call. With random weights the distributions are near uniform and the KL says little.
"""
from __future__ import annotations

import argparse
import copy
import json
import resource
import subprocess
import sys
import time
from pathlib import Path

import torch  # noqa: E402

from generation import bench_engine, context_prompt, patches_per_second, settings  # noqa: E402
from notagen.checkpoint import load_model  # noqa: E402
from notagen.config import PAD_ID, resolve_config  # noqa: E402
from notagen.generation import Engine  # noqa: E402
from notagen.model import build_model  # noqa: E402
from notagen.paths import VECTORS_DIR, resolve_weights_path  # noqa: E402
from notagen.patchilizer import Patchilizer  # noqa: E402
from notagen.quantize import INT8, quantize_model, random_int8_model  # noqa: E402

PROMPT_LINES = "%Baroque\n%Bach, Johann Sebastian\n%Choral\n"  # the shipped model's chorale prompt


def max_rss_mib() -> float:
    """This process's peak RSS: VmHWM on Linux (getrusage's maxrss starts a spawned child at its
    parent's size), else getrusage."""
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
    except OSError:
        pass
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def chorale_sequences(patch_size: int, patch_length: int, count: int) -> list[torch.Tensor]:
    """The chorale of the golden vectors in `count` keys, training-encoded: each [1, N, P]."""
    items = json.loads((VECTORS_DIR / "data_pipeline.json").read_text())["items"]
    chorale = next(item for item in items if item["source"].startswith("bach/"))
    patchilizer = Patchilizer(patch_size)
    texts = list(chorale["augmented"].values())[:count]
    return [torch.tensor([patchilizer.encode_train(PROMPT_LINES + text, patch_length, cut=False)]) for text in texts]


@torch.inference_mode()
def mean_kl(reference, quantized, sequences: list[torch.Tensor]) -> tuple[float, int]:
    """(mean KL(reference || quantized) in nats over every target char, how many chars)."""
    total, chars = 0.0, 0
    for patches in sequences:
        masks = torch.ones(patches.shape[:2], dtype=torch.long)
        logits, targets, _ = reference._target_logits(patches, masks)  # [M, P, 128], [M, P]
        logits_q, _, _ = quantized._target_logits(patches, masks)
        logp, logq = torch.log_softmax(logits.double(), -1), torch.log_softmax(logits_q.double(), -1)
        kl = (logp.exp() * (logp - logq)).sum(-1)  # [M, P]
        kept = targets != PAD_ID
        total += kl[kept].sum().item()
        chars += int(kept.sum())
    return total / chars, chars


def speeds(models: dict, args) -> dict:
    """{(dtype, batch): best patches/s over the repeats}."""
    best: dict = {}
    for batch in args.batches:
        for _ in range(args.repeats):
            for name, model in models.items():
                rate = bench_engine(Engine(model), args.context, batch, args.patches)
                best[name, batch] = max(best.get((name, batch), 0.0), rate)
                print(f"  {name} batch {batch}: {rate:.2f} patches/s", flush=True)
    return best


def memory_child(args) -> None:
    """One dtype alone: build or load, generate at batch 1, print a JSON line with the peak RSS."""
    torch.manual_seed(0)
    started = time.perf_counter()
    if args.weights:
        model = load_model(resolve_weights_path(args.weights), dtype=INT8 if args.memory_only == "int8" else None)
    elif args.memory_only == "int8":
        model = random_int8_model(resolve_config(args.preset), seed=0)
    else:
        model = build_model(args.preset).eval()
    loaded = time.perf_counter() - started
    after_load = max_rss_mib()
    patches = args.memory_patches
    context = min(args.memory_context, model.config.patch_length - patches - 2)
    events = Engine(model).stream([context_prompt(context, 0)], settings(patches + 1, 1, 0))
    rate = patches_per_second(events, 1)
    print(json.dumps({"dtype": args.memory_only, "context": context, "load_seconds": round(loaded, 1),
                      "rss_after_load_mib": round(after_load), "max_rss_mib": round(max_rss_mib()),
                      "patches_per_second": round(rate, 3)}))


def peak_memory(args, dtype: str) -> dict:
    command = [sys.executable, __file__, "--memory-only", dtype, "--preset", args.preset, "--threads", str(args.threads),
               "--memory-context", str(args.memory_context), "--memory-patches", str(args.memory_patches)]
    if args.weights:
        command += ["--weights", args.weights]
    output = subprocess.run(command, check=True, capture_output=True, text=True).stdout
    return json.loads(output.strip().splitlines()[-1])


def load_pair(args):
    """(float32 model, int8 model of the same weights, what the weights are)."""
    if args.weights:
        path = resolve_weights_path(args.weights)
        return load_model(path), load_model(path, dtype=INT8), f"checkpoint {path.name}"
    torch.manual_seed(0)
    model = build_model(args.preset).eval()
    return model, quantize_model(copy.deepcopy(model)), f"random weights (seed 0) of preset {args.preset}"


def report(args, what: str, config, rates: dict, memory: dict, kl: float, chars: int) -> None:
    print(f"\n{what}: {config.describe()}; torch {torch.__version__}, {torch.get_num_threads()} thread(s); "
          f"context {args.context} patches, {args.patches} timed patches per piece")
    print("| | float32 | int8 | int8 / float32 |\n|---|---|---|---|")
    for batch in args.batches:
        f, q = rates["float32", batch], rates["int8", batch]
        print(f"| batch {batch}, patches/s{' (all pieces)' if batch > 1 else ''} | {f:.2f} | {q:.2f} | {q / f:.2f}x |")
    if memory:
        f, q = memory["float32"], memory["int8"]
        print(f"| peak RSS, batch 1, context {q['context']} (MiB) | {f['max_rss_mib']} | {q['max_rss_mib']} | "
              f"{q['max_rss_mib'] / f['max_rss_mib']:.2f} |")
        print(f"| patches/s at that context, batch 1 | {f['patches_per_second']:.2f} | {q['patches_per_second']:.2f} | "
              f"{q['patches_per_second'] / f['patches_per_second']:.2f}x |")
    print(f"| mean KL(float32 \u2016 int8), nats/char ({chars} chars of real text) | | {kl:.4f} | |")
    if not args.weights:
        print("(random weights: near-uniform next-char distributions, so the KL says little about a trained model)")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--preset", default="small", help="small, large or x (random weights; ignored with --weights)")
    parser.add_argument("--weights", default="", help="a NotaGen checkpoint (file or folder) instead of random weights")
    parser.add_argument("--context", type=int, default=64, help="context patches before the timed generation")
    parser.add_argument("--patches", type=int, default=16, help="timed patches per piece")
    parser.add_argument("--batches", type=lambda s: [int(b) for b in s.split(",")], default=[1, 8])
    parser.add_argument("--repeats", type=int, default=2, help="alternating runs of float32 and int8; best kept")
    parser.add_argument("--kl-texts", type=int, default=15, help="keys of the chorale for the KL (1-15)")
    parser.add_argument("--memory-context", type=int, default=1000, help="context of the peak-RSS runs")
    parser.add_argument("--memory-patches", type=int, default=8, help="patches generated in the peak-RSS runs")
    parser.add_argument("--skip-memory", action="store_true")
    parser.add_argument("--threads", type=int, default=1, help="torch threads (0: torch's default)")
    parser.add_argument("--memory-only", choices=["float32", "int8"], help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    if args.memory_only:
        memory_child(args)
        return
    memory = {}
    if not args.skip_memory:  # first, while this process is small
        for dtype in ("float32", "int8"):
            memory[dtype] = peak_memory(args, dtype)
            print(f"  peak memory, {dtype}: {json.dumps(memory[dtype])}", flush=True)
    reference, quantized, what = load_pair(args)
    config = reference.config
    print(f"{what}; speed:", flush=True)
    rates = speeds({"float32": reference, "int8": quantized}, args)
    kl, chars = mean_kl(reference, quantized, chorale_sequences(config.patch_size, config.patch_length, args.kl_texts))
    report(args, what, config, rates, memory, kl, chars)


if __name__ == "__main__":
    main()
