"""An inference run's settings -> objects: device, dtype, weights, prompt list and prompt.

Each function turns one setting into what the run needs, or raises `SetupError` (a `ValueError`)
that names the setting and the way on; `run.py` and the demo share them.
"""
from __future__ import annotations

import warnings
from pathlib import Path
from types import SimpleNamespace

import torch

from ..checkpoint import load_model
from ..continuation import MUSIC_SUFFIXES, music_to_prompt
from ..errors import CheckpointError
from ..paths import REPO_ROOT, resolve_input_path, resolve_weights_path
from ..precision import warn_if_emulated
from ..prompts import PromptCatalog, PromptCatalogError
from ..render import error_reason
from .prompt import Prompt, PromptError

DTYPES = {"float32": torch.float32, "fp32": torch.float32, "bfloat16": torch.bfloat16,
          "bf16": torch.bfloat16, "float16": torch.float16, "fp16": torch.float16}


class SetupError(ValueError):
    """A setting that cannot work (device, dtype, weights path, prompt file)."""


# ---------------------------------------------------------------------------------------------
# Settings -> objects
# ---------------------------------------------------------------------------------------------
def resolve_device(name: str) -> torch.device:
    """"auto" (cuda, then mps, then cpu), "cpu", "cuda", "cuda:N", "mps"; a clear error otherwise."""
    name = (name or "auto").strip().lower()
    if name == "auto":
        if torch.cuda.is_available():
            return torch.device("cuda")
        if getattr(torch.backends, "mps", None) is not None and torch.backends.mps.is_available():
            return torch.device("mps")
        return torch.device("cpu")
    try:
        device = torch.device(name)
    except RuntimeError:
        raise SetupError(f"unknown device {name!r}: use auto, cpu, cuda, cuda:N or mps") from None
    if device.type == "cuda":
        if not torch.cuda.is_available():
            raise SetupError(f"device {name!r} asked for, but this PyTorch sees no CUDA GPU "
                             f"(torch {torch.__version__}); use --device cpu or auto")
        if device.index is not None and device.index >= torch.cuda.device_count():
            raise SetupError(f"device {name!r}: only {torch.cuda.device_count()} CUDA device(s) present")
    elif device.type == "mps":
        if getattr(torch.backends, "mps", None) is None or not torch.backends.mps.is_available():
            raise SetupError(f"device {name!r} asked for, but Apple MPS is not available here; "
                             f"use --device cpu or auto")
    elif device.type != "cpu":
        raise SetupError(f"unsupported device {name!r}: use auto, cpu, cuda, cuda:N or mps")
    return device


def resolve_dtype(name: str, device: torch.device) -> torch.dtype:
    """"auto": bfloat16 on a CUDA GPU that supports it (as published), float32 elsewhere. "int8":
    torch.int8, int8 linear layers for CPU generation (`notagen.quantize`), refused on other devices."""
    name = (name or "auto").strip().lower()
    if name == "auto":
        if device.type == "cuda" and torch.cuda.is_bf16_supported():
            return torch.bfloat16
        return torch.float32
    if name == "int8":
        if device.type != "cpu":
            raise SetupError(f"dtype int8 is for CPU generation (PyTorch's int8 kernels run on the CPU only), "
                             f"not {device}: use --device cpu, or bfloat16 / float16 on a GPU")
        return torch.int8
    if name not in DTYPES:
        raise SetupError(f"unknown dtype {name!r}: use auto, float32, bfloat16, float16 or int8")
    dtype = DTYPES[name]
    if dtype == torch.float16 and device.type == "cpu":
        raise SetupError("float16 is for GPUs; on cpu use float32 (or bfloat16)")
    if dtype == torch.bfloat16 and device.type == "cpu":
        warn_if_emulated("dtype bfloat16 on the CPU")
    return dtype


def _find(path: str | Path) -> Path | None:
    """An input file by the one input rule (`notagen.paths.resolve_input_path`), or None."""
    found = resolve_input_path(path)
    return found.resolve() if found.is_file() else None


def resolve_weights(path: str | Path) -> Path:
    """`notagen.paths.resolve_weights_path` ("" = the shipped checkpoint, a folder = its one weights
    file), its errors as SetupError with the way on."""
    try:
        return resolve_weights_path(path)
    except FileNotFoundError as error:
        if not str(error).startswith("weights file not found"):
            raise SetupError(str(error)) from None
        places = sorted({str(Path.cwd()), str(REPO_ROOT)})
        where = "" if Path(path).is_absolute() else f" (looked in {' and '.join(places)})"
        raise SetupError(f"weights file not found: {path}{where}. Give a checkpoint's path with "
                         f"--inference_weights_path (\"\" = the shipped one), e.g. a published NotaGen file") from None


def load_prompt_list(path: str | Path | None):
    """The `PromptCatalog` of known (period, composer, instrumentation) triples in `path`
    (`period_composer_instrumentation` lines, as the published demo's prompts.txt). None: no list."""
    if not path:
        return None
    found = _find(path)
    if found is None:
        raise SetupError(f"prompt list not found: {path}")
    try:
        return PromptCatalog.from_file(found)
    except PromptCatalogError as error:
        raise SetupError(str(error)) from None


def default_prompt_list(weights: Path) -> Path | None:
    """A prompts.txt next to the weights, else the demo's list in the repository, if present."""
    for candidate in (weights.parent / "prompts.txt", REPO_ROOT / "gradio" / "prompts.txt"):
        if candidate.is_file():
            return candidate
    return None


def music_file_named(prompt: str) -> Path | None:
    """The music file a prompt names (a name with a music suffix), else None; a missing one is an error."""
    name = (prompt or "").strip()
    if "\n" in name or len(name) >= 4096 or not name.lower().endswith(MUSIC_SUFFIXES):
        return None
    found = _find(name)
    if found is None:
        raise PromptError(f"music file to continue not found: {name}")
    return found


def generated_abc(path: Path) -> str | None:
    """The text of an .abc file in the model's own generated format (`[r:i/j]` lines), else None."""
    if path.suffix.lower() != ".abc":
        return None
    try:
        text = path.read_text(encoding="utf-8")
    except UnicodeDecodeError as error:
        raise PromptError(f"{path} is not UTF-8 text: {error}") from None
    return text if any(line.startswith("[r:") for line in text.split("\n")) else None


def parse_prompt(prompt: str, known=None, continue_bars: int = 0) -> Prompt:
    """`period|composer|instrumentation`, free prompt lines (separated by newlines or a literal
    `\\n`), or the path of a music file to continue. Only a name with a music suffix (.abc, .xml,
    .musicxml, .mxl, .mid, .midi) is read as a file: any other text is prompt text. A file in the
    model's generated format is continued as it is; any other is converted (`notagen.continuation`)."""
    found = music_file_named(prompt)
    if found is not None:
        text = generated_abc(found)
        if text is not None:
            return Prompt.from_abc(text)
        return music_to_prompt(found, (), continue_bars).prompt
    prompt = prompt or ""
    text = prompt.replace("\\n", "\n")
    fields = text.strip().split("|")
    if "\n" not in text.strip() and len(fields) == 3 and all(
            f.strip() and not f.strip().startswith("%") for f in fields):
        result = Prompt.from_triple(*fields)
        if known is not None and result.triple not in known:
            warnings.warn(f"prompt {'|'.join(result.triple)!r} is not one of the {len(known)} "
                          f"period|composer|instrumentation combinations this model knows; "
                          f"generating anyway", stacklevel=2)
        return result
    lines = [line for line in text.split("\n") if line.strip()]
    if not lines:
        raise PromptError("empty prompt: give period|composer|instrumentation, prompt lines, "
                          "or an ABC file to continue")
    return Prompt.from_lines(lines)


def run_prompt(cfg: SimpleNamespace, known=None):
    """(the prompt, the `notagen.continuation.Continuation` it continues or None) of a run:
    `--continue_from FILE` continues the music of FILE (its first `continue_bars` bars), with the
    lines of `--prompt` (a triple or prompt lines; "" for none) in front. `--prompt FILE` works as
    before: a file in the generated format is continued as it is, any other music file is converted."""
    source = getattr(cfg, "continue_from", "")
    named = music_file_named(cfg.prompt)
    if named is not None and source:
        raise SetupError("--prompt names a music file and --continue_from another: give the music once")
    if named is not None:
        text = generated_abc(named)
        if text is not None:
            return Prompt.from_abc(text), None
        found, lines = named, ()
    elif source:
        found = _find(source)
        if found is None:
            raise PromptError(f"music file to continue not found: {source}")
        lines = parse_prompt(cfg.prompt, known).lines if cfg.prompt.strip() else ()
    else:
        return parse_prompt(cfg.prompt, known), None
    continuation = music_to_prompt(found, lines, getattr(cfg, "continue_bars", 0))
    return continuation.prompt, continuation


def load_generation_model(weights: Path, device: torch.device, dtype: torch.dtype | None = None):
    """The model of a weights file on `device` (dtype None: "auto"); a junk file is a CheckpointError."""
    try:
        return load_model(weights, device=device, dtype=dtype or resolve_dtype("auto", device))
    except CheckpointError:
        raise
    except Exception as error:  # noqa: BLE001 - torch's unpickler raises odd types for junk files
        raise CheckpointError(f"{weights} is not a readable PyTorch checkpoint: "
                              f"{type(error).__name__}: {error_reason(error)}") from error
