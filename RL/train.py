"""DPOP training on a preference file: `python RL/train.py` or `accelerate launch RL/train.py`."""
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from notagen.rl import run_dpo_training  # noqa: E402
from notagen.settings import parse_settings  # noqa: E402

if __name__ == "__main__":
    weights = run_dpo_training(parse_settings(Path(__file__).with_name("config.py"), description=__doc__))
    print(f"DPO weights: {weights}")
