#!/usr/bin/env bash
# One entry point for a fresh machine:
#   bash run.sh          install (first time) and run the main job on the embedded default
#   bash run.sh test     install (first time) and run the test suite
# VENV=path chooses the virtual environment (default .venv beside this file).
set -euo pipefail
cd "$(dirname "$0")"
VENV="${VENV:-.venv}"
if [ ! -x "$VENV/bin/python" ] || [ ! -f "$VENV/.installed" ] || [ requirements.txt -nt "$VENV/.installed" ]; then
  echo "== installing into $VENV =="
  python3 -m venv "$VENV"
  "$VENV/bin/python" -m pip install --quiet --upgrade pip
  "$VENV/bin/python" -m pip install --quiet -r requirements.txt
  touch "$VENV/.installed"
fi
export PATH="$PWD/$VENV/bin:$PATH"
case "${1:-main}" in
  test) shift || true; exec python -m pytest -q tests "$@" ;;
  main) shift || true; exec python main.py "$@" ;;
  *) echo "usage: bash run.sh [main|test] [args...]" >&2; exit 2 ;;
esac
