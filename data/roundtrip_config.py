"""Settings of `check_roundtrip.py` (interleaved ABC -> MusicXML -> music21 against the original score).
Override any of them on the command line, e.g. `python data/check_roundtrip.py --set_name pretrain`.
"""
OUT_DIR = "corpus"  # corpus folder built by build_corpus.py; a relative path is relative to the repository root
SET_NAME = "finetune"  # which set to check: finetune, pretrain, reference/bach_chorales, reference/palestrina, reference/art_songs, reference/string_quartets
WORKERS = 0  # worker processes (0 = every core)
TIMEOUT = 300.0  # seconds one piece may take; a piece still running then counts as failed
