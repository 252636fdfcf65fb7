"""SRGAN (Ledig et al. 2017): super-resolution by a residual generator trained against a discriminator.

The low-resolution input is the full-size image average-pooled by ``scale`` (models/degrade.py),
computed on the fly from each training batch. Two phases, each updating only its own network:
  D  non-saturating GAN loss: real full-size images vs. G's upscaled ones;
  G  pixel loss + perceptual_weight * feature matching in D's features
     + adversarial_weight * non-saturating GAN loss.
"""
from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from genflow.models.base import Batch, ExportNet, GenerativeModel, Phase, StepContext
from genflow.models.degrade import Bicubic, bicubic, degrade
from genflow.models.gan import Discriminator, d_loss, g_loss
from genflow.models.registry import register

EXPORT_BATCH = 16


class ResidualBlock(nn.Module):
    """x + conv(PReLU(conv(x))): SRGAN's block without batch norm (as EDSR / ESRGAN drop it), so
    G computes the same function in train and eval mode and its output does not depend on the batch."""

    def __init__(self, channels: int):
        super().__init__()
        self.body = nn.Sequential(nn.Conv2d(channels, channels, 3, 1, 1), nn.PReLU(channels),
                                  nn.Conv2d(channels, channels, 3, 1, 1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.body(x)


class SRGenerator(nn.Module):
    """lr (N, C, h, w) -> bicubic(lr) + residual (N, C, h * scale, w * scale).

    The residual's last conv starts at zero, so an untrained G *is* the bicubic baseline: training
    starts from the baseline's PSNR and only has to learn the detail bicubic misses, instead of
    first learning to copy the image through the whole network."""

    def __init__(self, *, channels: int, width: int, n_res: int, scale: int):
        super().__init__()
        self.scale = scale
        self.head = nn.Sequential(nn.Conv2d(channels, width, 3, 1, 1), nn.PReLU(width))
        self.body = nn.Sequential(*[ResidualBlock(width) for _ in range(n_res)], nn.Conv2d(width, width, 3, 1, 1))
        up: list[nn.Module] = []
        for _ in range(int(math.log2(scale))):
            up += [nn.Conv2d(width, width * 4, 3, 1, 1), nn.PixelShuffle(2), nn.PReLU(width)]
        self.up = nn.Sequential(*up)
        self.tail = nn.Conv2d(width, channels, 3, 1, 1)
        nn.init.zeros_(self.tail.weight)
        nn.init.zeros_(self.tail.bias)

    def forward(self, lr: torch.Tensor) -> torch.Tensor:
        h = self.head(lr)
        h = h + self.body(h)  # SRGAN's skip over the residual blocks
        return bicubic(lr, self.scale) + self.tail(self.up(h))


class Upscaler(nn.Module):
    """What is exported: G clamped to the image range (training sees G unclamped, for its gradients)."""

    def __init__(self, generator: nn.Module):
        super().__init__()
        self.generator = generator

    def forward(self, lr: torch.Tensor) -> torch.Tensor:
        return self.generator(lr).clamp(-1, 1)


@register("srgan")
class SRGAN(GenerativeModel):
    network_names = ("G", "D")
    ema_names = ("G",)
    task = "upscale"

    def __init__(self, spec, data_shape, num_classes):
        super().__init__(spec, data_shape, num_classes)
        s = spec
        channels, height, width = self.data_shape
        self.lr_shape = (channels, height // s.scale, width // s.scale)
        self.G = SRGenerator(channels=channels, width=s.width, n_res=s.n_res, scale=s.scale)
        self.D = Discriminator(arch="conv", data_shape=self.data_shape, c_dim=0, width=s.width, depth=s.depth,
                               pac=1, sn=False, mbstd=False, resblocks=s.resblocks)

    def phases(self) -> list[Phase]:
        t = self.spec.train
        return [Phase("D", ("D",), self.d_phase, t.lr_d, repeats=t.n_critic),
                Phase("G", ("G",), self.g_phase, t.lr_g)]

    def degrade(self, hr: torch.Tensor) -> torch.Tensor:
        return degrade(hr, self.spec.scale)

    @torch.no_grad()
    def upscale(self, lr: torch.Tensor) -> torch.Tensor:
        """The evaluated (EMA) generator's full-size images in [-1, 1]."""
        return Upscaler(self.eval_net("G"))(lr)

    def d_phase(self, batch: Batch, ctx: StepContext) -> tuple[torch.Tensor, dict[str, float]]:
        hr, _ = batch
        with torch.no_grad():
            sr = self.G(self.degrade(hr))
        D = self.net("D")
        real, fake = D(hr), D(sr)
        loss = d_loss("ns", real, fake)
        return loss, {"D_loss": loss.detach(), "D_real": real.mean().detach(), "D_fake": fake.mean().detach()}

    def g_phase(self, batch: Batch, ctx: StepContext) -> tuple[torch.Tensor, dict[str, float]]:
        hr, _ = batch
        s = self.spec
        sr = self.net("G")(self.degrade(hr))
        pixel = F.l1_loss(sr, hr) if s.pixel_loss == "l1" else F.mse_loss(sr, hr)
        with torch.no_grad():
            target = self.D.features(hr)
        perceptual = (self.D.features(sr) - target).square().mean()
        adversarial = g_loss("ns", self.D(sr))
        loss = pixel + s.perceptual_weight * perceptual + s.adversarial_weight * adversarial
        return loss, {"G_loss": loss.detach(), "pixel": pixel.detach(), "perceptual": perceptual.detach(),
                      "adversarial": adversarial.detach()}

    # -- export -----------------------------------------------------------------
    def export_networks(self) -> dict[str, ExportNet]:
        """``upscaler`` lr -> hr (clamped G); ``bicubic`` lr -> the baseline, so that apps running on
        ONNX Runtime alone can show what the model adds. Example inputs: degraded random images."""
        gen = torch.Generator().manual_seed(1234)
        lr = self.degrade(torch.rand(EXPORT_BATCH, *self.data_shape, generator=gen) * 2 - 1)
        return {"upscaler": (Upscaler(self.eval_net("G")), (lr,), ["lr"], ["hr"]),
                "bicubic": (Bicubic(self.spec.scale), (lr,), ["lr"], ["hr"])}

    def card_io(self) -> dict:
        return {"scale": self.spec.scale, "input_shape": list(self.lr_shape), "data_shape": list(self.data_shape),
                "degradation": "average pooling by scale", "value_range": [-1.0, 1.0],
                "to_uint8": "round((x + 1) * 127.5)"}
