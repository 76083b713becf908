#!/usr/bin/env bash
# One entry point for a fresh machine:
#   bash run.sh          install (first time) and run the main job on the embedded default (about an hour on 2 cores)
#   bash run.sh quick    the same job at a toy size (a few minutes), into runs/quick/
#   bash run.sh test     install (first time, with the browser-test tools) and run the test suite
#   bash run.sh demo     install (first time) and serve the demo page on http://127.0.0.1:7860/
# VENV=path chooses the virtual environment (default .venv beside this file).
set -euo pipefail
cd "$(dirname "$0")"
VENV="${VENV:-.venv}"
case "$VENV" in /*) ;; *) VENV="$PWD/$VENV" ;; esac  # an absolute path from here on (VENV=/elsewhere works too)
# install "$1" into the venv unless its marker is newer than the requirements file and pyproject.toml
install() {
  local requirements="$1" marker="$VENV/.installed-$1"
  if [ ! -x "$VENV/bin/python" ] || [ ! -f "$marker" ] || [ "$requirements" -nt "$marker" ] \
     || [ pyproject.toml -nt "$marker" ]; then
    echo "== installing $requirements into $VENV =="
    [ -x "$VENV/bin/python" ] || python3 -m venv "$VENV"
    "$VENV/bin/python" -m pip install --quiet --upgrade pip
    "$VENV/bin/python" -m pip install --quiet -r "$requirements"
    touch "$marker"
  fi
}
install requirements.txt
export PATH="$VENV/bin:$PATH"
case "${1:-main}" in
  test) shift || true; install requirements-test.txt; exec python -m pytest -q tests "$@" ;;
  main) shift || true; exec python main.py "$@" ;;
  quick) shift || true; exec python main.py --quick true "$@" ;;
  demo) shift || true; exec python gradio/demo.py "$@" ;;
  *) echo "usage: bash run.sh [main|quick|test|demo] [args...]" >&2; exit 2 ;;
esac
