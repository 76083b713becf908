"""Settings of the clamp2 stage: CLaMP 2 feature extraction and the CLaMP 2 score statistics.

Every name can be overridden on the command line as `--name value`. Relative input paths are
tried from the working directory, then from the repository root; output paths are relative to the
repository root.
"""

NUM_THREADS = 0  # CPU threads for torch in extract_clamp2.py and evaluate.py (0 = torch's default; 1 beside other work)

# extract_clamp2.py
INPUT_DIR = "runs/generated"  # folder of .abc files to featurize (searched recursively)
OUTPUT_DIR = "runs/clamp2_features/generated"  # mirrored output folder of <name>.npy features [1, hidden]
CLAMP2_WEIGHTS_PATH = "weights/weights_clamp2_h_size_768_lr_5e-05_batch_128_scale_1_t_length_128_t_model_FacebookAI_xlm-roberta-base_t_dropout_True_m3_True.pth"  # CLaMP 2 checkpoint (music side used; the published file's name, download it into weights/), or an M3 checkpoint from train-m3.py; evaluate.py's feature extractor too ("" = skip its CLaMP 2 score, FMD, critic, novelty and composer classifier; this default file missing: skipped with a note)
BATCH_SIZE = 16  # segments (of up to patch_length patches) per forward pass

# statistics.py
GENERATED_FEATURES_DIR = "runs/clamp2_features/generated"  # features of the generated pieces
REFERENCE_FEATURES_DIR = "runs/clamp2_features/reference"  # features of the ground-truth pieces of the target style
SCORES_CSV = None  # if set, write per-file scores (best first) to this CSV file

# evaluate.py (its feature extractor is CLAMP2_WEIGHTS_PATH above)
GENERATED_DIR = "output"  # generated pieces: a folder of .abc files, or an inference output folder such as inference/config.py's OUTPUT_DIR (its summary says which finished)
REFERENCE_DIR = ""  # real pieces (.abc) to compare with, e.g. corpus/reference/bach_chorales from data/build_corpus.py (required)
STYLE_TRAIN_DIR = ""  # real pieces with prompt lines for the composer classifier and the texture rule's ceiling, e.g. corpus/finetune/interleaved ("" = skip the classifier, with a note)
EVAL_OUTPUT_DIR = "runs/evaluation"  # report.md, report.json and report.png go here
MAX_PIECES = 0  # evaluate only the first this many generated pieces (0 = all; music21 parses about 3 a second here)
