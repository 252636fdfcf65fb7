"""Kernel Inception Distance (Bińkowski et al. 2018) in any feature space.

The unbiased MMD^2 estimate with the cubic polynomial kernel
k(x, y) = (x.y / d + 1)^3, averaged over ``n_subsets`` random subsets of
``subset_size`` rows of each set (the clean-fid / torch-fidelity protocol), so
the value has a standard deviation and is comparable across sample counts.
"""
from __future__ import annotations

import numpy as np
import torch

from genflow.metrics.distances import as_numpy


def _kernel_sums(a: torch.Tensor, b: torch.Tensor) -> tuple[float, float]:
    """Sum and trace of the kernel matrix k(a_i, b_j). Kernel values in the inputs' precision
    (float32: half the cost of float64 at 2048 dimensions), their sums accumulated in float64."""
    k = (a @ b.T / a.shape[1] + 1) ** 3
    return float(k.sum(dtype=torch.float64)), float(k.diagonal().sum(dtype=torch.float64))


def polynomial_mmd2(x: torch.Tensor, y: torch.Tensor) -> float:
    """Unbiased MMD^2 between two samples under the cubic polynomial kernel."""
    m, n = x.shape[0], y.shape[0]
    (xx, xx_diag), (yy, yy_diag), (xy, _) = _kernel_sums(x, x), _kernel_sums(y, y), _kernel_sums(x, y)
    return (xx - xx_diag) / (m * (m - 1)) + (yy - yy_diag) / (n * (n - 1)) - 2 * xy / (m * n)


def kid(real, fake, *, n_subsets: int = 100, subset_size: int = 1000, seed: int = 0) -> tuple[float, float]:
    """(mean, std) of the unbiased polynomial MMD^2 over random subsets; deterministic for a seed.

    ``subset_size`` is capped at the smaller set's size (at least 2 rows are needed)."""
    x, y = torch.from_numpy(as_numpy(real)).float(), torch.from_numpy(as_numpy(fake)).float()
    if x.shape[1] != y.shape[1]:
        raise ValueError(f"feature dimensions differ: {x.shape[1]} vs {y.shape[1]}")
    size = min(subset_size, len(x), len(y))
    if size < 2:
        raise ValueError(f"KID needs at least 2 rows in each set, got {len(x)} and {len(y)}")
    rng = np.random.default_rng(seed)
    values = [polynomial_mmd2(x[rng.choice(len(x), size, replace=False)], y[rng.choice(len(y), size, replace=False)])
              for _ in range(n_subsets)]
    return float(np.mean(values)), float(np.std(values))
