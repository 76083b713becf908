"""CLaMP 2 score of a folder of generated features against a folder of reference features.

    python clamp2/statistics.py --generated_features_dir A --reference_features_dir B [--scores_csv s.csv]

Prints the mean score (the model's score) and its distribution; optionally writes per-file scores.
"""
import sys
from pathlib import Path

_HERE = Path(__file__).resolve().parent
if Path(sys.path[0]).resolve() == _HERE:  # this folder's statistics.py would shadow the standard library's
    del sys.path[0]

from notagen.clamp2 import score_folder, summarize_scores, write_scores_csv  # noqa: E402
from notagen.settings import parse_settings, run_stage  # noqa: E402
from notagen.paths import resolve_input_path, resolve_output_dir  # noqa: E402


def main(argv=None):
    cfg = parse_settings(_HERE / "config.py", argv, description=__doc__)
    scores = score_folder(resolve_input_path(cfg.generated_features_dir),
                          resolve_input_path(cfg.reference_features_dir))
    stats = summarize_scores(scores)
    print(f"CLaMP 2 score of {cfg.generated_features_dir} against {cfg.reference_features_dir}")
    print(f"mean {stats['mean']:.4f} over {stats['count']} files")
    print("min {min:.4f}  q1 {q1:.4f}  median {median:.4f}  q3 {q3:.4f}  max {max:.4f}".format(**stats))
    if cfg.scores_csv:
        csv_path = resolve_output_dir(cfg.scores_csv)
        write_scores_csv(scores, csv_path)
        print(f"per-file scores: {csv_path}")
    return stats


if __name__ == "__main__":
    sys.exit(run_stage(main))
