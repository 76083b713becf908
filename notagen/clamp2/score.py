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
from collections import Counter
from pathlib import Path

import numpy as np

from notagen.io import atomic_write_text

from .extraction import recorded_extractor


class FeatureError(ValueError):
    """A feature file or folder that cannot be scored; the message names it."""


def load_feature(path: Path) -> np.ndarray:
    """One [1, F] feature; garbage, another shape and NaN/inf values are refused with the file named."""
    try:
        feature = np.load(path, allow_pickle=False)
    except (ValueError, OSError, EOFError) as error:
        raise FeatureError(f"{path} is not a .npy feature file: {error}") from None
    if feature.ndim != 2 or feature.shape[0] != 1 or feature.dtype.kind != "f":
        raise FeatureError(f"{path} holds a {feature.dtype} array of shape {feature.shape}, not a [1, F] feature")
    if not np.isfinite(feature).all():
        raise FeatureError(f"{path} holds NaN or infinite values: re-extract it")
    return feature


def load_feature_folder(folder: str | Path) -> dict[str, np.ndarray]:
    """{relative path without `.npy`: feature [1, F]} for every `.npy` under `folder`, sorted;
    every feature checked, and all of one size."""
    folder = Path(folder)
    if not folder.is_dir():
        raise FileNotFoundError(f"feature folder {folder} does not exist")
    features = {path.relative_to(folder).with_suffix("").as_posix(): load_feature(path)
                for path in sorted(folder.rglob("*.npy"))}
    sizes = Counter(feature.shape[1] for feature in features.values())
    if len(sizes) > 1:
        common = sizes.most_common(1)[0][0]
        odd = [f"{name}.npy ({feature.shape[1]})" for name, feature in features.items() if feature.shape[1] != common]
        shown = ", ".join(odd[:5]) + (f" and {len(odd) - 5} more" if len(odd) > 5 else "")
        raise FeatureError(f"features of different sizes under {folder}: {sizes[common]} files have {common} values, "
                           f"but {shown}: made by different extractors, re-extract them")
    return features


def reference_mean(features: dict[str, np.ndarray] | list[np.ndarray]) -> np.ndarray:
    """Mean feature [F] of a reference set."""
    vectors = list(features.values()) if isinstance(features, dict) else list(features)
    if not vectors:
        raise FeatureError("the reference set has no features")
    return np.mean([np.asarray(v, dtype=np.float64).reshape(-1) for v in vectors], axis=0)


def clamp2_score(feature: np.ndarray, reference: np.ndarray) -> float:
    """Cosine similarity between a feature ([1, F] or [F]) and a reference mean ([F])."""
    a = np.asarray(feature, dtype=np.float64).reshape(-1)
    b = np.asarray(reference, dtype=np.float64).reshape(-1)
    if a.shape != b.shape:
        raise FeatureError(f"feature size {a.size} differs from reference size {b.size}: not the same extractor")
    return float(a @ b / max(np.linalg.norm(a) * np.linalg.norm(b), 1e-12))


def score_folder(generated_dir: str | Path, reference_dir: str | Path) -> dict[str, float]:
    """{relative path: CLaMP 2 score} of every generated feature against the reference folder's mean."""
    generated = load_feature_folder(generated_dir)
    if not generated:
        raise FeatureError(f"no .npy features under {generated_dir}")
    made_by = [(recorded_extractor(folder) or {}).get("fingerprint") for folder in (generated_dir, reference_dir)]
    if None not in made_by and made_by[0] != made_by[1]:
        raise FeatureError(f"the features under {generated_dir} and {reference_dir} were extracted by different "
                           f"weights ({made_by[0]} vs {made_by[1]}, see their extractor.json): extract both with one model")
    references = load_feature_folder(reference_dir)
    if not references:
        raise FeatureError(f"no .npy features under the reference folder {reference_dir}")
    reference = reference_mean(references)
    size, reference_size = next(iter(generated.values())).shape[1], reference.size
    if size != reference_size:
        raise FeatureError(f"features under {generated_dir} have {size} values, those under {reference_dir} "
                           f"{reference_size}: extracted by different models")
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
