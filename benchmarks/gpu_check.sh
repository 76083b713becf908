#!/usr/bin/env bash
# The one prepared GPU check (about 5-8 minutes on one CUDA GPU); run it whenever a GPU is lent and
# put its figures in README. Never needed by the tests.
#   1. X-preset generation in bf16: the published loop's structure (batch 1) against the engine at
#      batch 1 / 8 / 64, patches/s and peak GPU memory (benchmarks/generation.py)
#   2. one optimizer step at the large preset on the GPU: full fine-tuning, LoRA, LoRA +
#      checkpointing, DPOP (benchmarks/train_memory.py), bf16 autocast, peak GPU memory
# PYTHON picks the interpreter (default: python); OUT a folder for the JSON rows (default: runs/gpu_check).
set -euo pipefail
cd "$(dirname "$0")/.."
PYTHON=${PYTHON:-python}
OUT=${OUT:-runs/gpu_check}
mkdir -p "$OUT"
"$PYTHON" -c "import torch, sys; ok = torch.cuda.is_available(); print(torch.__version__, torch.cuda.get_device_name() if ok else 'no CUDA GPU'); sys.exit(0 if ok else 1)"
timeout 300 "$PYTHON" benchmarks/generation.py --preset x --device cuda --dtype bfloat16 --contexts 64,1000 \
    --batches 1,8,64 --patches 24 --baseline-patches 3 --threads 0 | tee "$OUT/generation_x_bf16.txt"
timeout 240 "$PYTHON" benchmarks/train_memory.py --preset large --device cuda --patches 1024 --patch_sample 64 \
    --mixed_precision bf16 --json "$OUT/train_memory_large.json" | tee "$OUT/train_memory_large.txt"
