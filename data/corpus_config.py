"""Settings of `build_corpus.py` (the embedded corpus from music21's bundled scores and the OpenScore
corpora in data/openscore/, no downloads). Override any of them on the command line, e.g.
`python data/build_corpus.py --max_pieces 0`.
"""
OUT_DIR = "corpus"  # output folder; a relative path is relative to the repository root
PRETRAIN_SET = True  # build the pre-training set (false: only the fine-tuning set and the references, which come out as they would beside it; an earlier pre-training set in OUT_DIR is kept; much faster: the pre-training set is most of the build)
MAX_PIECES = 100  # at most this many pieces in each training set (0 = every piece that converts)
REFERENCE_PIECES = 20  # held-out pieces in each reference set (Bach chorales, Palestrina, OpenScore songs, OpenScore quartet movements)
OPENSCORE_FOLDER = "data/openscore"  # the OpenScore Lieder and String Quartets corpora (lieder/, string-quartets/); a relative path is looked up from the current folder, then the repository root ("" = music21's corpus alone)
MIN_PROMPT_PIECES = 10  # a prompt with fewer pieces (outside the references) stays out of the fine-tuning set; its pieces stay in pre-training (1 = every prompt)
EVAL_SPLIT = 0.1  # share of each training set listed in augmented_eval.jsonl
SEED = 0  # seed of the piece choice and of the train / eval split
WORKERS = 0  # worker processes (0 = every core)
TIMEOUT = 180.0  # seconds one piece may take to convert; a piece still running then is logged as failed
FOCUS_PROMPT = ""  # period|composer|instrumentation of which FOCUS_PIECES more pieces join the fine-tuning set ('' = none)
FOCUS_PIECES = 0  # extra fine-tuning pieces of FOCUS_PROMPT on top of the MAX_PIECES round robin (e.g. the style CLaMP-DPO targets)
