"""Evaluation of super-resolution models (task "upscale"), called by evaluate.py and the sweep probe.

Every test image of the reference rows is degraded the way the model was trained (average
pooling by ``scale``), upscaled, and compared with the original: PSNR and SSIM on the [0, 1]
scale (mean per image), and FID of the upscaled set against the original set in the dataset's
feature space (do the upscaled images look like real ones?). Bicubic upsampling of the same
inputs, scored the same way, is the baseline a model has to beat.
"""
from __future__ import annotations

from pathlib import Path
from typing import Callable

import torch

from genflow.evaluate.model_metrics import PROBE_KID_SUBSETS
from genflow.evaluate.pictures import save_image_grid
from genflow.io import atomic_path
from genflow.metrics import frechet_distance, kid
from genflow.metrics.image_quality import psnr, ssim, unit
from genflow.models.degrade import bicubic

CHUNK = 256  # images per forward pass: bounded memory for any reference size
PICTURE_COLUMNS = 8


def _chunked(fn: Callable[[torch.Tensor], torch.Tensor], x: torch.Tensor) -> torch.Tensor:
    return torch.cat([fn(x[i:i + CHUNK]) for i in range(0, len(x), CHUNK)])


@torch.no_grad()
def upscaled(model, hr: torch.Tensor) -> torch.Tensor:
    """The model's reconstruction of ``hr`` from its degraded version."""
    model.eval()
    return _chunked(lambda x: model.upscale(model.degrade(x)), hr)


@torch.no_grad()
def bicubic_upscaled(model, hr: torch.Tensor) -> torch.Tensor:
    return _chunked(lambda x: bicubic(model.degrade(x), model.spec.scale), hr)


def quality(restored: torch.Tensor, hr: torch.Tensor, ref) -> dict[str, float]:
    """PSNR (dB) and SSIM, mean per image on [0, 1]; FID against the originals."""
    a, b = unit(restored), unit(hr)
    return {"psnr": float(psnr(a, b).mean()), "ssim": float(ssim(a, b).mean()),
            "fid": frechet_distance(ref.f_real, ref.features(restored))}


def seed_metrics(model, ref) -> dict[str, float]:
    return quality(upscaled(model, ref.real), ref.real, ref)


def floors(model, ref) -> dict[str, float]:
    """None: a perfect upscaler returns the originals (infinite PSNR, SSIM 1); bicubic is the reference row."""
    return {}


def baseline_metrics(model, ref) -> dict[str, dict[str, float]]:
    return {"bicubic": quality(bicubic_upscaled(model, ref.real), ref.real, ref)}


def nearest(lr: torch.Tensor, scale: int) -> torch.Tensor:
    """Each low-resolution pixel as a scale x scale block: how the input looks, at full size."""
    return lr.repeat_interleave(scale, dim=2).repeat_interleave(scale, dim=3)


def picture(model, ref, out_png: str | Path) -> None:
    """Rows: the input (nearest-upsampled), bicubic, the model, the original; 8 test images."""
    hr = ref.real[:PICTURE_COLUMNS]
    rows = [nearest(model.degrade(hr), model.spec.scale), bicubic_upscaled(model, hr), upscaled(model, hr), hr]
    with atomic_path(out_png) as tmp:
        save_image_grid(torch.cat(rows), tmp, cols=len(hr))


def probe(model, probe) -> float:
    """The sweep's score: FID (or KID) of the upscaled validation rows against the originals."""
    f_fake = probe.features(upscaled(model, probe.real))
    if probe.metric == "fid":
        return frechet_distance(probe.f_real, f_fake)
    size = min(1000, len(f_fake), len(probe.f_real))
    return kid(probe.f_real, f_fake, n_subsets=PROBE_KID_SUBSETS, subset_size=size, seed=probe.seed)[0]
