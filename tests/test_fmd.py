"""Fréchet Music Distance (notagen.evaluation.frechet) against hand-worked cases: 1-D Gaussians,
diagonal covariances, scipy's matrix square root on full covariances, and the singular
covariances of fewer pieces than feature dimensions."""
from __future__ import annotations

import numpy as np
import pytest

from notagen.evaluation import fmd, frechet_distance, gaussian_fit


def test_one_dimensional_gaussians():
    # (m1 - m2)^2 + s1^2 + s2^2 - 2 s1 s2 = (1 - 4)^2 + 4 + 9 - 2 * 2 * 3 = 10
    assert frechet_distance(np.array([1.0]), np.array([[4.0]]), np.array([4.0]), np.array([[9.0]])) == pytest.approx(10.0)
    assert frechet_distance(np.array([2.0]), np.array([[1.0]]), np.array([2.0]), np.array([[1.0]])) == 0.0


def test_diagonal_covariances():
    # |(1, 2)|^2 + sum of (sqrt(a_i) - sqrt(b_i))^2 = 5 + (1 - 3)^2 + (2 - 4)^2 = 13
    assert frechet_distance(np.zeros(2), np.diag([1.0, 4.0]), np.array([1.0, 2.0]), np.diag([9.0, 16.0])) \
        == pytest.approx(13.0)


def test_full_covariances_match_the_matrix_square_root():
    from scipy.linalg import sqrtm

    rng = np.random.default_rng(0)
    a, b = rng.normal(size=(5, 5)), rng.normal(size=(5, 5))
    cov_a, cov_b = a @ a.T + 0.1 * np.eye(5), b @ b.T + 0.1 * np.eye(5)  # covariances that do not commute
    mean_a, mean_b = rng.normal(size=5), rng.normal(size=5)
    expected = np.sum((mean_a - mean_b) ** 2) + np.trace(cov_a + cov_b - 2 * np.real(sqrtm(cov_a @ cov_b)))
    assert frechet_distance(mean_a, cov_a, mean_b, cov_b) == pytest.approx(expected, rel=1e-9)
    assert frechet_distance(mean_a, cov_a, mean_b, cov_b) == pytest.approx(frechet_distance(mean_b, cov_b, mean_a, cov_a))


def test_fewer_pieces_than_dimensions():
    rng = np.random.default_rng(1)
    features = rng.normal(size=(6, 32))  # covariance of rank 5 in 32 dimensions
    assert fmd(features, features) == pytest.approx(0.0, abs=1e-9)
    shift = np.full(32, 0.5)
    assert fmd(features + shift, features) == pytest.approx(32 * 0.25, rel=1e-9)  # only the means differ
    mean, cov = gaussian_fit(features)
    assert mean.shape == (32,) and cov.shape == (32, 32) and np.allclose(cov, np.cov(features.T))
    assert fmd(rng.normal(size=(6, 32)), features) > 1.0


def test_bad_inputs_say_why():
    with pytest.raises(ValueError, match="at least 2 feature rows"):
        gaussian_fit(np.ones((1, 4)))
    with pytest.raises(ValueError, match="different sizes"):
        fmd(np.ones((3, 4)), np.ones((3, 5)))
