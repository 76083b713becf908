"""Stage 2: standard ABC -> cleaned, interleaved ABC and 15 transposed, rest-reduced copies + index files.

Writes <INTERLEAVED_FOLDER>/<name>.abc, <AUGMENTED_FOLDER>/<KEY>/<name>_<KEY>.abc and the index
files <AUGMENTED_FOLDER>.jsonl, _train.jsonl, _eval.jsonl (seeded split). Prompt lines at the top
of a file (%period, %composer, %instrumentation) are kept on top of every output; `--metadata`
(a CSV or JSON-lines file, or a folder layout) puts them there instead and names the pieces it has
no entry for. Pieces whose voices have different bar counts are logged and skipped. Settings:
config.py; walkthrough: docs/own-scores.md.
"""
import sys
from pathlib import Path

from notagen.abc.pipeline import beside, failure_log_beside, preprocess_folder, print_stage_result  # noqa: E402
from notagen.settings import parse_settings, record_settings, run_stage  # noqa: E402

def main(argv=None) -> int:
    cfg = parse_settings(Path(__file__).with_name("config.py"), argv, description=__doc__)
    failure_log = cfg.failure_log or failure_log_beside(cfg.augmented_folder)
    report, index_counts, prompts = preprocess_folder(
        cfg.ori_folder, cfg.interleaved_folder, cfg.augmented_folder, eval_split=cfg.eval_split,
        seed=cfg.seed, workers=cfg.workers, timeout=cfg.timeout, failure_log=failure_log, metadata=cfg.metadata)
    record_settings(cfg, beside(cfg.augmented_folder, "_settings.json"))  # `--config` repeats the run
    index_line = "index files: " + ", ".join(f"{name} ({count})" for name, count in index_counts.items())
    return print_stage_result(report, failure_log, index_line, *([prompts.summary()] if prompts else []))

if __name__ == "__main__":
    sys.exit(run_stage(main))
