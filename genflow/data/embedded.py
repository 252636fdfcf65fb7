"""The two simplest embedded sources: scikit-learn's bundled 8x8 digits and the 2-D Gaussian
mixtures (PacGAN's ring and grid). Generated offline, deterministic from their seed."""
from __future__ import annotations

import numpy as np

from genflow.data.raw import RawData
from genflow.data.specs import RING8_RADIUS
from genflow.errors import ConfigError

GRID25_VALUES = (-4.0, -2.0, 0.0, 2.0, 4.0)


def digits() -> RawData:
    """scikit-learn's bundled 8x8 digits: 1797 images, values 0..16 scaled to 0..255."""
    from sklearn.datasets import load_digits

    bunch = load_digits()
    pixels = np.rint(bunch.images * (255.0 / 16.0)).clip(0, 255).astype(np.uint8)
    return RawData(kind="image", x=pixels[..., None], labels=bunch.target.astype(np.int64), num_classes=10)


def mixture_centers(source: str, radius: float = RING8_RADIUS) -> np.ndarray:
    """The means; ``radius``: ring8's circle (PacGAN's and VEEGAN's ring: 1)."""
    if source == "ring8":
        angles = 2 * np.pi * np.arange(8) / 8
        return np.stack([np.cos(angles), np.sin(angles)], axis=1) * radius
    if source == "grid25":
        return np.array([(a, b) for a in GRID25_VALUES for b in GRID25_VALUES])
    raise ConfigError(f"unknown mixture {source!r}; allowed: ring8, grid25")


def mixture(source: str, n_samples: int, std: float, seed: int, radius: float = RING8_RADIUS) -> RawData:
    """Equal-weight isotropic Gaussian mixture (PacGAN's 2D-ring / 2D-grid)."""
    centers = mixture_centers(source, radius)
    rng = np.random.default_rng(seed)
    components = rng.integers(len(centers), size=n_samples)
    points = centers[components] + rng.normal(scale=std, size=(n_samples, 2))
    return RawData(kind="points", x=points.astype(np.float32), labels=None, components=components,
                   centers=centers.astype(np.float32), std=std)
