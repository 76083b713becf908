"""CLaMP-DPO iterations in one command: `python RL/loop.py [--iterations K] [--name value ...]`.
`--num_processes N` runs it on N processes (GPUs, or CPU processes) under `accelerate launch`."""
import sys
from pathlib import Path

from notagen.launch import launched, relaunch  # noqa: E402
from notagen.rl import run_loop  # noqa: E402
from notagen.settings import parse_settings, run_stage  # noqa: E402

def main(settings) -> int:
    if settings.num_processes > 1 and not launched():
        return relaunch(Path(__file__), sys.argv[1:], settings.num_processes)
    run_loop(settings)
    return 0

if __name__ == "__main__":
    sys.exit(run_stage(main, parse_settings(Path(__file__).with_name("config.py"), description=__doc__)))
