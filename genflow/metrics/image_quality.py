"""Full-reference image quality (torch): PSNR and SSIM of restored images against the originals.

Both take float images (N, C, H, W) on the [0, 1] scale (``unit`` maps genflow's [-1, 1] there)
and return one value per image, so callers average over images as super-resolution papers do.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F

# a perfect restoration has infinite PSNR; a mean squared error floor keeps the mean finite
PSNR_MSE_FLOOR = 1e-10  # PSNR capped at 100 dB
SSIM_WINDOW, SSIM_SIGMA, SSIM_K1, SSIM_K2 = 11, 1.5, 0.01, 0.03


def unit(x: torch.Tensor) -> torch.Tensor:
    """[-1, 1] images -> [0, 1], clamped as they would be when saved."""
    return (x.clamp(-1, 1) + 1) / 2


def psnr(x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """Per-image peak signal-to-noise ratio in dB for a peak value of 1: 10 log10(1 / MSE)."""
    mse = (x.double() - y.double()).square().flatten(1).mean(dim=1)
    return (10 * torch.log10(1.0 / mse.clamp(min=PSNR_MSE_FLOOR))).float()


def gaussian_window(size: int, sigma: float) -> torch.Tensor:
    """Normalised 2-D Gaussian (size x size), float64."""
    coords = torch.arange(size, dtype=torch.float64) - (size - 1) / 2
    g = torch.exp(-coords.square() / (2 * sigma ** 2))
    window = torch.outer(g, g)
    return window / window.sum()


def ssim(x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """Per-image structural similarity (Wang et al. 2004): the SSIM map under an 11x11 Gaussian
    window (sigma 1.5), K1 = 0.01, K2 = 0.03, dynamic range 1, over 'valid' window positions,
    averaged over positions and channels. Images smaller than 11 px get the window cut to their
    size (the same Gaussian, renormalised), so an 8x8 image is one window position."""
    size = min(SSIM_WINDOW, x.shape[-2], x.shape[-1])
    channels = x.shape[1]
    window = gaussian_window(size, SSIM_SIGMA).expand(channels, 1, size, size).contiguous()
    x, y = x.double(), y.double()

    def blur(t: torch.Tensor) -> torch.Tensor:  # each channel on its own (groups = channels)
        return F.conv2d(t, window, groups=channels)

    mu_x, mu_y = blur(x), blur(y)
    var_x = blur(x * x) - mu_x.square()
    var_y = blur(y * y) - mu_y.square()
    cov = blur(x * y) - mu_x * mu_y
    c1, c2 = SSIM_K1 ** 2, SSIM_K2 ** 2
    ssim_map = ((2 * mu_x * mu_y + c1) * (2 * cov + c2)) / ((mu_x.square() + mu_y.square() + c1) * (var_x + var_y + c2))
    return ssim_map.flatten(1).mean(dim=1).float()
