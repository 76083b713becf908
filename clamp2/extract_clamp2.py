"""Extract CLaMP 2 features of every .abc file under INPUT_DIR into OUTPUT_DIR (mirrored, .npy).

    python clamp2/extract_clamp2.py --input_dir runs/generated --output_dir runs/features/generated
    accelerate launch clamp2/extract_clamp2.py ...   # files split across processes

Existing outputs are skipped; files that fail are logged and the rest finished.
"""
import logging
import sys
from pathlib import Path

_HERE = Path(__file__).resolve().parent
if Path(sys.path[0]).resolve() == _HERE:  # this folder's statistics.py would shadow the standard library's
    del sys.path[0]

from notagen.clamp2 import run_extraction  # noqa: E402
from notagen.paths import resolve_output_dir  # noqa: E402
from notagen.settings import apply_num_threads, parse_settings, record_settings, run_stage  # noqa: E402


def main(argv=None):
    cfg = parse_settings(_HERE / "config.py", argv, description=__doc__)
    apply_num_threads(cfg)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(message)s")
    run_extraction(cfg.input_dir, cfg.output_dir, cfg.clamp2_weights_path, cfg.batch_size)
    record_settings(cfg, resolve_output_dir(cfg.output_dir) / "settings.json")  # `--config` repeats the run


if __name__ == "__main__":
    sys.exit(run_stage(main))
