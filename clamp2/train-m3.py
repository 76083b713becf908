"""M3 masked-patch pre-training: `python clamp2/train-m3.py` or `accelerate launch clamp2/train-m3.py`.

Settings: clamp2/m3_config.py (override any as `--name value`). The best checkpoint can be given to
extract_clamp2.py as CLAMP2_WEIGHTS_PATH.
"""
import sys
from pathlib import Path

_HERE = Path(__file__).resolve().parent
if Path(sys.path[0]).resolve() == _HERE:  # this folder's statistics.py would shadow the standard library's
    del sys.path[0]

from notagen.clamp2.training import run_m3_training  # noqa: E402
from notagen.settings import parse_settings, run_stage  # noqa: E402

if __name__ == "__main__":
    sys.exit(run_stage(run_m3_training, parse_settings(Path(__file__).with_name("m3_config.py"), description=__doc__)))
