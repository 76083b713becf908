"""The demo page: `session` (generation, files, rendering; no web code) and `page` (Gradio)."""
from __future__ import annotations

import sys
from pathlib import Path

from ..errors import CheckpointError
from ..generation.setup import SetupError
from ..settings import parse_settings


def main(config_path: str | Path, argv: list[str] | None = None) -> int:
    """Command line entry of gradio/demo.py: settings from `config_path` + `--name value` overrides."""
    from .page import launch  # lazy: the page needs gradio, the demo's optional dependency (pip install .[demo])

    cfg = parse_settings(config_path, argv, description="The NotaGen demo page.")
    try:
        launch(cfg)
    except (SetupError, CheckpointError, FileNotFoundError) as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    return 0
