"""The NotaGen demo page: python gradio/demo.py [--name value ...], then open the printed address.

Settings and their help: gradio/config.py (or --help). The work is done by notagen.demo
(session: generation, files, rendering; page: the Gradio components).
"""
import os
import sys
from pathlib import Path

os.environ["GRADIO_ANALYTICS_ENABLED"] = "False"  # before gradio is imported: no analytics, no version check

from notagen.demo import main  # noqa: E402

if __name__ == "__main__":
    sys.exit(main(Path(__file__).resolve().with_name("config.py")))
