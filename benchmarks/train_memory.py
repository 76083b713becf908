"""Peak memory and time of one optimizer step: full fine-tuning vs LoRA vs LoRA + gradient
checkpointing, and DPOP (policy + resident reference, as published) vs this project's DPOP
(reference log-probs taken once) vs DPOP with LoRA.

    python benchmarks/train_memory.py --preset large            # 516M parameters, CPU: a few minutes
    python benchmarks/train_memory.py --preset tiny             # a quick check
    python benchmarks/train_memory.py --preset large --device cuda --mixed_precision bf16

Each variant runs in its own process (a process's peak memory only grows), on the same real
batch (see train_step.py): `--batch` sequences of `--patches` patches, the char decoder trained on
`--patch_sample` of them (published PATCH_SAMPLING_BATCH_SIZE). A process builds the model from
the preset (random weights: memory and time do not depend on the values), runs two AdamW steps
and reports its peak memory (max RSS on CPU, the allocator's peak on CUDA) and the second step's
time. Ratios are against full fine-tuning (DPOP variants: against published DPOP).
"""
from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import time
from pathlib import Path

VARIANTS = {  # name -> (LoRA, gradient checkpointing, DPOP reference: None | "resident" | "precomputed")
    "full fine-tuning": (False, False, None),
    "LoRA": (True, False, None),
    "LoRA + checkpointing": (True, True, None),
    "DPOP, published (policy + resident reference)": (False, False, "resident"),
    "DPOP, reference log-probs taken once": (False, False, "precomputed"),
    "DPOP + LoRA": (True, False, "precomputed"),
    "DPOP + LoRA + checkpointing": (True, True, "precomputed"),
}

def peak_mib(device) -> float:
    import torch

    if device.type == "cuda":
        return torch.cuda.max_memory_allocated(device) / 2**20
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024

def run_variant(args) -> dict:
    """One variant in this process: two optimizer steps; peak memory and the second step's time."""
    import torch

    from notagen.config import resolve_config
    from notagen.rl import dpop_loss
    from notagen.lora import LoraSettings, add_lora, adapters_disabled, enable_gradient_checkpointing
    from notagen.model import NotaGenLMHeadModel
    from train_step import real_batch

    lora, checkpointing, reference = VARIANTS[args.variant]
    torch.manual_seed(0)
    if args.threads:
        torch.set_num_threads(args.threads)
    device = torch.device(args.device)
    config = resolve_config(args.preset)
    model = NotaGenLMHeadModel(config).to(device).train()
    resident = None
    if reference == "resident":  # the published DPO keeps a second, frozen model beside the policy
        resident = NotaGenLMHeadModel(config).to(device).eval().requires_grad_(False)
    if lora:
        add_lora(model, LoraSettings(rank=args.lora_rank))
    if checkpointing:
        enable_gradient_checkpointing(model)
    rows = 2 * args.batch if reference else args.batch  # DPOP: chosen and rejected of each pair
    patches = real_batch(rows, args.patches, config.patch_size).to(device)
    masks = torch.ones(patches.shape[:2], dtype=torch.long, device=device)
    trainable = [p for p in model.parameters() if p.requires_grad]
    optimizer = torch.optim.AdamW(trainable, lr=1e-5)
    autocast = torch.autocast(device.type, dtype=torch.bfloat16, enabled=args.mixed_precision == "bf16")
    with torch.no_grad(), adapters_disabled(model):
        precomputed = model.sequence_logp(patches, masks) if reference == "precomputed" else None

    def step() -> float:
        started = time.perf_counter()
        with autocast:
            if reference is None:
                loss = model(patches, masks, patch_sample=args.patch_sample).loss
            else:
                logp = model.sequence_logp(patches, masks)
                if resident is not None:
                    with torch.no_grad():
                        ref = resident.sequence_logp(patches, masks)
                else:
                    ref = precomputed
                loss = dpop_loss(logp[:args.batch], logp[args.batch:], ref[:args.batch], ref[args.batch:])[0].mean()
        loss.backward()
        torch.nn.utils.clip_grad_norm_(trainable, 1.0)
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
        if device.type == "cuda":
            torch.cuda.synchronize(device)
        return time.perf_counter() - started

    step()
    seconds = step()
    return {"variant": args.variant, "peak_mib": round(peak_mib(device), 1), "step_seconds": round(seconds, 3),
            "parameters": sum(p.numel() for p in model.parameters()),
            "trainable": sum(p.numel() for p in trainable)}

def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--preset", default="large")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--patches", type=int, default=256, help="patches per sequence")
    parser.add_argument("--batch", type=int, default=1, help="sequences (DPOP: pairs) per step")
    parser.add_argument("--patch_sample", type=int, default=64, help="patches the char decoder trains on (0 = all)")
    parser.add_argument("--lora_rank", type=int, default=8)
    parser.add_argument("--mixed_precision", default="no", choices=["no", "bf16"])
    parser.add_argument("--threads", type=int, default=0, help="torch CPU threads (0 = default)")
    parser.add_argument("--only", default="", help="comma list of variant numbers to run (1-based; default all)")
    parser.add_argument("--variant", default="", help=argparse.SUPPRESS)  # set in the child processes
    parser.add_argument("--json", default="", help="also write the rows to this file")
    args = parser.parse_args()
    if args.variant:
        print(json.dumps(run_variant(args)))
        return
    rows = []
    chosen = [list(VARIANTS)[int(i) - 1] for i in args.only.split(",")] if args.only else list(VARIANTS)
    for name in chosen:
        command = [sys.executable, __file__, *sys.argv[1:], "--variant", name]
        done = subprocess.run(command, capture_output=True, text=True)
        if done.returncode != 0:
            print(f"{name}: failed\n{done.stderr[-2000:]}", file=sys.stderr)
            continue
        rows.append(json.loads(done.stdout.strip().splitlines()[-1]))
        print(f"  {name}: {rows[-1]['peak_mib']:.0f} MiB, {rows[-1]['step_seconds']:.2f} s", file=sys.stderr)
    base = {"fine": next((r for r in rows if r["variant"] == "full fine-tuning"), None),
            "dpop": next((r for r in rows if r["variant"].startswith("DPOP, published")), None)}
    print(f"\none optimizer step, preset {args.preset} ({rows[0]['parameters'] / 1e6:.0f}M parameters), "
          f"{args.device}, {args.batch} x {args.patches} patches, char decoder on {args.patch_sample}, "
          f"mixed precision {args.mixed_precision}, LoRA rank {args.lora_rank}\n")
    print("| variant | trainable | peak memory | vs baseline | step time | vs baseline |\n|---|---|---|---|---|---|")
    for row in rows:
        ref = base["dpop"] if row["variant"].startswith("DPOP") else base["fine"]
        ratio = (lambda key: f"{row[key] / ref[key]:.2f}x" if ref else "-")
        print(f"| {row['variant']} | {row['trainable'] / 1e6:.1f}M | {row['peak_mib']:.0f} MiB | {ratio('peak_mib')} | "
              f"{row['step_seconds']:.2f} s | {ratio('step_seconds')} |")
    if args.json:
        Path(args.json).write_text(json.dumps(rows, indent=1))

if __name__ == "__main__":
    main()
