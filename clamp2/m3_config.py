"""Settings of M3 masked-patch pre-training (clamp2/train-m3.py), for users without the published
M3 / CLaMP 2 weights. The best checkpoint (`model` = `encoder.*` + `decoder.*`, plus `config`) can be
given to extract_clamp2.py as CLAMP2_WEIGHTS_PATH: features are then mean-pooled encoder outputs.

Override any of them: `python clamp2/train-m3.py --name value`. Relative data paths are tried from
the working directory, then from the repository root; OUTPUT_DIR is relative to the repository root.
"""
# ---- data
TRAIN_DIR = "corpus/pretrain/interleaved"  # folder of interleaved .abc files (searched recursively)
EVAL_SHARE = 0.05  # share of the files held out for the eval loss (0 = none; best = lowest train loss)

# ---- model (0 = take the size from PRESET)
PRESET = "tiny"  # tiny (CPU, minutes) or published (patch_length 512, hidden 768, 12 layers)
PATCH_LENGTH = 0  # patches per segment
HIDDEN_SIZE = 0  # width of encoder and char decoder
NUM_LAYERS = 0  # BERT layers of the encoder
DECODER_LAYERS = 0  # GPT-2 layers of the char decoder
DECODER_PATCH_SAMPLE = 0  # decode only this many random selected patches per batch (0 = all)
INIT_WEIGHTS_PATH = ""  # start from this M3 checkpoint instead of random weights ('' = random)

# ---- optimisation
NUM_EPOCHS = 100  # passes over the training data
LEARNING_RATE = 1e-4  # peak AdamW learning rate (published M3: 1e-4)
BATCH_SIZE = 16  # pieces per batch per process
ACCUMULATION_STEPS = 1  # batches per optimizer step
WARMUP_STEPS = 1000  # optimizer steps of linear warm-up
LR_SCHEDULE = "constant"  # after warm-up: constant, linear or cosine
MAX_GRAD_NORM = 1.0  # gradient clipping (0 = off)
WEIGHT_DECAY = 0.01  # AdamW weight decay
MIXED_PRECISION = ""  # no, bf16, fp16 ('' = as accelerate launch says)
SEED = 0  # seed of initial weights, train/eval split, data order, windows, masking and dropout
NUM_WORKERS = 0  # DataLoader workers per process
NUM_THREADS = 0  # CPU threads per process (0 = torch default; 1 avoids oversubscription on busy CPUs)
CPU = False  # train on the CPU even when a GPU is present
MAX_STEPS = 0  # stop (resumably) after this many optimizer steps, where linear/cosine decay reach 0 (0 = all epochs)

# ---- checkpoints and logs
LOAD_FROM_CHECKPOINT = False  # continue the run with these settings from its last checkpoint
OVERWRITE = False  # start over in an OUTPUT_DIR that holds this run's weights, resume checkpoint or step log (they are replaced); without it such a run stops
SAVE_EVERY_STEPS = 500  # also write the resume checkpoint every N optimizer steps (0 = epoch ends only)
LOG_EVERY_STEPS = 10  # log the training loss every N optimizer steps
OUTPUT_DIR = "runs/m3"  # folder for weights, resume checkpoint and logs
WEIGHTS_NAME = "weights_m3.pth"  # file name of the best checkpoint
REPORT_TO = "none"  # trackers: none, tensorboard, wandb, all (installed ones)
PROGRESS_BAR = True  # tqdm progress bar
