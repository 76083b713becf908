"""Fine-tune NotaGen: `python finetune/train-gen.py [--name value ...]`, or on several devices
`accelerate launch --multi_gpu --mixed_precision bf16 finetune/train-gen.py`. Settings: config.py."""
import sys
from pathlib import Path

from notagen.settings import parse_settings, run_stage  # noqa: E402
from notagen.training.stages import run_notagen_training  # noqa: E402

if __name__ == "__main__":
    settings = parse_settings(Path(__file__).with_name("config.py"), sys.argv[1:],
                              description="Fine-tune NotaGen from pre-trained weights (settings from finetune/config.py)")
    sys.exit(run_stage(run_notagen_training, settings, "finetune"))
