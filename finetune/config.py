"""Fine-tuning settings. Edit here, or override any of them: `python train-gen.py --name value`.

Sizes are read from PRETRAINED_PATH (a size set here must match it). Relative data paths are
tried from the working directory, then from the repository root; OUTPUT_DIR is relative to the
repository root. Training files should start with the prompt lines %period / %composer /
%instrumentation (data-formats.md s.6); they are kept as metadata lines.
"""
from notagen.lora import LoraSettings as _lora  # the one home of the adapter defaults

# ---- data
DATA_TRAIN_INDEX_PATH = "corpus/finetune/augmented_train.jsonl"  # training index: {"path","key"} lines or a file list
DATA_EVAL_INDEX_PATH = "corpus/finetune/augmented_eval.jsonl"  # eval index ('' = no eval; best = lowest train loss)
KEY_MODE = "near"  # key per example: near (-3..+3 semitones, weights 1,2,3,4,3,2,1), uniform, original
PATCH_STREAM = True  # cut pieces longer than PATCH_LENGTH at a random line (stream cuts)
PROMPT_BALANCE = 0.0  # repeat rarer prompts' pieces: a prompt's share of an epoch goes as count ** (1 - b) (0 = the data's mix, 1 = all prompts equal)

# ---- model (0 = take the size from the pre-trained weights)
PRETRAINED_PATH = "runs/pretrain"  # pre-trained weights: a .pth file (published or ours), or a folder holding one weights_*.pth (NotaGen or a baseline: the type comes from the file)
MODEL = ""  # '' = the pre-trained file's type (notagen, abc_gpt2, folk_rnn); a type set here must match it
PRESET = ""  # unused when fine-tuning: sizes come from PRETRAINED_PATH
PATCH_SIZE = 0  # characters per patch (16)
PATCH_LENGTH = 0  # patches per sequence
PATCH_NUM_LAYERS = 0  # patch-level decoder layers
CHAR_NUM_LAYERS = 0  # char-level decoder layers
HIDDEN_SIZE = 0  # hidden size of both decoders (baselines: their width)
NUM_LAYERS = 0  # baselines only: GPT-2 blocks or LSTM layers
PATCH_SAMPLING_BATCH_SIZE = 0  # train the char decoder on this many random patches per batch (0 = all)
LORA_RANK = 0  # LoRA adapters of this rank on both decoders, the rest frozen (0 = train every weight); the result is saved merged, adapter file beside it
LORA_ALPHA = _lora.alpha  # the adapters' update is scaled by alpha / rank
LORA_DROPOUT = _lora.dropout  # dropout on the adapters' input
LORA_TARGETS = _lora.targets  # GPT-2 modules that get adapters (attention q/k/v, output projections, MLP input)
GRADIENT_CHECKPOINTING = False  # recompute each block in the backward pass: less memory, about a third more compute

# ---- optimisation
NUM_EPOCHS = 16  # passes over the training data
LEARNING_RATE = 1e-5  # peak AdamW learning rate
BATCH_SIZE = 4  # pieces per batch per process
ACCUMULATION_STEPS = 1  # batches per optimizer step
WARMUP_STEPS = 100  # optimizer steps of linear warm-up
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
EXP_TAG = "finetune"  # tag in the file names: weights_notagen_<tag>_p_size_..._batch_<n>.pth
OUTPUT_DIR = "runs/finetune"  # folder for weights, resume checkpoint and logs
REPORT_TO = "none"  # trackers: none, tensorboard, wandb, all (installed ones)
WANDB_LOGGING = False  # published switch: same as adding wandb to REPORT_TO
PROGRESS_BAR = True  # tqdm progress bar
