"""Where things are: the repository root, and the rules by which stages resolve their paths.

- `REPO_ROOT`: the checkout (the folder above `notagen/`); the one definition every module uses.
- Inputs (`resolve_input_path`): a relative path is taken as given when it exists from the working
  directory, else relative to the repository root, so a stage runs from the root or its folder.
- Outputs (`resolve_output_dir`): a relative path is always under the repository root, so outputs
  land at the same place whichever folder a stage runs from.
"""
from __future__ import annotations

from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[1]


def resolve_input_path(path: str | Path) -> Path:
    """A relative input path as given when it exists from the working directory, else relative to
    the repository root (also when missing there: errors then name where the default would be)."""
    path = Path(path).expanduser()
    if path.is_absolute() or path.exists():
        return path
    return REPO_ROOT / path


def resolve_output_dir(path: str | Path) -> Path:
    """Outputs land at the same place whichever folder a stage runs from: relative = repo root."""
    path = Path(path).expanduser()
    return path if path.is_absolute() else REPO_ROOT / path
