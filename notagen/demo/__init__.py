"""The demo page: `session` (generation, files, rendering; no web code) and `page` (Gradio)."""
from __future__ import annotations

import sys
from pathlib import Path


def main(config_path: str | Path, argv: list[str] | None = None) -> int:
    """Command line entry of gradio/demo.py: settings from `config_path` + `--name value` overrides."""
    from ..checkpoint import CheckpointError
    from ..generation.run import SetupError
    from ..settings import parse_settings
    from .page import launch

    cfg = parse_settings(config_path, argv, description="The NotaGen demo page.")
    try:
        launch(cfg)
    except (SetupError, CheckpointError, FileNotFoundError) as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    return 0
