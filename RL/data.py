"""Build CLaMP-DPO preference pairs from CLaMP 2 scores: `python RL/data.py [--name value ...]`."""
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from notagen.preference import make_preference_file  # noqa: E402
from notagen.settings import parse_settings, run_stage  # noqa: E402

if __name__ == "__main__":
    sys.exit(run_stage(make_preference_file, parse_settings(Path(__file__).with_name("config.py"), description=__doc__)))
