"""Checkpoint files: published NotaGen weights in, the same format (plus our config) out.

Design choices
- Files are `torch.save` dicts with the state dict under "model" (published format); training
  checkpoints add optimizer/scheduler/progress entries. We also store "config" so a project file
  rebuilds exactly; published files carry none, so sizes are read off the tensor shapes.
- Loading is always `weights_only=True` (no code runs from a weights file).
- A file that does not fit gets an error naming the missing and unexpected keys and the first
  mismatched shapes, instead of PyTorch's wall of text or, worse, a silent partial load.
- Writes are atomic (`notagen.io.atomic_torch_save`): a crash mid-save keeps the previous file.
- A checkpoint can also be a folder in the Hugging Face style (`save_pretrained`): `config.json`
  (sizes and model type), `model.safetensors` (the same state dict: no pickle at all), the
  `prompts.txt` the model knows and a model card `README.md`. Every loader takes the folder or its
  `model.safetensors` wherever it takes a `.pth` file.
- `dtype=torch.int8` (`notagen.quantize`) reads the file with mmap and quantizes block by block, so
  the whole float32 model is never in memory.
"""
from __future__ import annotations

import json
import os
import pickle
import shutil
import tempfile
import zipfile
from pathlib import Path

import torch
from safetensors import SafetensorError
from safetensors.torch import load_file, save_file
from torch import nn

from .baselines.config import FlatConfig
from .baselines.models import build_flat_model
from .config import NotaGenConfig, config_from_state_dict
from .errors import CheckpointError
from .io import atomic_torch_save
from .lora import adapter_state_dict, has_lora, merged_state_dict
from .model import NotaGenLMHeadModel
from .paths import resolve_weights_path
from .quantize import int8_model, release_pages

FOLDER_WEIGHTS, FOLDER_CONFIG = "model.safetensors", "config.json"  # a checkpoint folder's files

# GPT-2's causal-mask buffers: older transformers saved them, none are parameters
IGNORED_KEY_SUFFIXES = (".attn.bias", ".attn.masked_bias")


def read_checkpoint(path: str | Path, mmap: bool = False) -> dict:
    """Load a checkpoint dict safely, with a clear error for anything that is not one; a checkpoint
    folder (or its model.safetensors) gives {"model": ..., "config": ...} as a .pth file does.

    mmap: tensors stay on the file's pages until read (files of the legacy, non-zip format load whole)."""
    path = Path(path)
    if path.is_dir() or path.suffix == ".safetensors":
        return read_checkpoint_folder(path)
    if not path.is_file():
        raise FileNotFoundError(f"checkpoint not found: {path}")
    try:
        try:
            checkpoint = torch.load(path, map_location="cpu", weights_only=True, mmap=mmap)
        except RuntimeError as error:
            if not (mmap and "mmap" in str(error)):
                raise
            checkpoint = torch.load(path, map_location="cpu", weights_only=True)
    except (pickle.UnpicklingError, RuntimeError, EOFError, zipfile.BadZipFile, OSError,
            ValueError, AttributeError, IndexError, KeyError) as error:
        reason = str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__
        if reason.startswith("Weights only load failed"):
            reason = "not a torch.save archive of plain tensors"
        raise CheckpointError(f"{path} is not a readable PyTorch checkpoint "
                              f"(truncated or not a torch.save file): {reason}") from error
    if isinstance(checkpoint, dict) and "model" in checkpoint and isinstance(checkpoint["model"], dict):
        return checkpoint
    if isinstance(checkpoint, dict) and checkpoint and all(torch.is_tensor(v) for v in checkpoint.values()):
        return {"model": checkpoint}  # a bare state dict
    found = sorted(checkpoint)[:8] if isinstance(checkpoint, dict) else type(checkpoint).__name__
    raise CheckpointError(f"{path} holds no model weights: expected a dict with a 'model' state dict, "
                          f"found {found}")


def read_checkpoint_folder(path: Path) -> dict:
    """The checkpoint dict of a folder written by `save_pretrained` (or of its model.safetensors)."""
    folder, weights = (path, path / FOLDER_WEIGHTS) if path.is_dir() else (path.parent, path)
    if not weights.is_file():
        raise FileNotFoundError(f"checkpoint not found: {weights}")
    try:
        checkpoint = {"model": load_file(weights)}
    except (SafetensorError, OSError, ValueError) as error:
        raise CheckpointError(f"{weights} is not a readable safetensors file: {error}") from error
    config = folder / FOLDER_CONFIG
    if config.is_file():  # without it, sizes are read off the tensor shapes as for a published file
        try:
            checkpoint["config"] = json.loads(config.read_text())
        except (json.JSONDecodeError, UnicodeDecodeError) as error:
            raise CheckpointError(f"{config}: not valid JSON ({error})") from None
        if not isinstance(checkpoint["config"], dict):
            raise CheckpointError(f"{config}: expected a JSON object of model sizes")
    return checkpoint


def strip_ignored_keys(state_dict: dict) -> dict:
    return {k: v for k, v in state_dict.items() if not k.endswith(IGNORED_KEY_SUFFIXES)}


def describe_mismatch(module: nn.Module, state_dict: dict, max_items: int = 8) -> str | None:
    """None when `state_dict` fits `module` exactly, else what is missing, extra or mis-shaped."""
    expected = {k: tuple(v.shape) for k, v in module.state_dict().items()}
    found = {k: tuple(v.shape) for k, v in state_dict.items()}
    missing = sorted(set(expected) - set(found))
    unexpected = sorted(set(found) - set(expected))
    shapes = [f"{k}: file {found[k]} vs model {expected[k]}"
              for k in expected if k in found and found[k] != expected[k]]
    if not (missing or unexpected or shapes):
        return None
    parts = []
    for title, items in (("missing keys", missing), ("unexpected keys", unexpected),
                         ("mismatched shapes", shapes)):
        if items:
            more = f" (+{len(items) - max_items} more)" if len(items) > max_items else ""
            parts.append(f"{len(items)} {title}: " + ", ".join(items[:max_items]) + more)
    return "; ".join(parts)


def load_state_dict_checked(module: nn.Module, state_dict: dict, source: str = "checkpoint") -> None:
    """`load_state_dict(strict=True)` with a readable error naming keys and shapes."""
    state_dict = strip_ignored_keys(state_dict)
    problem = describe_mismatch(module, state_dict)
    if problem:
        raise CheckpointError(f"{source} does not fit {type(module).__name__}: {problem}")
    assign = any(p.is_meta for p in module.parameters())
    module.load_state_dict(state_dict, strict=True, assign=assign)
    if assign:
        retie_shared_weights(module, state_dict)


def retie_shared_weights(module: nn.Module, state_dict: dict) -> None:
    """Assigned tensors untie a tied pair (an LM head and its input embedding) of a model that lists
    it in TIED_WEIGHTS: tie it again where the file's two tensors are equal, as they are when saved
    tied; a pair trained apart stays apart. (NotaGen lists none: its loaded char-level head and
    embedding stay two parameters over one storage, as fine-tuning runs have always had them, so
    their resume files keep fitting; docs/model.md.)"""
    for head, embedding in getattr(module, "TIED_WEIGHTS", ()):
        if head in state_dict and embedding in state_dict and torch.equal(state_dict[head], state_dict[embedding]):
            owner, _, name = head.rpartition(".")
            setattr(module.get_submodule(owner), name, module.get_parameter(embedding))


def load_model(path: str | Path = "", device: str | torch.device | None = None,
               dtype: torch.dtype | None = None, config=None):
    """The model of a published or project checkpoint, sized from the file itself: NotaGen, or a
    baseline of `notagen.baselines` where the file's stored config names one. `path` "" is the
    shipped checkpoint; a folder is a checkpoint folder or the one weights_*.pth in it.

    `config` is only needed to force sizes (its fields are checked against the file). `dtype`
    torch.int8: NotaGen's linear layers in int8 for CPU generation (`notagen.quantize`)."""
    if not str(path).strip() or Path(path).is_dir():
        path = resolve_weights_path(path)
    int8 = dtype == torch.int8
    if int8 and torch.device(device or "cpu").type != "cpu":
        raise ValueError(f"int8 weights are for CPU generation, not {device}")
    checkpoint = read_checkpoint(path, mmap=int8)
    state_dict = strip_ignored_keys(checkpoint["model"])
    stored = checkpoint.get("config")
    if isinstance(config, FlatConfig) or (config is None and isinstance(stored, dict)
                                          and stored.get("model_type", "notagen") != "notagen"):
        if int8:
            raise CheckpointError(f"{path} is a {stored.get('model_type') if stored else 'baseline'} baseline: "
                                  f"int8 generation is for NotaGen checkpoints (use float32)")
        return _load_flat_model(path, state_dict, config or FlatConfig.from_dict(stored), device, dtype)
    if config is None:
        try:
            detected = config_from_state_dict(state_dict)
        except KeyError as error:
            raise CheckpointError(f"{path} is not a NotaGen checkpoint: {error.args[0]}") from None
        config = NotaGenConfig.from_dict(stored) if isinstance(stored, dict) else detected
    if int8:
        return _load_int8_model(path, state_dict, config)
    with torch.device("meta"):
        model = NotaGenLMHeadModel(config)
    load_state_dict_checked(model, state_dict, source=str(path))
    return model.to(device=device or "cpu", dtype=dtype).eval()


def _load_int8_model(path, state_dict: dict, config):
    """NotaGen with int8 linear layers, converted block by block from the (mmap) state dict."""
    with torch.device("meta"):
        problem = describe_mismatch(NotaGenLMHeadModel(config), state_dict)
    if problem:
        raise CheckpointError(f"{path} does not fit NotaGenLMHeadModel: {problem}")
    mapped = zipfile.is_zipfile(path)  # read with mmap (`read_checkpoint`): its pages can be given back
    model = int8_model(config, lambda key, like: state_dict[key], release_pages if mapped else None)
    state_dict.clear()  # the last references to the file's pages
    return model


def _load_flat_model(path, state_dict: dict, config, device, dtype):
    """A baseline (`notagen.baselines`) from its file: the stored config names its type and sizes."""
    with torch.device("meta"):
        model = build_flat_model(config)
    load_state_dict_checked(model, state_dict, source=str(path))
    return model.to(device=device or "cpu", dtype=dtype).eval()


def save_checkpoint(path: str | Path, model, adapter_only: bool = False, **extra) -> None:
    """Published layout (`model` + extras such as optimizer, lr_sched, epoch) plus our `config`.

    A model with LoRA adapters (`notagen.lora`) is saved merged (published keys, loads anywhere),
    or with `adapter_only` as its adapter weights alone (resume files; the base is the pre-trained file)."""
    unwrapped = getattr(model, "module", model)
    if has_lora(unwrapped):
        weights = adapter_state_dict(unwrapped) if adapter_only else merged_state_dict(unwrapped)
        state = {"model": weights, "lora": unwrapped.lora.to_dict(), "adapter_only": adapter_only}
    else:
        state = {"model": {k: v.detach().cpu() for k, v in unwrapped.state_dict().items()}}
    if hasattr(unwrapped, "config") and hasattr(unwrapped.config, "to_dict"):
        state["config"] = unwrapped.config.to_dict()
    state.update(extra)
    atomic_torch_save(state, path)


def export_weights(source: str | Path, destination: str | Path, **extra) -> Path:
    """A training checkpoint -> a weights-only file (no optimizer or scheduler state) that
    `load_model`, `inference.py` and the demo read like any other; `extra` entries are kept beside."""
    checkpoint = read_checkpoint(source)
    model = load_model(source)
    kept = {key: checkpoint[key] for key in ("stage", "settings", "epoch", "min_eval_loss") if key in checkpoint}
    save_checkpoint(destination, model, **kept, exported_from=Path(source).name, **extra)
    return Path(destination)


def save_pretrained(source, folder: str | Path, prompts: str | Path | None = None, card: str = "",
                    overwrite: bool = False) -> Path:
    """A model, or the checkpoint file/folder `source`, as a Hugging Face style folder: config.json,
    model.safetensors, prompts.txt (copied from `prompts` when given) and README.md (`card`, or a
    short generated card). The folder is written beside its place and renamed into it whole; an
    existing folder is replaced only with `overwrite`."""
    folder = Path(folder)
    if folder.exists() and not overwrite:
        raise FileExistsError(f"{folder} exists: give another folder, or overwrite=True (--overwrite true)")
    model = load_model(source) if isinstance(source, (str, Path)) else getattr(source, "module", source)
    state = {name: tensor.detach().cpu().contiguous().clone() for name, tensor in model.state_dict().items()}
    config = {"model_type": "notagen", **model.config.to_dict()}
    folder.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{folder.name}.", dir=folder.parent))
    try:
        save_file(state, staging / FOLDER_WEIGHTS, metadata={"format": "pt"})  # clones: no shared storage
        (staging / FOLDER_CONFIG).write_text(json.dumps(config, indent=2) + "\n")
        if prompts:
            shutil.copyfile(prompts, staging / "prompts.txt")
        if card and not card.startswith("---"):
            card = CARD_METADATA + card
        (staging / "README.md").write_text(card or model_card(config, sum(t.numel() for t in state.values()),
                                                              source, bool(prompts)))
        readable(staging)
        if folder.exists():
            shutil.rmtree(folder)
        staging.rename(folder)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return folder


CARD_METADATA = "---\nlicense: mit\nlibrary_name: notagen\ntags: [music, symbolic-music, abc-notation, notagen]\n---\n"


def readable(folder: Path) -> None:
    """The modes a plain write would have given (temporary folders and files are private)."""
    umask = os.umask(0)
    os.umask(umask)
    folder.chmod(0o777 & ~umask)
    for path in folder.iterdir():
        path.chmod(0o666 & ~umask)


def model_card(config: dict, parameters: int, source, has_prompts: bool) -> str:
    """A short model card for a checkpoint folder: what it is and how to load it."""
    sizes = ", ".join(f"{name} {value}" for name, value in config.items())
    origin = f"Converted from `{Path(source).name}`. " if isinstance(source, (str, Path)) else ""
    prompts = ("`prompts.txt` lists the period_composer_instrumentation prompts it was fine-tuned on.\n"
               if has_prompts else "")
    return (CARD_METADATA + f"# {config.get('model_type', 'notagen')} checkpoint\n\n"
            f"{origin}{parameters / 1e6:.2f}M parameters ({sizes}).\n{prompts}\n"
            "Load it with `notagen.load_model(\"<this folder>\")`, or give the folder to "
            "`inference/inference.py --inference_weights_path` or `gradio/demo.py --weights_path`.\n")
