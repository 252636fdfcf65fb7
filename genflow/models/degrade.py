"""Super-resolution's fixed operators: the degradation that makes a low-resolution input and
the bicubic upsampling that is both the baseline and the skip path of the SR generator."""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn


def degrade(hr: torch.Tensor, scale: int) -> torch.Tensor:
    """Area downsampling: each low-resolution pixel is the mean of a scale x scale block."""
    return F.avg_pool2d(hr, scale)


def bicubic(lr: torch.Tensor, scale: int) -> torch.Tensor:
    """Bicubic upsampling (a = -0.75, half-pixel centres), clamped to the image range [-1, 1]:
    bicubic overshoots at edges, and an image cannot."""
    return F.interpolate(lr, scale_factor=scale, mode="bicubic", align_corners=False).clamp(-1, 1)


class Bicubic(nn.Module):
    """The baseline as a network, so an export can offer it (ONNX Resize, cubic) to apps."""

    def __init__(self, scale: int):
        super().__init__()
        self.scale = scale

    def forward(self, lr: torch.Tensor) -> torch.Tensor:
        return bicubic(lr, self.scale)
