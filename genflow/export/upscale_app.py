"""``genflow upscale``: super-resolution with an exported upscaler (ONNX Runtime + model card only).

Full-size images (the model's data_shape) are first degraded the way the model was trained
(average pooling by ``scale``), so the result can be compared with the original: the grid shows
input / bicubic / model / original and the PSNR of both reconstructions is returned. Images of
the low-resolution input shape are upscaled as they are: input / bicubic / model.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from genflow.evaluate.pictures import save_image_grid
from genflow.export.apps import load_images
from genflow.export.exported import ExportedModel
from genflow.io import atomic_path
from genflow.metrics.image_quality import psnr, unit


@dataclass
class UpscaleResult:
    n: int
    had_originals: bool  # full-size images were given: degraded first, PSNR measured
    psnr_model: float | None = None
    psnr_bicubic: float | None = None


def degrade(hr: np.ndarray, scale: int) -> np.ndarray:
    """Average pooling by ``scale``, the degradation the card names (numpy: no training code)."""
    n, c, h, w = hr.shape
    return hr.reshape(n, c, h // scale, scale, w // scale, scale).mean(axis=(3, 5), dtype=np.float64).astype(
        np.float32)


def nearest(lr: np.ndarray, scale: int) -> np.ndarray:
    return lr.repeat(scale, axis=2).repeat(scale, axis=3)


def mean_psnr(x: np.ndarray, y: np.ndarray) -> float:
    """Mean per-image PSNR (dB) on the [0, 1] scale, as the evaluate stage reports it."""
    return float(psnr(unit(torch.from_numpy(x)), unit(torch.from_numpy(y))).mean())


def upscale(model: ExportedModel, images: str | Path, out: str | Path, limit: int = 16) -> UpscaleResult:
    model.require("upscaler", "upscale")
    scale = model.io["scale"]
    _, x = load_images(images, model, shapes=[model.io["data_shape"], model.io["input_shape"]])
    x = x[:limit]
    had_originals = list(x.shape[1:]) == list(model.io["data_shape"])
    lr = degrade(x, scale) if had_originals else x
    sr, base = model.upscale(lr), model.upscale(lr, network="bicubic")
    rows = [nearest(lr, scale), base, sr] + ([x] if had_originals else [])
    with atomic_path(out) as tmp:
        save_image_grid(np.concatenate(rows), tmp, cols=len(x))
    if not had_originals:
        return UpscaleResult(len(x), False)
    return UpscaleResult(len(x), True, mean_psnr(sr, x), mean_psnr(base, x))
