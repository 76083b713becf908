"""Build CLaMP-DPO preference pairs: `python RL/data.py [--name value ...]`. By CLaMP 2 score against
the ground truth (published), or with `--rank_by composer` per prompt by a composer classifier."""
import sys
from pathlib import Path

from notagen.rl import make_preference_file, make_prompt_preference_file  # noqa: E402
from notagen.settings import parse_settings, record_settings, run_stage  # noqa: E402

def main(settings) -> None:
    if settings.rank_by not in ("clamp2", "composer"):
        raise ValueError(f"rank_by must be clamp2 or composer, not {settings.rank_by!r}")
    (make_prompt_preference_file if settings.rank_by == "composer" else make_preference_file)(settings)
    # beside the preference file: `--config <output_path stem>.settings.json` repeats the ranking
    record_settings(settings, Path(settings.output_path).with_suffix(".settings.json"))

if __name__ == "__main__":
    sys.exit(run_stage(main, parse_settings(Path(__file__).with_name("config.py"), description=__doc__)))
