"""Distances between sets of feature vectors (numpy or torch), float64 throughout."""
from __future__ import annotations

import numpy as np


def as_numpy(features) -> np.ndarray:
    if hasattr(features, "detach"):
        features = features.detach().cpu().numpy()
    array = np.asarray(features, dtype=np.float64)
    if array.ndim != 2:
        raise ValueError(f"expected a 2-D array of feature vectors, got shape {array.shape}")
    return array


def gaussian_stats(features) -> tuple[np.ndarray, np.ndarray]:
    x = as_numpy(features)
    return x.mean(axis=0), np.cov(x, rowvar=False).reshape(x.shape[1], x.shape[1])


def frechet_from_stats(mu1: np.ndarray, cov1: np.ndarray, mu2: np.ndarray, cov2: np.ndarray) -> float:
    """||mu1 - mu2||^2 + tr(C1 + C2 - 2 (C1 C2)^1/2).

    tr((C1 C2)^1/2) is the sum of the square roots of the eigenvalues of C1 C2,
    which are real and >= 0 (C1 C2 is similar to a PSD matrix); tiny negative
    round-off is clipped."""
    eigenvalues = np.linalg.eigvals(cov1 @ cov2)
    tr_sqrt = np.sqrt(np.clip(eigenvalues.real, 0.0, None)).sum()
    value = float(np.square(mu1 - mu2).sum() + np.trace(cov1) + np.trace(cov2) - 2.0 * tr_sqrt)
    return max(value, 0.0)


def frechet_distance(real, fake) -> float:
    """Fréchet distance between Gaussians fitted to two feature sets (FID in a given feature space)."""
    return frechet_from_stats(*gaussian_stats(real), *gaussian_stats(fake))
