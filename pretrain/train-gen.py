"""Pre-train NotaGen: `python pretrain/train-gen.py [--name value ...]`, or on several devices
`accelerate launch --multi_gpu --mixed_precision bf16 pretrain/train-gen.py`. Settings: config.py."""
import sys
from pathlib import Path

from notagen.settings import parse_settings, run_stage  # noqa: E402
from notagen.training.stages import run_notagen_training  # noqa: E402

if __name__ == "__main__":
    settings = parse_settings(Path(__file__).with_name("config.py"), sys.argv[1:],
                              description="Pre-train NotaGen (settings from pretrain/config.py)")
    sys.exit(run_stage(run_notagen_training, settings, "pretrain"))
