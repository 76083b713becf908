"""What the evaluation reads from CLaMP 2 / M3 features: each piece's feature, the CLaMP 2 score
(cosine of a piece's feature to the reference mean feature), a critic telling real from generated
pieces, and novelty (each piece's nearest reference piece).

- The critic is a logistic regression on the features and the statistics histograms, ROC AUC under
  5-fold cross-validation grouped by piece, a group being a piece and its near copies (cosine >
  DUPLICATE_COSINE), so that two folders of the same pieces score ~0.5.
- Pieces above COPY_COSINE to a reference piece are flagged as copies.
- The feature extractor is loaded once per report (three sections ask for it) and again when its
  file changes.
"""
from __future__ import annotations

from functools import lru_cache
from pathlib import Path

import numpy as np

from ..abc import full_interleaved, split_prompt_lines, strip_stream_prefixes
from ..abc.text import is_interleaved
from ..clamp2 import M3Patchilizer, extract_features_batched, load_clamp2_music
from .music_statistics import statistics_vector

COPY_COSINE = 0.99  # a generated piece this close to a reference piece is flagged as a copy
DUPLICATE_COSINE = 0.999  # pieces this close fall into one cross-validation group
CRITIC_C = 1.0  # inverse L2 strength of the critic's logistic regression (on standardised features)


def _extractor(weights_path: str):
    """(model, patchilizer) of a feature extractor, loaded once per report (it is asked three
    times); a file rewritten since is loaded again."""
    stat = Path(weights_path).stat()
    return _load_extractor(weights_path, stat.st_mtime_ns, stat.st_size)


@lru_cache(maxsize=2)
def _load_extractor(weights_path: str, mtime_ns: int, size: int):
    model = load_clamp2_music(weights_path)
    return model, M3Patchilizer(model.config.patch_size)


def features_of(texts: list[str], weights_path: str | Path, batch_size: int = 16) -> np.ndarray:
    """CLaMP 2 / M3 features [N, F] of texts (prompt lines and stream prefixes are dropped first)."""
    model, patchilizer = _extractor(str(weights_path))
    cleaned = []
    for text in texts:
        body = split_prompt_lines(text)[1]
        try:
            cleaned.append(full_interleaved(body) if is_interleaved(body) else strip_stream_prefixes(body))
        except ValueError:
            cleaned.append(strip_stream_prefixes(body))
    return np.concatenate(extract_features_batched(model, patchilizer, cleaned, batch_size), axis=0)


def unit_rows(x: np.ndarray) -> np.ndarray:
    """Rows scaled to length 1 (zero rows stay zero)."""
    return x / np.maximum(np.linalg.norm(x, axis=1, keepdims=True), 1e-12)


def clamp2_scores(generated: np.ndarray, reference: np.ndarray) -> np.ndarray:
    return unit_rows(generated) @ unit_rows(reference.mean(axis=0, keepdims=True))[0]


def duplicate_groups(features: np.ndarray, threshold: float = DUPLICATE_COSINE) -> np.ndarray:
    """A group id per row: rows with cosine above `threshold` (transitively) share one."""
    unit = unit_rows(features)
    close = unit @ unit.T > threshold
    groups = -np.ones(len(features), dtype=int)
    for row in range(len(features)):
        if groups[row] < 0:
            stack, groups[row] = [row], row
            while stack:
                for other in np.flatnonzero(close[stack.pop()] & (groups < 0)):
                    groups[other] = row
                    stack.append(other)
    return groups


def critic_features(features: np.ndarray, values_of_pieces) -> np.ndarray:
    """What the critic sees of each piece: its CLaMP 2 feature [N, F] beside the histograms of its
    statistics (`music_statistics.piece_values` of each piece, in the same order)."""
    return np.hstack([features, np.stack([statistics_vector(values) for values in values_of_pieces])])


def critic_auc(real: np.ndarray, generated: np.ndarray, folds: int = 5, seed: int = 0) -> float:
    """ROC AUC of real-vs-generated logistic regression, cross-validated with near copies kept in one fold."""
    from sklearn.linear_model import LogisticRegression  # lazy: scikit-learn is heavy; only the critic needs it
    from sklearn.metrics import roc_auc_score
    from sklearn.model_selection import GroupKFold
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    x = np.concatenate([real, generated])
    y = np.r_[np.ones(len(real)), np.zeros(len(generated))]
    groups = duplicate_groups(x)
    folds = min(folds, len(set(groups)))
    if folds < 2 or len(real) < 2 or len(generated) < 2:
        return float("nan")
    scores = np.zeros(len(x))
    order = np.random.default_rng(seed).permutation(len(x))  # GroupKFold is deterministic: shuffle rows once
    for train, test in GroupKFold(n_splits=folds).split(x[order], y[order], groups[order]):
        train, test = order[train], order[test]
        if len(set(y[train])) < 2:
            scores[test] = 0.5
            continue
        critic = make_pipeline(StandardScaler(), LogisticRegression(max_iter=2000, C=CRITIC_C)).fit(x[train], y[train])
        scores[test] = critic.predict_proba(x[test])[:, 1]
    return float(roc_auc_score(y, scores))


def novelty(generated: np.ndarray, reference: np.ndarray, threshold: float = COPY_COSINE) -> dict:
    nearest = (unit_rows(generated) @ unit_rows(reference).T).max(axis=1)
    return {"mean_nearest_cosine": float(nearest.mean()), "max_nearest_cosine": float(nearest.max()),
            "copies": int((nearest > threshold).sum()), "copy_threshold": threshold}

