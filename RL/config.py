# CLaMP-DPO settings. Edit here, or override any of them as `--name value`.

from notagen.generation.piece import GenerationSettings as _published  # the one home of the published sampling defaults
from notagen.lora import LoraSettings as _lora  # the one home of the adapter defaults

# ---- RL/data.py: preference pairs from CLaMP 2 scores
GROUND_TRUTH_FEATURE_DIR = "runs/rl/reference_features"  # CLaMP 2 features (.npy) of the target-style pieces
GENERATED_FEATURE_DIR = "runs/rl/iter_1/features"  # CLaMP 2 features of the generated pieces (from their interleaved text)
GENERATED_ORIGINAL_DIR = "runs/rl/iter_1/generated/original"  # raw generated texts (what the pairs point at)
GENERATED_INTERLEAVED_DIR = "runs/rl/iter_1/generated/interleaved"  # rest-unreduced generated texts (for the checks)
OUTPUT_PATH = "runs/rl/iter_1/preferences.json"  # preference file written by data.py, read by train.py
PORTION = 0.1  # share of pieces chosen (best) and rejected (worst); published 0.1
COPY_THRESHOLD = 0.95  # a piece this close (cosine) to one ground-truth piece is a copy, never chosen; published 0.95; 0 = calibrated: above the closest two distinct ground-truth pieces (for a small M3)
REJECTED_USABLE_SHARE = 0.0  # share of the rejected pieces taken from the lowest-scoring pieces that pass the chosen rules (bars aligned, staves grouped, no copy) instead of the lowest of all: pairs that differ in style, not in broken bars (0 = published)
RANK_BY = "clamp2"  # clamp2: the published ranking, by CLaMP 2 score against the ground truth; composer: per prompt, by the evaluation's composer classifier (GENERATED_ORIGINAL_DIR an inference output folder of many prompts, STYLE_TRAIN_DIR and CLAMP2_WEIGHTS_PATH below), pairs only within a prompt
CHOSEN_TOP = 0  # RANK_BY composer: a piece may be chosen only when the classifier ranks its prompt's composer among its first CHOSEN_TOP (0 = any usable piece)
CHOSEN_INDEX_PATH = ""  # RANK_BY composer: a fine-tuning index of real pieces with prompt lines (e.g. its augmented_train.jsonl); when set, each prompt's chosen pieces are its real ones and the model's own pieces are rejected (self-play, as SPIN; "" = chosen from the model's own)

# ---- RL/train.py: DPOP training
PREFERENCE_PATH = "runs/rl/iter_1/preferences.json"  # preference file {"chosen": [...], "rejected": [...]}
WEIGHTS_PATH = ""  # weights to start from, also the frozen reference: a file or a folder holding one; "" = the shipped checkpoint (weights/embedded/)
OUTPUT_DIR = "runs/rl/iter_1/dpo"  # where the new weights, logs and resume checkpoint go
TAG = "pretrain-finetune-RL1"  # file-name tag: weights_notagen_<tag>_beta_..._lr_...pth
BETA = 0.1  # DPOP beta (published 0.1)
LAMBDA = 10.0  # DPOP lambda: penalty for lowering the chosen log-prob below the reference (published 10)
NLL_WEIGHT = 0.0  # weight of the chosen piece's negative log-likelihood per character added to DPOP (RPO; 0 = published): it keeps teaching once the rejected piece is pushed far down
LEARNING_RATE = 1e-6  # published 1e-6
OPTIMIZATION_STEPS = 10000  # optimizer steps (published 10,000, one pair a step)
BATCH_SIZE = 1  # pairs per step and process
WARMUP_STEPS = 0  # linear warm-up steps
MAX_GRAD_NORM = 1.0  # gradient clipping; 0 = off
LORA_RANK = 0  # LoRA adapters of this rank on both decoders, the rest frozen (0 = train every weight); the result is saved merged, adapter file beside it
LORA_ALPHA = _lora.alpha  # the adapters' update is scaled by alpha / rank
LORA_DROPOUT = _lora.dropout  # dropout on the adapters' input
LORA_TARGETS = _lora.targets  # GPT-2 modules that get adapters (attention q/k/v, output projections, MLP input)
DISABLE_DROPOUT = True  # train the policy without dropout (as TRL's DPO): summed over a piece, dropout lowers a log-prob by tens of nats and drowns the preference; False = published (train mode, dropout 0.1)
GRADIENT_CHECKPOINTING = False  # recompute each block in the backward pass: less memory, about a third more compute
SEED = 0  # seed of pair order and dropout
SAVE_EVERY_STEPS = 500  # resume checkpoint every N steps
LOG_EVERY_STEPS = 10  # log loss, reward margin and accuracy every N steps
LOAD_FROM_CHECKPOINT = False  # continue an interrupted run from OUTPUT_DIR
OVERWRITE = False  # start over in an OUTPUT_DIR that holds this run's weights, resume checkpoint or step log (they are replaced); without it such a run stops
MIXED_PRECISION = ""  # no, bf16 or fp16; '' = what accelerate launch says
REPORT_TO = "none"  # trackers: none, tensorboard, wandb

# ---- RL/loop.py: whole CLaMP-DPO iterations (generate -> interleave -> features -> pairs -> DPOP)
# It starts from WEIGHTS_PATH and uses PORTION, BETA, LAMBDA, LEARNING_RATE, OPTIMIZATION_STEPS, BATCH_SIZE above.
LOOP_DIR = "runs/rl"  # one folder per iteration (iter_1, iter_2, ...) plus the reference features
ITERATIONS = 1  # CLaMP-DPO iterations; the model after the last one is generated from and scored too
REFERENCE_DIR = ""  # interleaved ABC of the target style (the ground truth), e.g. corpus/reference/bach_chorales from data/build_corpus.py (required)
CLAMP2_WEIGHTS_PATH = "runs/m3/weights_m3.pth"  # CLaMP 2 checkpoint, or an M3 from clamp2/train-m3.py
NUM_SAMPLES = 100  # pieces generated per iteration (published 1,000)
PROMPT = "Baroque|Bach, Johann Sebastian|Choral"  # period|composer|instrumentation of the target style
GENERATION_BATCH_SIZE = 16  # pieces generated together
TOP_K = _published.top_k  # sampling during generation (published 9)
TOP_P = _published.top_p  # (published 0.9)
TEMPERATURE = _published.temperature  # (published 1.2)
MAX_CHARS = _published.max_chars  # a generated piece fails past this many characters
MAX_SECONDS = _published.max_seconds  # a generated piece fails after this many seconds
MAX_PATCHES = 0  # a generated piece fails after this many patches, lines written again by the bar check included (0 = no limit); unlike MAX_SECONDS it bounds a piece's time the same way on every machine
BAR_RETRIES = _published.bar_retries  # 0: the preference pairs show the policy's own mistakes (inference/config.py checks bar lines)
HEADER_RETRIES = _published.header_retries  # header lines checked as inference/config.py's HEADER_RETRIES does (0: not checked, published)
FEATURE_BATCH_SIZE = 32  # segments per forward pass of the feature extractor
COPY_SOURCE_INDEX = ""  # a training index (e.g. the fine-tuning augmented_train.jsonl): its PROMPT pieces, in every key, join REFERENCE_DIR as the real pieces the "copies" column checks a generated piece against (a copy writes at least half of its two-bar phrases as one of them does)
EVAL_PIECES = 0  # clamp2/evaluate.py on this many of each model's pieces: the table gains usable (strict), bar alignment, critic AUC and adherence columns (0 = skip; ~1 min per 200 pieces)
STYLE_TRAIN_DIR = ""  # real pieces with prompt lines for the evaluation's composer classifier ("" = no adherence column)
DEVICE = "auto"  # generation device: auto, cpu, cuda, mps
NUM_THREADS = 0  # CPU threads for torch per process (0 = torch's default; 1 when other work shares the CPU)
NUM_PROCESSES = 1  # processes for generation, feature extraction and DPOP (>1: RL/loop.py starts itself under accelerate launch, one per GPU, or CPU processes)
