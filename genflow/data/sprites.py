"""``sprites``: dSprites-like procedural shapes with known generative factors.

Like dSprites (Matthey et al. 2017): a square, an ellipse or a heart, at one of
6 scales, 40 orientations and 32 x 32 positions, on a black canvas, here
anti-aliased by 4x supersampling; optionally in one of 6 colours. Every factor
is stored as a column beside the image (``shape`` is also the class label), so
disentanglement, interpolation and conditional models have ground truth.
"""
from __future__ import annotations

import numpy as np

from genflow.data.raw import RawData, split_indices

SHAPES = ("square", "ellipse", "heart")
SCALES = np.linspace(0.5, 1.0, 6)
ORIENTATIONS = np.linspace(0.0, 2 * np.pi, 40, endpoint=False)
POSITIONS = np.linspace(0.25, 0.75, 32)
COLOURS = np.array([[255, 64, 64], [64, 255, 64], [64, 96, 255], [255, 230, 64], [255, 64, 255], [64, 255, 255]])
RADIUS = 0.2  # half the extent of a scale-1 shape, as a fraction of the canvas
SUPERSAMPLE = 4
CHUNK = 512


def _inside(shape: int, u: np.ndarray, v: np.ndarray) -> np.ndarray:
    """Is the point (u, v), in shape-centred units (1 = half extent), inside the sprite?"""
    if shape == 0:  # square
        return np.maximum(np.abs(u), np.abs(v)) <= 0.8
    if shape == 1:  # ellipse, 2:1
        return u * u + 4.0 * v * v <= 1.0
    hx, hy = 1.1 * u, 0.25 - 1.1 * v  # the heart curve (x^2 + y^2 - 1)^3 <= x^2 y^3, upright
    r = hx * hx + hy * hy - 1.0
    return r * r * r <= hx * hx * hy * hy * hy


def render(factors: dict[str, np.ndarray], resolution: int) -> np.ndarray:
    """Rasterise every sprite: uint8 (N, R, R) coverage in 0..255."""
    n, fine = len(factors["shape"]), resolution * SUPERSAMPLE
    grid = ((np.arange(fine) + 0.5) / fine).astype(np.float32)
    out = np.empty((n, resolution, resolution), dtype=np.uint8)
    for shape in range(len(SHAPES)):  # one shape at a time: each test runs only where needed
        rows = np.flatnonzero(factors["shape"] == shape)
        for start in range(0, len(rows), CHUNK):
            part = rows[start:start + CHUNK]
            col = lambda name: factors[name][part][:, None, None].astype(np.float32)  # noqa: E731
            radius = RADIUS * col("scale")
            dx, dy = (grid[None, None, :] - col("pos_x")) / radius, (grid[None, :, None] - col("pos_y")) / radius
            cos, sin = np.cos(col("orientation")), np.sin(col("orientation"))
            hits = _inside(shape, cos * dx + sin * dy, cos * dy - sin * dx)
            counts = hits.reshape(-1, resolution, SUPERSAMPLE, resolution, SUPERSAMPLE).sum(axis=(2, 4))
            out[part] = (counts * (255 / SUPERSAMPLE ** 2) + 0.5).astype(np.uint8)
    return out


def sample_factors(n: int, color: bool, rng: np.random.Generator) -> dict[str, np.ndarray]:
    factors = {
        "shape": rng.integers(len(SHAPES), size=n).astype(np.int16),
        "scale": SCALES[rng.integers(len(SCALES), size=n)].astype(np.float32),
        "orientation": ORIENTATIONS[rng.integers(len(ORIENTATIONS), size=n)].astype(np.float32),
        "pos_x": POSITIONS[rng.integers(len(POSITIONS), size=n)].astype(np.float32),
        "pos_y": POSITIONS[rng.integers(len(POSITIONS), size=n)].astype(np.float32),
    }
    if color:
        factors["color"] = rng.integers(len(COLOURS), size=n).astype(np.int16)
    return factors


def sprites(n_samples: int, resolution: int, color: bool, val_fraction: float, test_fraction: float,
            seed: int) -> RawData:
    factors = sample_factors(n_samples, color, np.random.default_rng(seed))
    coverage = render(factors, resolution)[..., None]
    if color:
        x = np.rint(coverage * (COLOURS[factors["color"]][:, None, None, :] / 255.0)).astype(np.uint8)
    else:
        x = coverage
    return RawData(kind="image", x=x, labels=factors["shape"].astype(np.int64), num_classes=len(SHAPES),
                   class_names=list(SHAPES), factors=factors,
                   splits=split_indices(n_samples, val_fraction, test_fraction, seed))
