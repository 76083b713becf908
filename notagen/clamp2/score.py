"""The CLaMP 2 score: cosine similarity of a piece's feature to the mean feature of a reference set.

Design choices
- Feature folders are what extraction writes: `.npy` files of shape [1, F], found recursively.
  `load_feature_folder` keys them by relative path without the `.npy` suffix (`a/b` for
  `a/b.npy`), which is also the relative path of the source text without its `.abc`.
- The reference mean is the plain mean of the reference features (no normalisation, as
  published); scores are computed in float64.
- The distribution summary uses numpy's default (linear) quantiles.
"""
from __future__ import annotations

import csv
import io
from pathlib import Path

import numpy as np

from notagen.io import atomic_write_text


def load_feature_folder(folder: str | Path) -> dict[str, np.ndarray]:
    """{relative path without `.npy`: feature [1, F]} for every `.npy` under `folder`, sorted."""
    folder = Path(folder)
    if not folder.is_dir():
        raise FileNotFoundError(f"feature folder {folder} does not exist")
    return {path.relative_to(folder).with_suffix("").as_posix(): np.load(path)
            for path in sorted(folder.rglob("*.npy"))}


def reference_mean(features: dict[str, np.ndarray] | list[np.ndarray]) -> np.ndarray:
    """Mean feature [F] of a reference set."""
    vectors = list(features.values()) if isinstance(features, dict) else list(features)
    if not vectors:
        raise ValueError("the reference set has no features")
    return np.mean([np.asarray(v, dtype=np.float64).reshape(-1) for v in vectors], axis=0)


def clamp2_score(feature: np.ndarray, reference: np.ndarray) -> float:
    """Cosine similarity between a feature ([1, F] or [F]) and a reference mean ([F])."""
    a = np.asarray(feature, dtype=np.float64).reshape(-1)
    b = np.asarray(reference, dtype=np.float64).reshape(-1)
    if a.shape != b.shape:
        raise ValueError(f"feature size {a.size} differs from reference size {b.size}")
    return float(a @ b / max(np.linalg.norm(a) * np.linalg.norm(b), 1e-12))


def score_folder(generated_dir: str | Path, reference_dir: str | Path) -> dict[str, float]:
    """{relative path: CLaMP 2 score} of every generated feature against the reference folder's mean."""
    generated = load_feature_folder(generated_dir)
    if not generated:
        raise ValueError(f"no .npy features under {generated_dir}")
    reference = reference_mean(load_feature_folder(reference_dir))
    return {name: clamp2_score(feature, reference) for name, feature in generated.items()}


def summarize_scores(scores: dict[str, float]) -> dict[str, float]:
    """count, mean, its standard error (nan for one score), min, quartiles, max of a set of scores."""
    values = np.fromiter(scores.values(), dtype=np.float64)
    if values.size == 0:
        raise ValueError("no scores to summarize")
    q1, median, q3 = np.quantile(values, [0.25, 0.5, 0.75])
    sem = float(values.std(ddof=1) / np.sqrt(values.size)) if values.size > 1 else float("nan")
    return {"count": int(values.size), "mean": float(values.mean()), "sem": sem, "min": float(values.min()),
            "q1": float(q1), "median": float(median), "q3": float(q3), "max": float(values.max())}


def write_scores_csv(scores: dict[str, float], path: str | Path) -> None:
    """Per-file scores, best first: columns `file,score`."""
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow(["file", "score"])
    for name, score in sorted(scores.items(), key=lambda item: (-item[1], item[0])):
        writer.writerow([name, f"{score:.6f}"])
    atomic_write_text(path, buffer.getvalue())
