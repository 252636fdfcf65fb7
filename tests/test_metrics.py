"""Fréchet distance against closed forms; mixture mode coverage on hand-made samples."""
from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from scipy import linalg

from genflow.data.embedded import mixture_centers
from genflow.metrics import frechet_distance, frechet_from_stats, gaussian_stats, mixture_modes


def closed_form(mu1, c1, mu2, c2) -> float:
    root = linalg.sqrtm(linalg.sqrtm(c1) @ c2 @ linalg.sqrtm(c1)).real
    return float(np.sum((mu1 - mu2) ** 2) + np.trace(c1) + np.trace(c2) - 2 * np.trace(root))


def test_frechet_from_stats_diagonal_closed_form():
    mu1, mu2 = np.array([0.0, 1.0, -2.0]), np.array([1.0, 1.0, 0.5])
    s1, s2 = np.array([1.0, 0.5, 2.0]), np.array([0.3, 0.5, 1.0])
    expected = np.sum((mu1 - mu2) ** 2) + np.sum((s1 - s2) ** 2)
    got = frechet_from_stats(mu1, np.diag(s1 ** 2), mu2, np.diag(s2 ** 2))
    assert got == pytest.approx(expected, rel=1e-10)
    assert frechet_from_stats(mu2, np.diag(s2 ** 2), mu1, np.diag(s1 ** 2)) == pytest.approx(expected, rel=1e-10)


def test_frechet_from_stats_full_covariance():
    rng = np.random.default_rng(0)
    a, b = rng.normal(size=(4, 4)), rng.normal(size=(4, 4))
    c1, c2 = a @ a.T + 0.1 * np.eye(4), b @ b.T + 0.1 * np.eye(4)
    mu1, mu2 = rng.normal(size=4), rng.normal(size=4)
    assert frechet_from_stats(mu1, c1, mu2, c2) == pytest.approx(closed_form(mu1, c1, mu2, c2), rel=1e-8)
    assert frechet_from_stats(mu1, c1, mu1, c1) == pytest.approx(0.0, abs=1e-9)


def test_frechet_distance_of_gaussian_samples_matches_analytic():
    rng = np.random.default_rng(1)
    mu1, mu2 = np.array([0.0, 0.0, 0.0]), np.array([1.0, -0.5, 2.0])
    c1 = np.array([[1.0, 0.3, 0.0], [0.3, 2.0, 0.2], [0.0, 0.2, 0.5]])
    c2 = np.diag([0.5, 1.0, 1.5])
    x = rng.multivariate_normal(mu1, c1, size=200_000)
    y = rng.multivariate_normal(mu2, c2, size=200_000)
    expected = closed_form(mu1, c1, mu2, c2)
    assert frechet_distance(x, y) == pytest.approx(expected, rel=0.03)
    # torch tensors are accepted too, with the same value
    assert frechet_distance(torch.from_numpy(x), torch.from_numpy(y)) == pytest.approx(frechet_distance(x, y))


def test_identical_sets_have_zero_distance():
    x = np.random.default_rng(2).normal(size=(500, 5))
    assert frechet_distance(x, x) == pytest.approx(0.0, abs=1e-8)
    assert frechet_distance(x, x + 1.0) == pytest.approx(5.0, rel=1e-8)


def test_gaussian_stats_and_shape_check():
    x = np.random.default_rng(3).normal(size=(1000, 1))
    mu, cov = gaussian_stats(x)
    assert mu.shape == (1,) and cov.shape == (1, 1)
    with pytest.raises(ValueError, match="2-D"):
        gaussian_stats(np.zeros(10))


RING = mixture_centers("ring8")


def test_all_modes_covered():
    samples = np.repeat(RING, 25, axis=0)
    m = mixture_modes(samples, RING, 0.05)
    assert m["modes"] == 8 and m["high_quality"] == 1.0
    assert m["reverse_kl"] == pytest.approx(0.0, abs=1e-12)


def test_single_mode():
    samples = np.repeat(RING[:1], 100, axis=0) + 0.01
    m = mixture_modes(samples, RING, 0.05)
    assert m["modes"] == 1 and m["high_quality"] == 1.0
    assert m["reverse_kl"] == pytest.approx(math.log(8), rel=1e-12)


def test_points_far_from_centers():
    samples = np.full((50, 2), 10.0)
    m = mixture_modes(samples, RING, 0.05)
    assert m["high_quality"] == 0.0 and m["modes"] == 0
    assert m["reverse_kl"] == float("inf")


def test_partial_quality_and_min_count():
    samples = np.concatenate([np.repeat(RING[:2], [30, 1], axis=0), np.zeros((31, 2))])  # origin: 2 away from all
    m = mixture_modes(samples, RING, 0.05)
    assert m["high_quality"] == pytest.approx(0.5) and m["modes"] == 2
    assert mixture_modes(samples, RING, 0.05, min_count=2)["modes"] == 1
    # 3 std is the quality radius: 0.14 from a center is in, 0.16 is out
    assert mixture_modes(RING[:1] + [0.14, 0.0], RING, 0.05)["high_quality"] == 1.0
    assert mixture_modes(RING[:1] + [0.16, 0.0], RING, 0.05)["high_quality"] == 0.0
