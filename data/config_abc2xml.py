"""Settings of `3_batch_abc2xml.py` (standard, interleaved or generated ABC -> MusicXML). Override
any of them on the command line, e.g. `python data/3_batch_abc2xml.py --ori_folder outputs/abc`.
Relative paths given on the command line are relative to the current directory; the defaults
live under data/work/ of this repository.
"""
from pathlib import Path

_WORK = Path(__file__).resolve().parent / "work"

ORI_FOLDER = str(_WORK / "interleaved")  # folder searched recursively for .abc files (generated text allowed)
DES_FOLDER = str(_WORK / "musicxml")  # where the MusicXML files go, one <name>.xml per ABC file
WORKERS = 0  # worker processes (0 = every core)
TIMEOUT = 120.0  # seconds one file may take; a file still running then is killed and logged
FAILURE_LOG = ""  # file listing every failure and its reason ("" = <DES_FOLDER>_failures.log)
