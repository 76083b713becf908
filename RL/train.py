"""DPOP training on a preference file: `python RL/train.py` or `accelerate launch RL/train.py`."""
import sys
from pathlib import Path

from notagen.rl import run_dpo_training  # noqa: E402
from notagen.settings import parse_settings, run_stage  # noqa: E402

if __name__ == "__main__":
    settings = parse_settings(Path(__file__).with_name("config.py"), description=__doc__)
    sys.exit(run_stage(lambda: print(f"DPO weights: {run_dpo_training(settings)}")))
