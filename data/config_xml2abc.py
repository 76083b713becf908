"""Settings of `1_batch_xml2abc.py` (MusicXML -> standard ABC). Override any of them on the command
line, e.g. `python data/1_batch_xml2abc.py --ori_folder my_scores --des_folder my_abc`.
Relative paths given on the command line are relative to the current directory; the defaults
live under data/work/ of this repository.
"""
from pathlib import Path

_WORK = Path(__file__).resolve().parent / "work"

ORI_FOLDER = str(_WORK / "xml")  # folder searched recursively for .xml / .musicxml / .mxl scores and .mid / .midi files (other files are counted as skipped)
DES_FOLDER = str(_WORK / "standard_abc")  # where the standard ABC files go, one <name>.abc per score
WORKERS = 0  # worker processes (0 = every core)
TIMEOUT = 120.0  # seconds one file may take; a file still running then is killed and logged
MAX_INPUT_MB = 64.0  # a score file, or the MusicXML inside an .mxl, larger than this is logged as "too large" (bounds a worker's memory)
FAILURE_LOG = ""  # file listing every failure and its reason ("" = <DES_FOLDER>_failures.log)
