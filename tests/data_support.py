"""Helpers shared by the data-pipeline tests (this module holds no tests of its own).

Scripts are run as real subprocesses, the way users run them, so the tests also cover their
command-line settings and their sys.path set-up. The music21 corpus is located without importing
music21 (which takes seconds).
"""
from __future__ import annotations

import importlib.util
import shutil
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


# a handful of the OpenScore scores of data/openscore/, small ones (tests never build from all of them)
OPENSCORE_SAMPLE = [
    "lieder/scores/Brahms,_Johannes/5_Poems,_Op.19/2_Scheiden_und_Meiden/lc5069028.mxl",  # a pedal "discontinue"
    "lieder/scores/Brahms,_Johannes/6_Songs,_Op.7/5_Die_Trauernde/lc5098625.mxl",
    "lieder/scores/Brahms,_Johannes/5_Poems,_Op.19/4_Der_Schmied/lc5654485.mxl",
    "lieder/scores/Schröter,_Corona/25_Lieder/3_An_Laura/lc6019054.mxl",
    "lieder/scores/Faisst,_Clara_Mathilda/4_Lieder,_Op.11/1_Wanderlied/lc6258870.mxl",
    "string-quartets/scores/Mozart,_Wolfgang_Amadeus/String_Quartet_No.18_in_A_major,_K.464_(Op._10,_No._5)/sq7070781.mxl",
    "string-quartets/scores/Mozart,_Wolfgang_Amadeus/String_Quartet_No.18_in_A_major,_K.464_(Op._10,_No._5)/sq7093885.mxl",
]


def openscore_sample(folder: Path) -> Path:
    """`folder` laid out like data/openscore/ with the OPENSCORE_SAMPLE scores and both composer tables."""
    source = REPO_ROOT / "data" / "openscore"
    for relative in OPENSCORE_SAMPLE + ["lieder/data/composers.tsv", "string-quartets/data/composers.tsv"]:
        (folder / relative).parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(source / relative, folder / relative)
    return folder
