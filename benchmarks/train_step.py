"""Training throughput (patches/s) of the project's NotaGen step against a published-style baseline.

    python benchmarks/train_step.py                      # small preset, CPU (or the GPU when present)
    python benchmarks/train_step.py --device cuda --mixed_precision bf16 --patches 2048 --batch 4

Both steps run forward + backward + gradient clipping + AdamW on the same weights and the same
batch (real pieces from tests/vectors/data_pipeline.json, all 15 keys, concatenated and cut
into sequences of --patches patches):
- project:  the model as trained here (gathered patch embedding, SDPA attention);
- baseline: the same weights with the published one-hot x Linear patch embedding and eager
            attention (`PatchEmbedding.forward_one_hot`, `NotaGenConfig(attn_implementation="eager")`).
Steps alternate (baseline, project, baseline, ...) so load from other programs hits both alike;
the median step time is reported. The losses of both (dropout off) are printed as a check.
"""
from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from contextlib import nullcontext
from pathlib import Path

import torch  # noqa: E402

from notagen.config import resolve_config  # noqa: E402
from notagen.model import NotaGenLMHeadModel  # noqa: E402
from notagen.patchilizer import Patchilizer  # noqa: E402
from notagen.paths import VECTORS_DIR as VECTORS  # noqa: E402

def real_batch(batch: int, patches: int, patch_size: int) -> torch.Tensor:
    """[batch, patches, patch_size] ids from real pieces (random ids if the vectors are absent)."""
    path = VECTORS / "data_pipeline.json"
    if not path.exists():
        return torch.randint(3, 128, (batch, patches, patch_size))
    patchilizer = Patchilizer(patch_size)
    stream = []
    for item in json.loads(path.read_text())["items"]:
        for text in item["augmented"].values():
            stream += patchilizer.encode_train(text, 10**9, cut=False)
    needed = batch * patches
    stream = (stream * (needed // len(stream) + 1))[:needed]
    return torch.tensor(stream, dtype=torch.long).reshape(batch, patches, patch_size)

def make_step(model, patches, masks, autocast, max_grad_norm=1.0):
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-4)

    def step():
        with autocast():
            loss = model(patches, masks).loss
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), max_grad_norm)
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
        return loss
    return step

def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--preset", default="small")
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--batch", type=int, default=1, help="sequences per step")
    parser.add_argument("--patches", type=int, default=0,
                        help="patches per sequence (0 = 512 on CPU, the preset's patch_length on GPU)")
    parser.add_argument("--steps", type=int, default=3, help="timed steps of each kind")
    parser.add_argument("--warmup", type=int, default=1, help="untimed steps of each kind first")
    parser.add_argument("--mixed_precision", default="no", choices=("no", "bf16", "fp16"))
    parser.add_argument("--threads", type=int, default=0, help="torch CPU threads (0 = default)")
    args = parser.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    device = torch.device(args.device)
    config = resolve_config(args.preset)
    patches_per_seq = args.patches or (config.patch_length if device.type == "cuda" else 512)
    if patches_per_seq > config.patch_length:
        raise SystemExit(f"--patches {patches_per_seq} exceeds the preset's patch_length {config.patch_length}")

    torch.manual_seed(0)
    project = NotaGenLMHeadModel(config).to(device)
    baseline = NotaGenLMHeadModel(config.with_(attn_implementation="eager")).to(device)
    baseline.load_state_dict(project.state_dict())
    embedding = baseline.patch_level_decoder.patch_embedding
    embedding.forward = embedding.forward_one_hot  # the published one-hot x Linear
    for model in (project, baseline):
        model.patch_level_decoder.base.wte.weight.requires_grad_(False)  # unused, as in training

    patches = real_batch(args.batch, patches_per_seq, config.patch_size).to(device)
    masks = torch.ones(patches.shape[:2], dtype=torch.long, device=device)
    dtype = {"bf16": torch.bfloat16, "fp16": torch.float16}.get(args.mixed_precision)
    autocast = (lambda: torch.autocast(device.type, dtype=dtype)) if dtype else nullcontext

    with torch.no_grad():  # same weights, same batch: the same loss
        project.eval(), baseline.eval()
        with autocast():
            losses = [float(m(patches, masks).loss) for m in (project, baseline)]
        project.train(), baseline.train()

    steps = {"baseline": make_step(baseline, patches, masks, autocast),
             "project": make_step(project, patches, masks, autocast)}
    times = {name: [] for name in steps}
    sync = torch.cuda.synchronize if device.type == "cuda" else (lambda: None)
    peak = {}
    for round_ in range(args.warmup + args.steps):
        for name, step in steps.items():
            if device.type == "cuda":
                torch.cuda.reset_peak_memory_stats()
            sync()
            start = time.perf_counter()
            step()
            sync()
            if round_ >= args.warmup:
                times[name].append(time.perf_counter() - start)
            if device.type == "cuda":
                peak[name] = torch.cuda.max_memory_allocated() / 2**30

    tokens = args.batch * patches_per_seq
    where = torch.cuda.get_device_name(device) if device.type == "cuda" else f"CPU, {torch.get_num_threads()} threads"
    print(f"preset {args.preset} ({sum(p.numel() for p in project.parameters()) / 1e6:.0f}M parameters), "
          f"batch {args.batch} x {patches_per_seq} patches, {where}, mixed precision {args.mixed_precision}")
    print(f"loss check (dropout off): project {losses[0]:.6f}, baseline {losses[1]:.6f}, "
          f"difference {abs(losses[0] - losses[1]):.1e}")
    rates = {}
    for name in ("baseline", "project"):
        median = statistics.median(times[name])
        rates[name] = tokens / median
        memory = f", peak memory {peak[name]:.2f} GiB" if name in peak else ""
        print(f"{name:>8}: {median:.3f} s/step (median of {len(times[name])}; "
              f"all {', '.join(f'{t:.3f}' for t in times[name])}) = {rates[name]:.1f} patches/s{memory}")
    print(f"speed-up: x{rates['project'] / rates['baseline']:.2f} patches/s")

if __name__ == "__main__":
    main()
