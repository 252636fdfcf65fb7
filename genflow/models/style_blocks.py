"""StyleGAN2 layers: equalized-lr linear, the mapping network, modulated convolutions and the
"skip" synthesis network (Karras et al. 2020, "Analyzing and Improving the Image Quality of
StyleGAN").

Weights are stored N(0, 1) and scaled at run time by 1/sqrt(fan_in) ("equalized learning
rate"), so Adam's per-parameter step is the same relative change for every layer.
"""
from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from genflow.models.blocks import LabelEmbedding, conv_levels

LRELU_GAIN = math.sqrt(2.0)  # keeps the activations' second moment through LeakyReLU(0.2)


class EqualLinear(nn.Module):
    """y = x W^T * (lr_mul / sqrt(in)) + b * lr_mul; ``lr_mul`` < 1 slows a layer down (mapping)."""

    def __init__(self, in_dim: int, out_dim: int, *, bias_init: float = 0.0, lr_mul: float = 1.0,
                 activate: bool = False):
        super().__init__()
        self.weight = nn.Parameter(torch.randn(out_dim, in_dim) / lr_mul)
        self.bias = nn.Parameter(torch.full((out_dim,), bias_init / lr_mul))
        self.scale, self.lr_mul, self.activate = lr_mul / math.sqrt(in_dim), lr_mul, activate

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = F.linear(x, self.weight * self.scale, self.bias * self.lr_mul)
        return F.leaky_relu(y, 0.2) * LRELU_GAIN if self.activate else y


class MappingNetwork(nn.Module):
    """z (+ one-hot c) -> w: pixel norm of z, then ``layers`` equalized linear + LeakyReLU."""

    def __init__(self, *, z_dim: int, c_dim: int, w_dim: int, layers: int, lr_mul: float):
        super().__init__()
        self.embed = LabelEmbedding(c_dim)
        dims = [z_dim + c_dim] + [w_dim] * layers
        self.net = nn.Sequential(*[EqualLinear(a, b, lr_mul=lr_mul, activate=True) for a, b in zip(dims, dims[1:])])

    def forward(self, z: torch.Tensor, c: torch.Tensor | None = None) -> torch.Tensor:
        z = z * torch.rsqrt(z.square().mean(dim=1, keepdim=True) + 1e-8)
        return self.net(self.embed(z, c))


class ModulatedConv(nn.Module):
    """StyleGAN2's modulated (and demodulated) conv, written as *input* modulation.

    StyleGAN2 scales the weight per sample, w'[n,o,i,k] = w[o,i,k] s[n,i], and demodulates
    by d[n,o] = 1/sqrt(sum_{i,k} w'[n,o,i,k]^2 + eps). Since the conv is linear in x,
    conv(x, w') = conv(x * s, w): one conv with the shared weight, then the output scaled by
    d. Same result, but a plain batched conv: no grouped conv with groups = batch size, so
    the exporters see a dynamic batch."""

    def __init__(self, in_ch: int, out_ch: int, kernel: int, w_dim: int, demodulate: bool = True):
        super().__init__()
        self.weight = nn.Parameter(torch.randn(out_ch, in_ch, kernel, kernel))
        self.affine = EqualLinear(w_dim, in_ch, bias_init=1.0)  # styles start at 1: the plain conv
        self.scale, self.padding, self.demodulate = 1.0 / math.sqrt(in_ch * kernel * kernel), kernel // 2, demodulate

    def forward(self, x: torch.Tensor, w: torch.Tensor, bias: torch.Tensor | None = None,
                gain: float = 1.0) -> torch.Tensor:
        """conv * gain (+ bias): the caller's gain and bias are folded into the demodulation's
        multiply, one pass over the output instead of three (CPU time is memory-bound here)."""
        styles = self.affine(w)  # (N, in_ch)
        weight = self.weight * self.scale
        y = F.conv2d(x * styles[:, :, None, None], weight, padding=self.padding)
        if not self.demodulate:
            y = y * gain if gain != 1.0 else y
            return y if bias is None else y + bias
        # sum_{i,k} (w[o,i,k] s[n,i])^2 = (s^2) @ (sum_k w^2)^T
        demod = torch.rsqrt(styles.square() @ weight.square().sum(dim=(2, 3)).t() + 1e-8)
        scale = (demod * gain)[:, :, None, None]
        return y * scale if bias is None else torch.addcmul(bias, y, scale)


class StyleLayer(nn.Module):
    """Modulated 3x3 conv (after an optional 2x upsampling), per-pixel noise with a learned
    per-channel strength, bias, LeakyReLU. ``noise_const`` is the fixed noise of evaluation
    and export (registered at init, so samples and exported networks are deterministic)."""

    def __init__(self, in_ch: int, out_ch: int, w_dim: int, resolution: int, upsample: bool):
        super().__init__()
        self.conv = ModulatedConv(in_ch, out_ch, 3, w_dim)
        self.upsample, self.resolution = upsample, resolution
        self.noise_strength = nn.Parameter(torch.zeros(1, out_ch, 1, 1))
        self.bias = nn.Parameter(torch.zeros(1, out_ch, 1, 1))
        self.register_buffer("noise_const", torch.randn(1, 1, resolution, resolution))

    def forward(self, x: torch.Tensor, w: torch.Tensor, noise: torch.Tensor | None = None) -> torch.Tensor:
        if self.upsample:
            x = upsample2x(x)
        # LeakyReLU is positively homogeneous: lrelu(a) * gain = lrelu(a * gain), so the gain
        # goes into the conv's output scale, the bias and the noise strength
        y = self.conv(x, w, self.bias * LRELU_GAIN, LRELU_GAIN)
        y = y + (self.noise_strength * LRELU_GAIN) * (self.noise_const if noise is None else noise)
        return F.leaky_relu(y, 0.2)


class ToRGB(nn.Module):
    """Modulated 1x1 conv to image channels, no demodulation (the output scale is free)."""

    def __init__(self, in_ch: int, channels: int, w_dim: int):
        super().__init__()
        self.conv = ModulatedConv(in_ch, channels, 1, w_dim, demodulate=False)
        self.bias = nn.Parameter(torch.zeros(1, channels, 1, 1))

    def forward(self, x: torch.Tensor, w: torch.Tensor) -> torch.Tensor:
        return self.conv(x, w, self.bias)


def upsample2x(x: torch.Tensor) -> torch.Tensor:
    # bilinear = the [1, 3, 3, 1] FIR upsampling of StyleGAN2 away from the border; an ONNX Resize
    return F.interpolate(x, scale_factor=2.0, mode="bilinear", align_corners=False)


def level_channels(width: int, levels: int) -> list[int]:
    """Channels at 4 px, 8 px, ...: doubling towards 4x4 like the DCGAN generator (blocks.py)."""
    return [width * 2 ** max(levels - 1 - i, 0) for i in range(levels + 1)]


class SynthesisNetwork(nn.Module):
    """ws (N, num_ws, w_dim) -> image: learned 4x4 constant, one style layer at 4 px, two per
    finer level, and a toRGB at every level whose outputs are upsampled and summed ("skip").

    Which w drives what: ws[0] the 4 px conv; at level i >= 1 (2^(i+2) px) ws[2i-1] and ws[2i]
    its two convs; ws[2i+1] the toRGB of level i, shared with level i+1's first conv as in
    StyleGAN2; num_ws = 2 * levels + 2."""

    def __init__(self, *, out_shape: tuple[int, int, int], w_dim: int, width: int):
        super().__init__()
        channels, resolution, _ = out_shape
        levels = conv_levels(resolution)
        ch = level_channels(width, levels)
        self.num_ws, self.resolutions = 2 * levels + 2, [4 * 2 ** i for i in range(levels + 1)]
        self.const = nn.Parameter(torch.randn(1, ch[0], 4, 4))
        self.layers = nn.ModuleList([StyleLayer(ch[0], ch[0], w_dim, 4, upsample=False)])
        for i in range(1, levels + 1):
            res = self.resolutions[i]
            self.layers.append(StyleLayer(ch[i - 1], ch[i], w_dim, res, upsample=True))
            self.layers.append(StyleLayer(ch[i], ch[i], w_dim, res, upsample=False))
        self.to_rgb = nn.ModuleList([ToRGB(c, channels, w_dim) for c in ch])

    def noise_shapes(self) -> list[tuple[int, int, int]]:
        """Per-sample shape of each layer's noise input, in layer order (what training draws)."""
        return [(1, layer.resolution, layer.resolution) for layer in self.layers]

    def forward(self, ws: torch.Tensor, noise: list[torch.Tensor] | None = None) -> torch.Tensor:
        noise = noise if noise is not None else [None] * len(self.layers)
        x = self.const.expand(ws.shape[0], -1, -1, -1)
        x = self.layers[0](x, ws[:, 0], noise[0])
        img = self.to_rgb[0](x, ws[:, 1])
        for i in range(1, len(self.to_rgb)):
            x = self.layers[2 * i - 1](x, ws[:, 2 * i - 1], noise[2 * i - 1])
            x = self.layers[2 * i](x, ws[:, 2 * i], noise[2 * i])
            img = upsample2x(img) + self.to_rgb[i](x, ws[:, 2 * i + 1])
        # tanh, not StyleGAN2's unbounded output: samples are in [-1, 1] in training and
        # evaluation alike (a clamp only at evaluation would make eval and train differ)
        return torch.tanh(img)
