"""Pre-training settings. Edit here, or override any of them: `python train-gen.py --name value`.

Sizes left at 0 come from PRESET. Relative data paths are tried from the working directory, then
from the repository root; OUTPUT_DIR is relative to the repository root.
"""
# ---- data
DATA_TRAIN_INDEX_PATH = "corpus/pretrain/augmented_train.jsonl"  # training index: {"path","key"} lines or a file list
DATA_EVAL_INDEX_PATH = "corpus/pretrain/augmented_eval.jsonl"  # eval index ('' = no eval; best = lowest train loss)
KEY_MODE = "uniform"  # key per example: uniform (any of the 15 keys), near (fine-tune odds), original
PATCH_STREAM = True  # cut pieces longer than PATCH_LENGTH at a random line (stream cuts)

# ---- model (0 = take the size from PRESET)
MODEL = "notagen"  # notagen, or a baseline with the preset's parameter count: abc_gpt2 (flat char GPT-2), folk_rnn (char LSTM)
PRESET = "small"  # tiny, small, medium, large or x
PATCH_SIZE = 0  # characters per patch (16)
PATCH_LENGTH = 0  # patches per sequence
PATCH_NUM_LAYERS = 0  # patch-level decoder layers
CHAR_NUM_LAYERS = 0  # char-level decoder layers
HIDDEN_SIZE = 0  # hidden size of both decoders (baselines: their width)
NUM_LAYERS = 0  # baselines only: GPT-2 blocks or LSTM layers (0 = matched to the preset's parameters)
PATCH_SAMPLING_BATCH_SIZE = 0  # train the char decoder on this many random patches per batch (0 = all)
GRADIENT_CHECKPOINTING = False  # recompute each block in the backward pass: less memory, about a third more compute

# ---- optimisation
NUM_EPOCHS = 64  # passes over the training data
LEARNING_RATE = 1e-4  # peak AdamW learning rate
BATCH_SIZE = 4  # pieces per batch per process
ACCUMULATION_STEPS = 1  # batches per optimizer step
WARMUP_STEPS = 1000  # optimizer steps of linear warm-up
LR_SCHEDULE = "constant"  # after warm-up: constant, linear or cosine
MAX_GRAD_NORM = 1.0  # gradient clipping (0 = off)
WEIGHT_DECAY = 0.01  # AdamW weight decay
MIXED_PRECISION = ""  # no, bf16, fp16 ('' = as accelerate launch says)
SEED = 0  # seed of initial weights, data order, keys, stream cuts and dropout
NUM_WORKERS = 0  # DataLoader workers per process
NUM_THREADS = 0  # CPU threads per process (0 = torch default; 1 avoids oversubscription on busy CPUs)
CPU = False  # train on the CPU even when a GPU is present (several CPU processes: accelerate launch --multi_gpu --num_processes N ... --cpu true)
MAX_STEPS = 0  # stop (resumably) after this many optimizer steps, where linear/cosine decay reach 0 (0 = all epochs)

# ---- checkpoints and logs
LOAD_FROM_CHECKPOINT = False  # continue the run with these settings from its last checkpoint
OVERWRITE = False  # start over in an OUTPUT_DIR that holds this run's weights, resume checkpoint or step log (they are replaced); without it such a run stops
SAVE_EVERY_STEPS = 500  # also write the resume checkpoint every N optimizer steps (0 = epoch ends only)
LOG_EVERY_STEPS = 10  # log the training loss every N optimizer steps
EXP_TAG = "pretrain"  # tag in the file names: weights_notagen_<tag>_p_size_..._batch_<n>.pth
OUTPUT_DIR = "runs/pretrain"  # folder for weights, resume checkpoint and logs
REPORT_TO = "none"  # trackers: none, tensorboard, wandb, all (installed ones)
WANDB_LOGGING = False  # published switch: same as adding wandb to REPORT_TO
PROGRESS_BAR = True  # tqdm progress bar
