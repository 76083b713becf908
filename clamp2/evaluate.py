"""Evaluate generated music against real music: validity, statistics, CLaMP 2 score, critic,
style classifier and novelty in one report (notagen.evaluation).

    python clamp2/evaluate.py --generated_dir runs/main/inference --reference_dir corpus/reference/bach_chorales

Settings: clamp2/config.py (evaluate.py section). Writes report.md, report.json and report.png
to --eval_output_dir and prints the summary line.
"""
import sys
from pathlib import Path

_HERE = Path(__file__).resolve().parent
if Path(sys.path[0]).resolve() == _HERE:  # this folder's statistics.py would shadow the standard library's
    del sys.path[0]

from notagen.evaluation import evaluate, write_report  # noqa: E402
from notagen.settings import apply_num_threads, parse_settings, record_settings, run_stage  # noqa: E402
from notagen.paths import resolve_input_path, resolve_output_dir  # noqa: E402


def main(argv=None):
    cfg = parse_settings(_HERE / "config.py", argv, description=__doc__)
    apply_num_threads(cfg)
    weights = str(resolve_input_path(cfg.eval_clamp2_weights_path)) if cfg.eval_clamp2_weights_path else ""
    style = str(resolve_input_path(cfg.style_train_dir)) if cfg.style_train_dir else ""
    report = evaluate(resolve_input_path(cfg.generated_dir), resolve_input_path(cfg.reference_dir), weights, style,
                      cfg.max_pieces)
    paths = write_report(report, resolve_output_dir(cfg.eval_output_dir))
    record_settings(cfg, resolve_output_dir(cfg.eval_output_dir) / "settings.json")  # `--config` repeats the report
    print(report.markdown())
    print(report.summary_line())
    print(f"report: {paths['markdown']}, {paths['json']}, {paths['plot']}")
    return 0


if __name__ == "__main__":
    sys.exit(run_stage(main))
