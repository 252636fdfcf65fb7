"""Precision / recall (Kynkäänniemi et al. 2019) and density / coverage (Naeem et al. 2020).

Each real sample gets a ball whose radius is the distance to its k-th nearest
real neighbour (itself excluded); likewise each generated sample among the
generated ones. Then, with N real and M generated samples:

* precision: share of generated samples inside at least one real ball;
* recall:    share of real samples inside at least one generated ball;
* density:   (1 / kM) * number of (generated, real ball) containments (can exceed 1);
* coverage:  share of real balls that contain at least one generated sample.

Distances are computed in blocks (never an N x M matrix at once) in float32 on
CPU; the papers use k = 3 for precision / recall and k = 5 for density / coverage.
"""
from __future__ import annotations

import torch

from genflow.metrics.distances import as_numpy

BLOCK = 2048


def _tensor(features) -> torch.Tensor:
    return torch.from_numpy(as_numpy(features)).float()


def kth_neighbour_radii(x: torch.Tensor, ks: tuple[int, ...]) -> dict[int, torch.Tensor]:
    """Distance from every row to its k-th nearest other row, for each k in ``ks``."""
    kmax = max(ks)
    if len(x) <= kmax:
        raise ValueError(f"need more than k = {kmax} samples per set, got {len(x)}")
    nearest = torch.cat([torch.cdist(x[i:i + BLOCK], x).topk(kmax + 1, largest=False).values
                         for i in range(0, len(x), BLOCK)])
    return {k: nearest[:, k] for k in ks}  # column 0 is the row itself (distance 0)


def prdc_many(real, fake, ks: tuple[int, ...] = (3, 5)) -> dict[int, dict[str, float]]:
    """PRDC for several k at once, sharing the distance computations."""
    r, f = _tensor(real), _tensor(fake)
    if r.shape[1] != f.shape[1]:
        raise ValueError(f"feature dimensions differ: {r.shape[1]} vs {f.shape[1]}")
    r_radii, f_radii = kth_neighbour_radii(r, ks), kth_neighbour_radii(f, ks)
    in_real = {k: torch.zeros(len(f), dtype=torch.bool) for k in ks}  # precision
    containments = {k: 0 for k in ks}  # density
    real_hit = {k: torch.zeros(len(r), dtype=torch.bool) for k in ks}  # recall
    nearest_fake = torch.full((len(r),), float("inf"))  # coverage
    for i in range(0, len(f), BLOCK):
        d = torch.cdist(f[i:i + BLOCK], r)  # (block of fake, all real)
        nearest_fake = torch.minimum(nearest_fake, d.min(dim=0).values)
        for k in ks:
            inside = d <= r_radii[k][None, :]
            in_real[k][i:i + BLOCK] = inside.any(dim=1)
            containments[k] += int(inside.sum())
            real_hit[k] |= (d <= f_radii[k][i:i + BLOCK, None]).any(dim=0)
    return {k: {"precision": float(in_real[k].float().mean()), "recall": float(real_hit[k].float().mean()),
                "density": containments[k] / (k * len(f)),
                "coverage": float((nearest_fake <= r_radii[k]).float().mean())} for k in ks}


def prdc(real, fake, k: int = 5) -> dict[str, float]:
    """Precision, recall, density and coverage of ``fake`` against ``real`` with k-NN balls."""
    return prdc_many(real, fake, (k,))[k]
