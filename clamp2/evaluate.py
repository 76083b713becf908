"""Evaluate generated music against real music: validity, statistics, CLaMP 2 score, FMD, critic,
novelty, and prompt adherence (texture from each piece's header; composer classifier) in one report
(notagen.evaluation).

    python clamp2/evaluate.py --generated_dir output --reference_dir corpus/reference/bach_chorales \
        --clamp2_weights_path runs/m3/weights_m3.pth --style_train_dir corpus/finetune/interleaved

Settings: clamp2/config.py (evaluate.py section; the feature extractor is CLAMP2_WEIGHTS_PATH, as
for extract_clamp2.py). Writes report.md, report.json and report.png to --eval_output_dir and
prints the summary line. Without weights (or without the default weights file) the feature
sections are skipped with a note; without --style_train_dir the composer classifier is.
"""
import sys
from pathlib import Path

_HERE = Path(__file__).resolve().parent
if Path(sys.path[0]).resolve() == _HERE:  # this folder's statistics.py would shadow the standard library's
    del sys.path[0]

from notagen.evaluation import evaluate_folder, write_report  # noqa: E402
from notagen.settings import (apply_num_threads, load_config_module, parse_settings, record_settings,  # noqa: E402
                              run_stage)
from notagen.paths import resolve_input_path, resolve_output_dir  # noqa: E402


REQUIRED = {"generated_dir": "a folder of generated .abc pieces, or an inference output folder",
            "reference_dir": "a folder of real .abc pieces, e.g. corpus/reference/bach_chorales from data/build_corpus.py"}


def feature_weights(weights_path: str) -> str:
    """The feature extractor to use ("" = none). A file the user named must exist; the default
    (the published CLaMP 2 weights, which a fresh clone does not have) is skipped with a note."""
    if not weights_path:
        return ""
    path = resolve_input_path(weights_path)
    if path.is_file():
        return str(path)
    if weights_path == load_config_module(_HERE / "config.py").CLAMP2_WEIGHTS_PATH:
        print(f"note: no CLaMP 2 weights at {path}: the CLaMP 2 score, FMD, critic, novelty and composer "
              f"classifier are skipped (download them there, or give --clamp2_weights_path, e.g. an M3 "
              f"from clamp2/train-m3.py)")
        return ""
    raise FileNotFoundError(f"CLaMP 2 weights not found: {path} (--clamp2_weights_path)")


def main(argv=None):
    cfg = parse_settings(_HERE / "config.py", argv, description=__doc__)
    apply_num_threads(cfg)
    for name, what in REQUIRED.items():
        if not getattr(cfg, name):
            raise ValueError(f"--{name} is required: {what}")
    weights = feature_weights(cfg.clamp2_weights_path)
    style = str(resolve_input_path(cfg.style_train_dir)) if cfg.style_train_dir else ""
    report = evaluate_folder(resolve_input_path(cfg.generated_dir), resolve_input_path(cfg.reference_dir), weights,
                             style, cfg.max_pieces)
    paths = write_report(report, resolve_output_dir(cfg.eval_output_dir))
    record_settings(cfg, resolve_output_dir(cfg.eval_output_dir) / "settings.json")  # `--config` repeats the report
    print(report.markdown())
    print(report.summary_line())
    print(f"report: {paths['markdown']}, {paths['json']}, {paths['plot']}")
    return 0


if __name__ == "__main__":
    sys.exit(run_stage(main))
