"""``stacked_digits``: three scikit-learn digits stacked as the R, G, B channels.

The analogue of Stacked MNIST (Metz et al. 2017; the PacGAN / VEEGAN mode
coverage protocol) on the bundled 8x8 digits: 10^3 = 1000 modes, one per
(red, green, blue) digit triple. The base digits are split into train / val /
test *before* stacking, so no test triple reuses a training digit image.
The per-channel classes are kept as ``label_r``, ``label_g``, ``label_b``;
``label`` is their 3-digit number ``100 r + 10 g + b``.
"""
from __future__ import annotations

import numpy as np

from genflow.data.embedded import digits
from genflow.data.images import upsample
from genflow.data.raw import SPLITS, RawData, split_indices

CHANNELS = ("label_r", "label_g", "label_b")


def stack(pixels: np.ndarray, classes: np.ndarray, picks: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """``picks`` (N, 3) digit indices -> (N, H, W, 3) images and (N, 3) channel classes."""
    images = np.concatenate([pixels[picks[:, ch]] for ch in range(3)], axis=-1)
    return images, classes[picks]


def stacked_digits(n_samples: int, resolution: int, val_fraction: float, test_fraction: float,
                   seed: int) -> RawData:
    base = digits()
    pixels = upsample(base.x, resolution) if resolution != base.x.shape[1] else base.x
    base_splits = split_indices(len(pixels), val_fraction, test_fraction, seed)
    rng = np.random.default_rng(seed + 1)
    counts = {"val": int(round(n_samples * val_fraction)), "test": int(round(n_samples * test_fraction))}
    counts["train"] = n_samples - counts["val"] - counts["test"]
    images, classes, splits, start = [], [], {}, 0
    for split in SPLITS:
        pool = base_splits[split]
        picks = pool[rng.integers(len(pool), size=(counts[split], 3))] if counts[split] else np.zeros((0, 3), int)
        x, y = stack(pixels, base.labels, picks)
        images.append(x)
        classes.append(y)
        splits[split] = np.arange(start, start + counts[split])
        start += counts[split]
    triples = np.concatenate(classes)
    labels = triples @ np.array([100, 10, 1])
    return RawData(kind="image", x=np.concatenate(images), labels=labels.astype(np.int64), num_classes=1000,
                   factors={name: triples[:, i].astype(np.int16) for i, name in enumerate(CHANNELS)},
                   splits=splits)
