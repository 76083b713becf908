#!/usr/bin/env bash
# How the shipped checkpoint's fine-tuning stage is made, start to end, with the project's own
# scripts (weights/README.md, "Made with these commands", says which steps made the current one).
#   1. the fine-tuning set of the embedded corpus: music21's scores + OpenScore Lieder and String
#      Quartets, every piece (the pre-training set is not rebuilt: it starts from weights/embedded)
#   2. a balanced index: every prompt capped at CAP pieces-in-keys, Bach's chorales uncapped,
#      the quartet composers x3 and Schubert's and Brahms's songs x2
#   3. fine-tuning from the shipped checkpoint (resumes exactly: rerun with --load_from_checkpoint true)
# Environment: PYTHON (default python), RUN (default runs/shipped43), STEPS (default 1000),
# THREADS (default 2), EXTRA (more train-gen.py settings, e.g. "--cpu false" on a GPU).
set -euo pipefail
cd "$(dirname "$0")/.."
PYTHON=${PYTHON:-python}
RUN=${RUN:-runs/shipped43}
STEPS=${STEPS:-1000}
THREADS=${THREADS:-2}
CAP=${CAP:-200}
CORPUS=${CORPUS:-runs/corpus_full}
mkdir -p "$RUN"
[ -f "$CORPUS/finetune/augmented_train.jsonl" ] || \
  "$PYTHON" data/build_corpus.py --out_dir "$CORPUS" --max_pieces 0 --pretrain_set false
"$PYTHON" data/balance_index.py --index "$CORPUS/finetune/augmented_train.jsonl" --output_path "$RUN/train.jsonl" \
  --cap "$CAP" --uncapped "Baroque|Bach, Johann Sebastian|Choral" \
  --repeats "Classical|Haydn, Joseph|Chamber=3;Classical|Mozart, Wolfgang Amadeus|Chamber=3;Classical|Beethoven, Ludwig van|Chamber=3;Romantic|Schubert, Franz|Art Song=2;Romantic|Brahms, Johannes|Art Song=2"
"$PYTHON" data/balance_index.py --index "$CORPUS/finetune/augmented_eval.jsonl" --output_path "$RUN/eval.jsonl" --cap 15
# shellcheck disable=SC2086
"$PYTHON" finetune/train-gen.py --pretrained_path weights/embedded --data_train_index_path "$RUN/train.jsonl" \
  --data_eval_index_path "$RUN/eval.jsonl" --batch_size 4 --learning_rate 3e-4 --lr_schedule cosine \
  --warmup_steps 50 --num_epochs 100 --max_steps "$STEPS" --save_every_steps 100 --num_threads "$THREADS" \
  --exp_tag shipped43 --output_dir "$RUN/ft" ${EXTRA:-}
"$PYTHON" benchmarks/prompt_following.py --weights "$RUN/ft" --output_dir "$RUN/prompt_following"
