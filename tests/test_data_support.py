"""Helpers shared by the data-pipeline tests (this module holds no tests of its own).

Scripts are run as real subprocesses, the way users run them, so the tests also cover their
command-line settings and their sys.path set-up. The music21 corpus is located without importing
music21 (which takes seconds).
"""
from __future__ import annotations

import importlib.util
import subprocess
import sys
from pathlib import Path

from conftest import REPO_ROOT

MUSIC21_CORPUS = Path(importlib.util.find_spec("music21").submodule_search_locations[0]) / "corpus"


def run_script(script: str, *args, cwd: Path = REPO_ROOT, expect_ok: bool = True) -> str:
    """Run `data/<script>` with `--name value` arguments; return its stdout."""
    command = [sys.executable, str(REPO_ROOT / "data" / script)] + [str(arg) for arg in args]
    result = subprocess.run(command, cwd=cwd, capture_output=True, text=True, timeout=600)
    if expect_ok:
        assert result.returncode == 0, f"{script} failed:\n{result.stdout}\n{result.stderr[-3000:]}"
    return result.stdout


def summary_line(stdout: str) -> str:
    return next(line for line in stdout.splitlines() if " converted, " in line)


def files_under(folder: Path) -> list[str]:
    """Every file below `folder`, relative, hidden temporaries included."""
    return sorted(str(path.relative_to(folder)) for path in folder.rglob("*") if path.is_file())
