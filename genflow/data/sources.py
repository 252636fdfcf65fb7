"""Every data source, by its ``source`` name, and the two simplest embedded ones.

``digits`` (scikit-learn's bundled 8x8 digits) and the 2-D Gaussian mixtures
live here; each other source has its own module. :func:`load_source` turns a
``data.<name>`` params entry into :class:`~genflow.data.raw.RawData`.
"""
from __future__ import annotations

import numpy as np

from genflow.data.raw import RawData
from genflow.errors import ConfigError

RING8_RADIUS = 2.0
GRID25_VALUES = (-4.0, -2.0, 0.0, 2.0, 4.0)


def digits() -> RawData:
    """scikit-learn's bundled 8x8 digits: 1797 images, values 0..16 scaled to 0..255."""
    from sklearn.datasets import load_digits

    bunch = load_digits()
    pixels = np.rint(bunch.images * (255.0 / 16.0)).clip(0, 255).astype(np.uint8)
    return RawData(kind="image", x=pixels[..., None], labels=bunch.target.astype(np.int64), num_classes=10)


def mixture_centers(source: str) -> np.ndarray:
    if source == "ring8":
        angles = 2 * np.pi * np.arange(8) / 8
        return np.stack([np.cos(angles), np.sin(angles)], axis=1) * RING8_RADIUS
    if source == "grid25":
        return np.array([(a, b) for a in GRID25_VALUES for b in GRID25_VALUES])
    raise ConfigError(f"unknown mixture {source!r}; allowed: ring8, grid25")


def mixture(source: str, n_samples: int, std: float, seed: int) -> RawData:
    """Equal-weight isotropic Gaussian mixture (PacGAN's 2D-ring / 2D-grid)."""
    centers = mixture_centers(source)
    rng = np.random.default_rng(seed)
    components = rng.integers(len(centers), size=n_samples)
    points = centers[components] + rng.normal(scale=std, size=(n_samples, 2))
    return RawData(kind="points", x=points.astype(np.float32), labels=None, components=components,
                   centers=centers.astype(np.float32), std=std)


def load_source(spec, log=print, ray_spec=None) -> RawData:
    """Build the raw data a ``data.<name>`` params entry describes."""
    source = spec.source
    if source == "digits":
        return digits()
    if source in ("ring8", "grid25"):
        return mixture(source, spec.n_samples, spec.std, spec.seed)
    if source == "stacked_digits":
        from genflow.data.stacked_digits import stacked_digits

        return stacked_digits(spec.n_samples, spec.resolution, spec.val_fraction, spec.test_fraction, spec.seed)
    if source == "sprites":
        from genflow.data.sprites import sprites

        return sprites(spec.n_samples, spec.resolution, spec.color, spec.val_fraction, spec.test_fraction, spec.seed)
    if source == "idx":
        from genflow.data.idx import idx_source

        return idx_source(spec)
    if source in ("cifar10", "cifar100"):
        from genflow.data.cifar import cifar_source

        return cifar_source(spec)
    if source == "imagefolder":
        from genflow.data.imagefolder import imagefolder_source

        return imagefolder_source(spec, log=log, ray_spec=ray_spec)
    if source == "parquet":
        from genflow.data.parquet_source import parquet_source

        return parquet_source(spec)
    raise ConfigError(f"unknown data source {source!r}")
