"""Network building blocks shared by the model families.

Two architectures: an MLP (2-D points, or flattened tiny images) and a
DCGAN-style conv stack for power-of-two images from 8 to 64 px. Generators
and discriminators take an optional class label ``c`` (``c_dim = 0`` means
unconditional: the same code path with the label parts switched off).
"""
from __future__ import annotations

import math

import torch
from torch import nn
from torch.nn.utils.parametrizations import spectral_norm as _sn


def maybe_sn(layer: nn.Module, enabled: bool) -> nn.Module:
    return _sn(layer) if enabled else layer


def conv_levels(resolution: int) -> int:
    """Number of 2x up/down-sampling steps between 4x4 and ``resolution``."""
    levels = int(math.log2(resolution)) - 2
    if resolution < 8 or 2 ** (levels + 2) != resolution:
        raise ValueError(f"conv models need a power-of-two image size >= 8, got {resolution}")
    return levels


class LabelEmbedding(nn.Module):
    """One-hot code of ``c`` appended to a vector (identity when c_dim = 0)."""

    def __init__(self, c_dim: int):
        super().__init__()
        self.c_dim = c_dim

    def forward(self, h: torch.Tensor, c: torch.Tensor | None) -> torch.Tensor:
        if not self.c_dim:
            return h
        if c is None:
            raise ValueError("this model is conditional (c_dim > 0): pass class labels c")
        return torch.cat([h, nn.functional.one_hot(c, self.c_dim).to(h.dtype)], dim=1)


class MinibatchStd(nn.Module):
    """Appends the mean feature std over groups of the batch (ProGAN), a mode-collapse cue."""

    def __init__(self, group_size: int = 4):
        super().__init__()
        self.group_size = group_size

    def forward(self, h: torch.Tensor) -> torch.Tensor:
        n = h.shape[0]
        g = min(self.group_size, n)
        while n % g:
            g -= 1
        y = h.reshape(g, -1, *h.shape[1:])
        # written out: torch.var over the leading dim takes a slow CPU path (~30x slower here)
        var = (y - y.mean(dim=0)).square().mean(dim=0)
        std = (var + 1e-8).sqrt()
        std = std.flatten(1).mean(dim=1)  # one value per group member position
        std = std.repeat(g).reshape(n, 1, *([1] * (h.dim() - 2)))
        return torch.cat([h, std.expand(n, 1, *h.shape[2:])], dim=1)


def mlp(in_dim: int, width: int, depth: int, out_dim: int, act: nn.Module, sn: bool = False,
        norm: bool = False) -> nn.Sequential:
    """``depth`` hidden layers of ``width`` (+ BatchNorm before the activation with ``norm``:
    then the hidden layers have no bias, which BatchNorm's shift replaces), then a linear head."""
    layers: list[nn.Module] = []
    for i in range(depth):
        layers.append(maybe_sn(nn.Linear(in_dim if i == 0 else width, width, bias=not norm), sn))
        layers += [nn.BatchNorm1d(width), act] if norm else [act]
    return nn.Sequential(*layers, maybe_sn(nn.Linear(width if depth else in_dim, out_dim), sn))


class MLPGenerator(nn.Module):
    """z (+ one-hot c) -> MLP -> points, or images in [-1, 1] with ``out_act='tanh'``;
    ``norm``: BatchNorm in every hidden layer (PacGAN's and VEEGAN's 2-D generator)."""

    def __init__(self, *, z_dim: int, c_dim: int, out_shape: tuple[int, ...], width: int, depth: int,
                 out_act: str | None = None, norm: bool = False):
        super().__init__()
        self.out_shape = out_shape
        self.embed = LabelEmbedding(c_dim)
        self.net = mlp(z_dim + c_dim, width, depth, math.prod(out_shape), nn.ReLU(), norm=norm)
        self.out_act = nn.Tanh() if out_act == "tanh" else nn.Identity()

    def forward(self, z: torch.Tensor, c: torch.Tensor | None = None) -> torch.Tensor:
        x = self.out_act(self.net(self.embed(z, c)))
        return x.reshape(-1, *self.out_shape)


class ResBlock(nn.Module):
    """x + f(x) with two 3x3 convs at constant width (for the deeper 32/64 px models).

    ``norm`` (BatchNorm) in generators; discriminators use none, optionally spectral norm."""

    def __init__(self, channels: int, *, norm: bool, act: nn.Module, sn: bool = False):
        super().__init__()
        layers: list[nn.Module] = []
        for _ in range(2):
            layers.append(maybe_sn(nn.Conv2d(channels, channels, 3, 1, 1, bias=not norm), sn))
            if norm:
                layers.append(nn.BatchNorm2d(channels))
            layers.append(act)
        self.body = nn.Sequential(*layers[:-1])  # no activation after the sum's last conv
        self.act = act

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.act(x + self.body(x))


class ConvGenerator(nn.Module):
    """DCGAN generator: z (+ c) -> 4x4 -> [ConvTranspose, BN, ReLU (+ ResBlock)] x levels -> image."""

    def __init__(self, *, z_dim: int, c_dim: int, out_shape: tuple[int, int, int], width: int,
                 out_act: str | None = "tanh", resblocks: bool = False):
        super().__init__()
        channels, resolution, _ = out_shape
        levels = conv_levels(resolution)
        self.embed = LabelEmbedding(c_dim)
        self.base = width * 2 ** (levels - 1) if levels else width
        self.fc = nn.Sequential(nn.Linear(z_dim + c_dim, self.base * 16), nn.BatchNorm1d(self.base * 16), nn.ReLU())
        layers: list[nn.Module] = []
        ch = self.base
        for i in range(levels):
            out_ch = max(width, ch // 2) if i < levels - 1 else width
            layers += [nn.ConvTranspose2d(ch, out_ch, 4, 2, 1, bias=False), nn.BatchNorm2d(out_ch), nn.ReLU()]
            if resblocks:
                layers.append(ResBlock(out_ch, norm=True, act=nn.ReLU()))
            ch = out_ch
        layers.append(nn.Conv2d(ch, channels, 3, 1, 1))
        if out_act == "tanh":
            layers.append(nn.Tanh())
        self.net = nn.Sequential(*layers)

    def forward(self, z: torch.Tensor, c: torch.Tensor | None = None) -> torch.Tensor:
        h = self.fc(self.embed(z, c)).reshape(-1, self.base, 4, 4)
        return self.net(h)


class ConvTrunk(nn.Module):
    """Image -> features: [(ResBlock,) Conv 4x4 stride 2, LeakyReLU] x levels down to 4x4, flattened."""

    def __init__(self, *, in_channels: int, resolution: int, width: int, sn: bool = False, mbstd: bool = False,
                 resblocks: bool = False):
        super().__init__()
        levels = conv_levels(resolution)
        layers: list[nn.Module] = [maybe_sn(nn.Conv2d(in_channels, width, 3, 1, 1), sn), nn.LeakyReLU(0.2)]
        ch = width
        for _ in range(levels):
            if resblocks:
                layers.append(ResBlock(ch, norm=False, act=nn.LeakyReLU(0.2), sn=sn))
            layers += [maybe_sn(nn.Conv2d(ch, ch * 2, 4, 2, 1), sn), nn.LeakyReLU(0.2)]
            ch *= 2
        if mbstd:
            layers.append(MinibatchStd())
            layers += [maybe_sn(nn.Conv2d(ch + 1, ch, 3, 1, 1), sn), nn.LeakyReLU(0.2)]
        self.net = nn.Sequential(*layers)
        self.out_dim = ch * 16

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x).flatten(1)


class MLPTrunk(nn.Module):
    """Flattened input -> hidden features (LeakyReLU MLP), optional minibatch std."""

    def __init__(self, *, in_dim: int, width: int, depth: int, sn: bool = False, mbstd: bool = False):
        super().__init__()
        hidden = mlp(in_dim, width, depth - 1, width, nn.LeakyReLU(0.2), sn)
        self.net = nn.Sequential(*hidden, nn.LeakyReLU(0.2))
        self.mbstd = MinibatchStd() if mbstd else None
        self.out_dim = width + (1 if mbstd else 0)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = self.net(x.flatten(1))
        return self.mbstd(h) if self.mbstd is not None else h


class Maxout(nn.Module):
    """Linear to ``out_dim * pieces`` units, then the max over each group of ``pieces``
    (Goodfellow et al. 2013): a learned convex piecewise-linear activation per unit."""

    def __init__(self, in_dim: int, out_dim: int, pieces: int, sn: bool = False):
        super().__init__()
        self.out_dim, self.pieces = out_dim, pieces
        self.linear = maybe_sn(nn.Linear(in_dim, out_dim * pieces), sn)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.linear(x).reshape(x.shape[0], self.out_dim, self.pieces).amax(dim=2)


class MaxoutTrunk(nn.Module):
    """Flattened input -> ``depth`` maxout layers of ``width`` units (PacGAN's 2-D critic:
    3 x 200 units x 5 pieces, no normalisation), optional minibatch std."""

    def __init__(self, *, in_dim: int, width: int, depth: int, pieces: int, sn: bool = False, mbstd: bool = False):
        super().__init__()
        self.net = nn.Sequential(*[Maxout(in_dim if i == 0 else width, width, pieces, sn) for i in range(depth)])
        self.mbstd = MinibatchStd() if mbstd else None
        self.out_dim = width + (1 if mbstd else 0)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = self.net(x.flatten(1))
        return self.mbstd(h) if self.mbstd is not None else h
