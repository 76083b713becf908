"""A fine-tuning index with a chosen mix of prompts (notagen/abc/balance.py): every prompt capped at
CAP pieces (UNCAPPED prompts kept whole), the REPEATS prompts listed that many times.

    python data/balance_index.py --index corpus/finetune/augmented_train.jsonl --output_path runs/mix/train.jsonl \
        --cap 200 --uncapped "Baroque|Bach, Johann Sebastian|Choral" \
        --repeats "Classical|Haydn, Joseph|Chamber=3;Romantic|Schubert, Franz|Art Song=2"

Settings are the constants below, each overridable as `--name value`. Prints the lines per prompt.
"""
import sys
from pathlib import Path

from notagen.abc.balance import balance_index, counts_json, parse_repeats
from notagen.paths import resolve_input_path, resolve_output_dir
from notagen.settings import parse_settings, run_stage

INDEX = "corpus/finetune/augmented_train.jsonl"  # the index to balance (a build_corpus or stage-2 index)
OUTPUT_PATH = "runs/balanced/train.jsonl"  # the balanced index to write
CAP = 200  # most pieces of one prompt (a seeded choice)
UNCAPPED = ""  # prompts kept whole, separated by ";" (period|composer|instrumentation)
REPEATS = ""  # prompts listed more than once: "period|composer|instrumentation=N;..." (each repeat gets its own key)
SEED = 0  # seed of the choice and of the order


def main(cfg) -> int:
    uncapped = tuple(filter(None, (part.strip() for part in cfg.uncapped.split(";"))))
    out = resolve_output_dir(cfg.output_path)
    counts = balance_index(resolve_input_path(cfg.index), out, cfg.cap, parse_repeats(cfg.repeats), uncapped, cfg.seed)
    print(counts_json(counts))
    print(f"{sum(counts.values())} lines of {len(counts)} prompts -> {out}")
    return 0


if __name__ == "__main__":
    sys.exit(run_stage(main, parse_settings(Path(__file__), description=__doc__)))
