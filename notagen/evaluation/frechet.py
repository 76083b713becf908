"""Fréchet Music Distance (FMD): the Fréchet distance between Gaussian fits of the generated and
the reference pieces' CLaMP 2 / M3 features (Retkowski et al., 2024, the music counterpart of FID).

    FMD^2 = |m_g - m_r|^2 + tr(C_g) + tr(C_r) - 2 tr( (C_r^1/2 C_g C_r^1/2)^1/2 )

reported as that squared distance, as FID and the `frechet-music-distance` package report it
(0 = the same Gaussian; lower is closer).

Design choices
- Our own implementation: the `frechet-music-distance` package computes the distance from folders
  of files with its own extractors, which download CLaMP 2 weights and a text tokenizer on first
  use; here the features are the evaluation's own (any CLaMP 2 or M3 checkpoint, offline).
- tr((C_g C_r)^1/2) is computed as the sum of the square roots of the eigenvalues of the symmetric
  matrix C_r^1/2 C_g C_r^1/2 (the same eigenvalues as C_g C_r), with C_r^1/2 from an eigen-
  decomposition: real, symmetric arithmetic throughout, no complex `sqrtm` output to clean up.
  Eigenvalues within rounding of zero (the many zeros of a covariance from fewer pieces than
  feature dimensions come out as +-1e-16) are set to zero, so singular covariances need no added
  epsilon and equal Gaussians give 0.
- Covariances are unbiased (n - 1). FMD grows as the piece counts fall (the estimates get noisier):
  compare FMDs only between runs with the same piece counts and the same feature extractor.
"""
from __future__ import annotations

import numpy as np


def gaussian_fit(features: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Mean [F] and unbiased covariance [F, F] of features [N, F] (N >= 2)."""
    features = np.asarray(features, dtype=np.float64)
    if features.ndim != 2 or len(features) < 2:
        raise ValueError(f"a Gaussian fit needs at least 2 feature rows, not an array of shape {features.shape}")
    return features.mean(axis=0), np.cov(features, rowvar=False, ddof=1).reshape(features.shape[1], -1)


def _psd_eigenvalues(values: np.ndarray) -> np.ndarray:
    """Eigenvalues of a symmetric PSD matrix with rounding noise set to 0: below the largest times
    size times machine epsilon (numpy's matrix_rank tolerance) they are zeros, and the square root
    of a 1e-16 would add 1e-8 per dimension to the trace."""
    tolerance = max(values.max(initial=0.0), 0.0) * len(values) * np.finfo(np.float64).eps
    return np.where(values > tolerance, values, 0.0)


def _psd_sqrt(matrix: np.ndarray) -> np.ndarray:
    """Square root of a symmetric positive semi-definite matrix."""
    values, vectors = np.linalg.eigh((matrix + matrix.T) / 2)
    return (vectors * np.sqrt(_psd_eigenvalues(values))) @ vectors.T


def frechet_distance(mean_a: np.ndarray, cov_a: np.ndarray, mean_b: np.ndarray, cov_b: np.ndarray) -> float:
    """Squared Fréchet distance between N(mean_a, cov_a) and N(mean_b, cov_b)."""
    mean_a, mean_b = np.atleast_1d(mean_a).astype(np.float64), np.atleast_1d(mean_b).astype(np.float64)
    cov_a, cov_b = np.atleast_2d(cov_a).astype(np.float64), np.atleast_2d(cov_b).astype(np.float64)
    if mean_a.shape != mean_b.shape or cov_a.shape != cov_b.shape or cov_a.shape != mean_a.shape * 2:
        raise ValueError(f"Gaussians of different sizes: means {mean_a.shape} {mean_b.shape}, "
                         f"covariances {cov_a.shape} {cov_b.shape} (features of different extractors?)")
    root_b = _psd_sqrt(cov_b)
    middle = root_b @ cov_a @ root_b  # [F, F], symmetric PSD: its eigenvalues are those of cov_a @ cov_b
    trace_root = np.sqrt(_psd_eigenvalues(np.linalg.eigvalsh((middle + middle.T) / 2))).sum()
    difference = mean_a - mean_b
    distance = difference @ difference + np.trace(cov_a) + np.trace(cov_b) - 2 * trace_root
    return float(max(distance, 0.0))  # rounding may leave -1e-12 for equal Gaussians


def fmd(generated: np.ndarray, reference: np.ndarray) -> float:
    """FMD of generated features [N, F] against reference features [M, F]."""
    return frechet_distance(*gaussian_fit(generated), *gaussian_fit(reference))
