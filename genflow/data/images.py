"""Shared checks and resizing for image sources (Pillow, no torchvision)."""
from __future__ import annotations

import numpy as np
from PIL import Image

from genflow.errors import DataError

MAX_SIDE = 8192  # a side longer than this is a corrupt header, not a dataset


def check_dimensions(where: str, height: int, width: int, channels: int = 1) -> None:
    if not (1 <= height <= MAX_SIDE and 1 <= width <= MAX_SIDE):
        raise DataError(f"{where}: absurd image size {height}x{width} (allowed 1..{MAX_SIDE} per side)")
    if channels not in (1, 3):
        raise DataError(f"{where}: {channels} channels; genflow handles 1 (grayscale) or 3 (RGB)")


def fit_square(image: Image.Image, size: int, crop: str) -> Image.Image:
    """Resize to ``size`` x ``size``: ``crop='center'`` scales the shorter side to ``size`` and
    cuts the middle (no distortion); ``crop='none'`` stretches the whole image."""
    if crop == "none":
        return image.resize((size, size), Image.Resampling.BICUBIC)
    width, height = image.size
    scale = size / min(width, height)
    new_w, new_h = max(size, round(width * scale)), max(size, round(height * scale))
    image = image.resize((new_w, new_h), Image.Resampling.BICUBIC)
    left, top = (new_w - size) // 2, (new_h - size) // 2
    return image.crop((left, top, left + size, top + size))


def to_array(image: Image.Image) -> np.ndarray:
    """A Pillow image (mode L or RGB) as uint8 (H, W, C)."""
    array = np.asarray(image, dtype=np.uint8)
    return array[..., None] if array.ndim == 2 else array


def upsample(images: np.ndarray, size: int) -> np.ndarray:
    """Resize a uint8 (N, H, W, C) stack to ``size`` x ``size`` (bilinear), channel by channel."""
    n, _, _, c = images.shape
    out = np.empty((n, size, size, c), dtype=np.uint8)
    for i in range(n):
        for ch in range(c):
            plane = Image.fromarray(images[i, :, :, ch])
            out[i, :, :, ch] = np.asarray(plane.resize((size, size), Image.Resampling.BILINEAR))
    return out


def pad_square(images: np.ndarray, size: int, where: str) -> np.ndarray:
    """A uint8 (N, H, W, C) stack centred on black ``size`` x ``size`` canvases (an odd margin
    puts its extra pixel at the bottom / right)."""
    n, height, width, channels = images.shape
    if height > size or width > size:
        raise DataError(f"{where}: images are {height}x{width}, larger than pad_to {size}; pad_to only adds "
                        "borders (give at least the larger side, e.g. 32 for 28x28 MNIST)")
    top, left = (size - height) // 2, (size - width) // 2
    out = np.zeros((n, size, size, channels), dtype=np.uint8)
    out[:, top:top + height, left:left + width] = images
    return out
