#!/usr/bin/env bash
# Issue 43's prepared GPU run (about 8 minutes on one CUDA GPU): weights/train.sh's recipe with more
# steps, the corpus built on every core, the checkpoint and its prompt-following table written to OUT.
# Compare the table with the CPU-trained model's (weights/README.md) and keep the better one:
#   python weights/export.py ...  (or copy OUT/shipped43/ft's weights file into weights/embedded/)
# Never needed by the tests. PYTHON picks the interpreter; OUT a folder (default: runs/gpu_train).
set -euo pipefail
cd "$(dirname "$0")/.."
export PYTHON=${PYTHON:-python}
OUT=${OUT:-runs/gpu_train}
"$PYTHON" -c "import torch, sys; ok = torch.cuda.is_available(); print(torch.cuda.get_device_name() if ok else 'no CUDA GPU'); sys.exit(0 if ok else 1)"
RUN="$OUT/shipped43" STEPS=${STEPS:-3000} THREADS=4 CORPUS="$OUT/corpus" \
  timeout 540 bash weights/train.sh 2>&1 | grep -v "it/s\]" | tail -40
