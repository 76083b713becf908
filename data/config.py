"""Settings of `2_data_preprocess.py` (standard ABC -> interleaved, 15-key augmented, index files).
Override any of them on the command line, e.g. `python data/2_data_preprocess.py --seed 1`.
Relative paths given on the command line are relative to the current directory; the defaults
live under data/work/ of this repository. The index files go beside the augmented folder:
<AUGMENTED_FOLDER>.jsonl, <AUGMENTED_FOLDER>_train.jsonl and <AUGMENTED_FOLDER>_eval.jsonl.
"""
from pathlib import Path

_WORK = Path(__file__).resolve().parent / "work"

ORI_FOLDER = str(_WORK / "standard_abc")  # folder searched recursively for standard ABC files (.abc)
INTERLEAVED_FOLDER = str(_WORK / "interleaved")  # interleaved ABC, one <name>.abc per piece (CLaMP 2 format)
AUGMENTED_FOLDER = str(_WORK / "augmented")  # 15 key folders <KEY>/<name>_<KEY>.abc, rest-reduced (NotaGen format)
EVAL_SPLIT = 0.1  # share of pieces in <AUGMENTED_FOLDER>_eval.jsonl
SEED = 0  # seed of the train / eval split
WORKERS = 0  # worker processes (0 = every core)
TIMEOUT = 120.0  # seconds one file may take; a file still running then is killed and logged
METADATA = ""  # prompt lines for the pieces: a CSV (name,period,composer,instrumentation) or JSON-lines file, a folder laid out <period>/<composer>/<instrumentation>/<score> (e.g. stage 1's MusicXML folder), or 'folders' for ORI_FOLDER's own layout ("" = none: prompt lines already in the ABC stay; see docs/own-scores.md)
FAILURE_LOG = ""  # file listing every failure and its reason ("" = <AUGMENTED_FOLDER>_failures.log)
