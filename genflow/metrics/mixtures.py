"""Mode coverage on Gaussian mixtures (PacGAN / VEEGAN protocol).

A sample is *high quality* when it lies within ``n_std`` standard deviations
(3 by default) of its nearest mixture mean. A mode is *captured* when at least
``min_count`` high-quality samples fall on it. The reverse KL compares the
histogram of high-quality samples over modes with the true (uniform) mode
weights: KL(generated || true).
"""
from __future__ import annotations

import numpy as np

from genflow.metrics.distances import as_numpy


def mixture_modes(samples, centers, std: float, *, n_std: float = 3.0, min_count: int = 1) -> dict[str, float]:
    x, mu = as_numpy(samples), as_numpy(centers)
    distances = np.linalg.norm(x[:, None, :] - mu[None, :, :], axis=2)
    nearest = distances.argmin(axis=1)
    good = distances[np.arange(len(x)), nearest] <= n_std * std
    counts = np.bincount(nearest[good], minlength=len(mu))
    hq = counts / max(good.sum(), 1)
    true = np.full(len(mu), 1.0 / len(mu))
    present = hq > 0
    reverse_kl = float((hq[present] * np.log(hq[present] / true[present])).sum()) if present.any() else float("inf")
    return {"modes": int((counts >= min_count).sum()), "high_quality": float(good.mean()), "reverse_kl": reverse_kl}


def discrete_modes(classes, n_modes: int) -> dict[str, float]:
    """Mode coverage when a classifier names each sample's mode (Stacked MNIST: 1000 triples):
    modes with at least one sample, and KL(generated histogram || uniform)."""
    classes = np.asarray(classes, dtype=np.int64).ravel()
    if classes.size == 0 or classes.min() < 0 or classes.max() >= n_modes:
        raise ValueError(f"classes must lie in 0..{n_modes - 1}")
    p = np.bincount(classes, minlength=n_modes) / classes.size
    present = p > 0
    return {"modes": int(present.sum()), "reverse_kl": float((p[present] * np.log(p[present] * n_modes)).sum())}
