"""CLaMP-DPO iterations in one command: `python RL/loop.py [--iterations K] [--name value ...]`."""
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from notagen.rl_loop import run_loop  # noqa: E402
from notagen.settings import parse_settings, run_stage  # noqa: E402

if __name__ == "__main__":
    sys.exit(run_stage(run_loop, parse_settings(Path(__file__).with_name("config.py"), description=__doc__)))
