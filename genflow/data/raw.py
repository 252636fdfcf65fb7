"""What every source returns before splitting and writing: :class:`RawData`.

Images are uint8 ``(N, H, W, C)`` with int labels; 2-D points are float32
``(N, D)`` with the mixture component that drew them. A source may also carry
per-row factor columns (sprites' shape / scale / position, stacked digits'
per-channel labels) and may fix its own splits (an official test set).
"""
from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

SPLITS = ("train", "val", "test")
# The most bytes a file source may promise once decompressed (an IDX header, Parquet's row-group
# metadata), checked before anything is inflated. The largest published IDX set (MNIST8M, 8.1M
# 28x28 images) is 6.4 GB; a promise beyond this is a forged header or a decompression bomb.
MAX_SOURCE_BYTES = 8 << 30


@dataclass(frozen=True)
class RawData:
    kind: str  # "image" or "points"
    x: np.ndarray  # uint8 (N, H, W, C) images or float32 (N, D) points
    labels: np.ndarray | None  # int64 class per row
    components: np.ndarray | None = None  # int64 mixture component per row (points)
    num_classes: int = 0
    centers: np.ndarray | None = None  # (K, D) mixture means
    std: float | None = None
    class_names: list[str] | None = None
    factors: dict[str, np.ndarray] = field(default_factory=dict)  # extra per-row columns
    splits: dict[str, np.ndarray] | None = None  # fixed row indices per split, else a seeded cut


def split_indices(n: int, val_fraction: float, test_fraction: float, seed: int) -> dict[str, np.ndarray]:
    """A seeded permutation cut into train / val / test (sorted within each split)."""
    order = np.random.default_rng(seed).permutation(n)
    n_test = int(round(n * test_fraction))
    n_val = int(round(n * val_fraction))
    parts = {"test": order[:n_test], "val": order[n_test:n_test + n_val], "train": order[n_test + n_val:]}
    return {name: np.sort(idx) for name, idx in parts.items()}


def with_official_test(n_train: int, n_test: int, val_fraction: float, seed: int) -> dict[str, np.ndarray]:
    """Rows [0, n_train) are the official training set, the next n_test the official test set;
    validation is a seeded ``val_fraction`` of the official training rows."""
    cut = split_indices(n_train, val_fraction, 0.0, seed)
    return {"train": cut["train"], "val": cut["val"], "test": np.arange(n_train, n_train + n_test)}


def first_empty_split(splits: dict[str, np.ndarray], val_fraction: float) -> str | None:
    """The first split that must hold rows and holds none. Train feeds training and test the
    evaluation, so both always need rows; val feeds sweeps and may be empty only when
    ``val_fraction: 0`` says so."""
    required = ["train", "test"] + (["val"] if val_fraction > 0 else [])
    return next((name for name in required if len(splits.get(name, ())) == 0), None)
