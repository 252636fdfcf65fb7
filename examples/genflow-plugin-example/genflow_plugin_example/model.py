"""The ``tinygan`` family's networks and training phases, driven by genflow's engine like its own
families: D's phase, then G's, each with its own optimizer (genflow/models/base.py)."""
from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from genflow.models.base import GenerativeModel, Phase


def mlp(n_in: int, width: int, depth: int, n_out: int) -> nn.Sequential:
    layers, size = [], n_in
    for _ in range(depth):
        layers += [nn.Linear(size, width), nn.LeakyReLU(0.2)]
        size = width
    return nn.Sequential(*layers, nn.Linear(size, n_out))


class Generator(nn.Module):
    """z -> a sample of the data's shape (images in [-1, 1] through tanh); ``c`` is ignored."""

    def __init__(self, z_dim: int, width: int, depth: int, data_shape: tuple[int, ...]):
        super().__init__()
        self.data_shape, self.is_image = data_shape, len(data_shape) == 3
        self.body = mlp(z_dim, width, depth, math.prod(data_shape))

    def forward(self, z: torch.Tensor, c: torch.Tensor | None = None) -> torch.Tensor:
        x = self.body(z).reshape(-1, *self.data_shape)
        return torch.tanh(x) if self.is_image else x


class Discriminator(nn.Module):
    def __init__(self, width: int, depth: int, data_shape: tuple[int, ...]):
        super().__init__()
        self.body = mlp(math.prod(data_shape), width, depth, 1)

    def forward(self, x: torch.Tensor, c: torch.Tensor | None = None) -> torch.Tensor:
        return self.body(x.flatten(1)).squeeze(1)


def d_loss(kind: str, real: torch.Tensor, fake: torch.Tensor) -> torch.Tensor:
    if kind == "hinge":
        return F.relu(1 - real).mean() + F.relu(1 + fake).mean()
    return 0.5 * ((real - 1).square().mean() + fake.square().mean())


def g_loss(kind: str, fake: torch.Tensor) -> torch.Tensor:
    return -fake.mean() if kind == "hinge" else 0.5 * (fake - 1).square().mean()


class TinyGan(GenerativeModel):
    network_names = ("G", "D")

    def __init__(self, spec, data_shape, num_classes):
        super().__init__(spec, data_shape, num_classes)
        self.G = Generator(spec.z_dim, spec.width, spec.depth, self.data_shape)
        self.D = Discriminator(spec.width, spec.depth, self.data_shape)

    def phases(self) -> list[Phase]:
        train = self.spec.train
        return [Phase("D", ("D",), self.d_phase, train.lr_d, repeats=train.n_critic),
                Phase("G", ("G",), self.g_phase, train.lr_g)]

    def d_phase(self, batch, ctx):
        x, _ = batch
        with torch.no_grad():  # noise from the step context: reproducible, resumable, worker-count free
            fake = self.net("G")(ctx.randn(x.shape[0], self.spec.z_dim))
        loss = d_loss(self.spec.loss, self.net("D")(x), self.net("D")(fake))
        return loss, {"D_loss": loss.detach()}

    def g_phase(self, batch, ctx):
        x, _ = batch
        fake = self.net("G")(ctx.randn(x.shape[0], self.spec.z_dim))
        loss = g_loss(self.spec.loss, self.net("D")(fake))
        return loss, {"G_loss": loss.detach()}

    def anomaly_score_from_noise(self, x: torch.Tensor, eps: torch.Tensor) -> torch.Tensor:
        """Minus D's realness score (what the export's scorer computes)."""
        return -self.D(x)

    def decoder(self) -> nn.Module:
        return self.eval_net("G")
