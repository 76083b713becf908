"""Where things are: the repository root, and the rules by which stages resolve their paths.

- `REPO_ROOT`: the checkout (the folder above `notagen/`); the one definition every module uses.
- Inputs (`resolve_input_path`): a relative path is taken as given when it exists from the working
  directory, else relative to the repository root, so a stage runs from the root or its folder.
- Outputs (`resolve_output_dir`): a relative path is always under the repository root, so outputs
  land at the same place whichever folder a stage runs from.
- Files named inside an index file (`index_entry_bases`): a relative `path` of a .jsonl entry is
  looked up from the working directory, then from the index's folder and each folder above it, so
  a corpus stays valid when the checkout moves (build_corpus writes paths relative to the root).
- Weights (`resolve_weights_path`): "" means the default checkpoint (the shipped one in
  `weights/embedded/`, else the main job's); a checkpoint folder (Hugging Face style) means its
  `model.safetensors`; another folder means the one `weights_*.pth` in it; a file follows the input rule.
- `VECTORS_DIR`: the golden vectors recorded from the published code (`tests/vectors/`), for tests and benchmarks.
"""
from __future__ import annotations

from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[1]
VECTORS_DIR = REPO_ROOT / "tests" / "vectors"


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


def index_entry_bases(index_path: str | Path) -> list[Path]:
    """Folders a relative path inside an index file is looked up from, in order: the working
    directory, the index's folder, and every folder above it (each once)."""
    folder = Path(index_path).resolve().parent
    return list(dict.fromkeys([Path.cwd(), folder, *folder.parents]))


SHIPPED_WEIGHTS = REPO_ROOT / "weights" / "embedded"  # the checkpoint this project trained and ships
MAIN_JOB_WEIGHTS = ("runs/main/finetune_focus", "runs/main/finetune")  # what `bash run.sh` trains


def default_weights() -> Path:
    """The shipped checkpoint, else the main job's chorale model, else an error naming the way on."""
    for folder in (SHIPPED_WEIGHTS, *(REPO_ROOT / f for f in MAIN_JOB_WEIGHTS)):
        if any(Path(folder).glob("weights_*.pth")):
            return resolve_weights_path(folder)  # exactly one, as for any folder given
    raise FileNotFoundError("no checkpoint found: none is shipped under weights/embedded/ and the main job has "
                            "not trained one yet. Run `bash run.sh` (trains one on the embedded corpus), or give "
                            "a checkpoint's path (e.g. the published NotaGen-X file)")


def resolve_weights_path(path: str | Path) -> Path:
    """A weights file: "" = `default_weights()`, a checkpoint folder = its model.safetensors, another
    folder = the one weights_*.pth in it, else the file by the input rule; FileNotFoundError names
    what is missing."""
    if not str(path or "").strip():
        return default_weights()
    found = resolve_input_path(path)
    if (found / "model.safetensors").is_file():
        return (found / "model.safetensors").resolve()
    if found.is_dir():
        files = sorted(found.glob("weights_*.pth"))
        if len(files) != 1:
            names = ", ".join(f.name for f in files) or "none"
            raise FileNotFoundError(f"{found} must hold exactly one weights_*.pth or a model.safetensors (found {names}); "
                                    f"give the file instead")
        return files[0].resolve()
    if not found.is_file():
        raise FileNotFoundError(f"weights file not found: {path}")
    return found.resolve()
