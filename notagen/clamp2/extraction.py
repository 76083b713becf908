"""Extract CLaMP 2 features for a folder of .abc files (the work behind clamp2/extract_clamp2.py).

Design choices
- Outputs mirror the input folder: `<input>/a/b.abc` -> `<output>/a/b.npy`, float32 [1, F],
  written atomically, so an existing output is always complete and is skipped on a rerun.
- Under `accelerate launch` every process takes every num_processes-th file of the sorted list
  (interleaved, so long and short pieces spread evenly) and only then drops its finished files:
  the split does not depend on what other processes have written already.
- Files are processed in groups of a few batches' worth; the segments of a group's files share
  batches. A file that cannot be read or encoded is logged and skipped; if a batch fails, its
  files are retried one at a time so one bad file cannot take its neighbours down.
"""
from __future__ import annotations

import hashlib
import json
import logging
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
from tqdm import tqdm

from notagen.io import atomic_open, atomic_write_json, log_safe
from notagen.paths import resolve_input_path, resolve_output_dir

from .checkpoint import load_clamp2_music
from .features import encode_for_feature, features_of_patches
from .model import Clamp2MusicModel
from .patchilizer import M3Patchilizer

log = logging.getLogger(__name__)
GROUP_BATCHES = 4  # a group holds this many batches' worth of files


def list_abc_files(folder: str | Path) -> list[Path]:
    """All `.abc` files under `folder`, recursively, sorted."""
    return sorted(path for path in Path(folder).rglob("*.abc") if path.is_file())


def feature_path(abc_file: Path, input_dir: Path, output_dir: Path) -> Path:
    return Path(output_dir) / Path(abc_file).relative_to(input_dir).with_suffix(".npy")


@dataclass
class ExtractionSummary:
    written: int = 0
    skipped: int = 0  # outputs that already existed
    failed: dict[str, str] = field(default_factory=dict)  # input path -> error


def _write_feature(path: Path, feature: np.ndarray) -> None:
    with atomic_open(path, "wb") as handle:
        np.save(handle, feature.astype(np.float32))


def _extract_group(model, patchilizer, files: list[Path], outputs: list[Path], batch_size: int,
                   summary: ExtractionSummary) -> None:
    encoded, targets = [], []
    for abc_file, output in zip(files, outputs):
        try:
            encoded.append(encode_for_feature(patchilizer, abc_file.read_text(encoding="utf-8")))
            targets.append((abc_file, output))
        except Exception as error:  # unreadable or unencodable file: log it, go on
            summary.failed[str(abc_file)] = f"{type(error).__name__}: {error}"
            log.warning("skipped %s: %s", log_safe(abc_file), log_safe(summary.failed[str(abc_file)]))
    if not encoded:
        return
    try:
        features = features_of_patches(model, encoded, batch_size)
    except Exception as error:
        if len(encoded) == 1:
            abc_file = targets[0][0]
            summary.failed[str(abc_file)] = f"{type(error).__name__}: {error}"
            log.warning("failed %s: %s", log_safe(abc_file), log_safe(summary.failed[str(abc_file)]))
            return
        log.warning("a batch failed (%s); retrying its %d files one at a time", error, len(encoded))
        for abc_file, output in targets:
            _extract_group(model, patchilizer, [abc_file], [output], batch_size, summary)
        return
    for (abc_file, output), feature in zip(targets, features):
        _write_feature(output, feature)
        summary.written += 1


EXTRACTOR_FILE = "extractor.json"  # beside the features: which weights made them


def model_fingerprint(model) -> str:
    """A short hash of a model's weights (names, shapes, and the first and last values of every
    tensor): two extractors with other weights get other fingerprints, cheaply."""
    digest = hashlib.sha256()
    for name, tensor in sorted(model.state_dict().items()):
        flat = tensor.detach().reshape(-1).float().cpu()
        digest.update(f"{name}{tuple(tensor.shape)}".encode())
        digest.update(flat[:64].numpy().tobytes() + flat[-64:].numpy().tobytes())
    return digest.hexdigest()[:16]


def recorded_extractor(feature_dir: str | Path) -> dict | None:
    path = Path(feature_dir) / EXTRACTOR_FILE
    if not path.is_file():
        return None
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError):
        return {"fingerprint": "unreadable"}


def extract_folder(model: Clamp2MusicModel, patchilizer: M3Patchilizer, input_dir: str | Path,
                   output_dir: str | Path, batch_size: int = 16, process_index: int = 0,
                   num_processes: int = 1, progress: bool = True, reuse: bool = True) -> ExtractionSummary:
    """Features of this process's share of the .abc files under `input_dir`; see module docstring.
    `reuse` False: existing features (made by other weights) are extracted again."""
    input_dir, output_dir = Path(input_dir), Path(output_dir)
    if not input_dir.is_dir():
        raise FileNotFoundError(f"input folder {input_dir} does not exist")
    share = list_abc_files(input_dir)[process_index::num_processes]
    summary = ExtractionSummary()
    todo = []
    for abc_file in share:
        output = feature_path(abc_file, input_dir, output_dir)
        if reuse and output.exists():
            summary.skipped += 1
        else:
            todo.append((abc_file, output))
    group_size = max(1, batch_size) * GROUP_BATCHES
    with tqdm(total=len(todo), desc=f"CLaMP 2 features [{process_index}]", disable=not progress,
              position=process_index, unit="file") as bar:
        for start in range(0, len(todo), group_size):
            group = todo[start:start + group_size]
            _extract_group(model, patchilizer, [f for f, _ in group], [o for _, o in group],
                           batch_size, summary)
            bar.update(len(group))
    return summary


def run_extraction(input_dir: str | Path, output_dir: str | Path, weights_path: str | Path,
                   batch_size: int = 16, progress: bool = True) -> ExtractionSummary:
    """Load the weights on this process's device and extract its share (accelerate-aware).

    Paths follow the stages' rule: a relative input path (folder, weights) is tried from the
    working directory, then from the repository root; a relative output folder is taken from the
    repository root."""
    from accelerate import PartialState  # lazy: accelerate is heavy to import, and only the script path needs it

    input_dir, weights_path = resolve_input_path(input_dir), resolve_input_path(weights_path)
    output_dir = resolve_output_dir(output_dir)
    # cpu=True lets processes started on a machine without GPU (torchrun, mpirun) find their rank
    state = PartialState(cpu=not torch.cuda.is_available())
    model = load_clamp2_music(weights_path, device=state.device)
    patchilizer = M3Patchilizer(model.config.patch_size)
    fingerprint = model_fingerprint(model)
    earlier = recorded_extractor(output_dir)
    stale = earlier is not None and earlier.get("fingerprint") != fingerprint
    if state.is_main_process:
        log.info("%s model from %s: %s, features of size %d", model.checkpoint_kind, weights_path,
                 model.config, model.feature_size)
        if stale:
            log.warning("the features in %s were made by other weights (%s): extracting them all again",
                        output_dir, earlier.get("weights", "unknown"))
    state.wait_for_everyone()  # every process has read the old record before it is replaced
    if state.is_main_process:
        atomic_write_json(output_dir / EXTRACTOR_FILE, {"fingerprint": fingerprint, "weights": str(weights_path),
                                                        "feature_size": model.feature_size})
    summary = extract_folder(model, patchilizer, input_dir, output_dir, batch_size,
                             state.process_index, state.num_processes, progress, reuse=not stale)
    log.info("process %d: %d written, %d already there, %d failed", state.process_index,
             summary.written, summary.skipped, len(summary.failed))
    if summary.failed:
        log.warning("process %d failed on: %s", state.process_index, ", ".join(map(log_safe, summary.failed)))
    return summary
