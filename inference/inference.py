"""Generate music with a NotaGen checkpoint: python inference/inference.py [--name value ...]

Settings and their help: inference/config.py (or --help). The work is done by
notagen.generation (engine: cached, batched, streaming; run: output files and run summary).
"""
import sys
from pathlib import Path

from notagen.generation.run import main  # noqa: E402

if __name__ == "__main__":
    sys.exit(main(Path(__file__).resolve().with_name("config.py")))
