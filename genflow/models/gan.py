"""GANs: the loss family, R1 / gradient penalty, spectral norm, PacGAN, minibatch std,
class-conditional G with a projection discriminator (c_dim = 0: unconditional)."""
from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from genflow.models.base import Batch, GenerativeModel, Phase, StepContext
from genflow.models.blocks import ConvGenerator, ConvTrunk, MaxoutTrunk, MLPGenerator, MLPTrunk, maybe_sn
from genflow.models.registry import register


def mlp_trunk(*, in_dim: int, width: int, depth: int, sn: bool, mbstd: bool, maxout_pieces: int) -> nn.Module:
    """An MLP D's hidden layers: LeakyReLU units, or maxout units with ``maxout_pieces`` > 0."""
    if maxout_pieces:
        return MaxoutTrunk(in_dim=in_dim, width=width, depth=depth, pieces=maxout_pieces, sn=sn, mbstd=mbstd)
    return MLPTrunk(in_dim=in_dim, width=width, depth=depth, sn=sn, mbstd=mbstd)


class Discriminator(nn.Module):
    """Trunk -> score; PacGAN packs ``pac`` consecutive samples into one input;
    with c_dim > 0 a projection term <embed(c), features> is added (Miyato & Koyama 2018);
    ``maxout_pieces`` > 0: an MLP trunk of maxout units instead of LeakyReLU ones.

    ``pac_embed`` (MLP only): the first depth - 1 layers read each sample of a pack alone, with
    shared weights, and the last layer reads the pack's concatenated features. A plain packed MLP
    must first learn to keep the pack's samples apart (each first-layer unit mixes all of them),
    which on grid25 it had not done after thousands of steps (docs/results/mixtures.md)."""

    def __init__(self, *, arch: str, data_shape: tuple[int, ...], c_dim: int, width: int, depth: int,
                 pac: int, sn: bool, mbstd: bool, resblocks: bool = False, maxout_pieces: int = 0,
                 pac_embed: bool = False):
        super().__init__()
        self.pac, self.data_shape = pac, data_shape
        self.per_sample = None
        if arch == "conv":
            channels, resolution, _ = data_shape
            self.trunk = ConvTrunk(in_channels=channels * pac, resolution=resolution, width=width, sn=sn,
                                   mbstd=mbstd, resblocks=resblocks)
        elif pac_embed:
            self.per_sample = mlp_trunk(in_dim=math.prod(data_shape), width=width, depth=depth - 1, sn=sn,
                                        mbstd=False, maxout_pieces=maxout_pieces)
            self.trunk = mlp_trunk(in_dim=width * pac, width=width, depth=1, sn=sn, mbstd=mbstd,
                                   maxout_pieces=maxout_pieces)
        else:
            self.trunk = mlp_trunk(in_dim=math.prod(data_shape) * pac, width=width, depth=depth, sn=sn,
                                   mbstd=mbstd, maxout_pieces=maxout_pieces)
        self.head = maybe_sn(nn.Linear(self.trunk.out_dim, 1), sn)
        self.proj = maybe_sn(nn.Embedding(c_dim, self.trunk.out_dim), sn) if c_dim else None

    def features(self, x: torch.Tensor) -> torch.Tensor:
        """Trunk features of (packed) inputs: the learned similarity space of VAE-GAN."""
        n = x.shape[0] // self.pac
        if self.per_sample is not None:
            x = self.per_sample(x.flatten(1))
        if len(self.data_shape) == 3 and self.per_sample is None:
            x = x.reshape(n, self.pac * self.data_shape[0], *self.data_shape[1:])
        else:
            x = x.reshape(n, -1)
        return self.trunk(x)

    def forward(self, x: torch.Tensor, c: torch.Tensor | None = None) -> torch.Tensor:
        n = x.shape[0] // self.pac
        h = self.features(x)
        score = self.head(h).squeeze(1)
        if self.proj is not None:
            emb = self.proj(c).reshape(n, self.pac, -1).sum(dim=1)
            score = score + (emb * h).sum(dim=1)
        return score


def generator(s, data_shape: tuple[int, ...], norm: bool = False) -> nn.Module:
    """The GAN generator of spec ``s``: samples in data space (images in [-1, 1] via tanh);
    ``norm``: BatchNorm in an MLP G's hidden layers (a conv G always has it)."""
    if s.arch == "conv":
        return ConvGenerator(z_dim=s.z_dim, c_dim=s.c_dim, out_shape=data_shape, width=s.width, resblocks=s.resblocks)
    return MLPGenerator(z_dim=s.z_dim, c_dim=s.c_dim, out_shape=data_shape, width=s.width, depth=s.depth,
                        out_act="tanh" if len(data_shape) == 3 else None, norm=norm)


def d_loss(kind: str, real: torch.Tensor, fake: torch.Tensor) -> torch.Tensor:
    if kind in ("ns", "minimax"):
        return F.softplus(-real).mean() + F.softplus(fake).mean()
    if kind == "lsgan":
        return 0.5 * ((real - 1).square().mean() + fake.square().mean())
    if kind == "hinge":
        return F.relu(1 - real).mean() + F.relu(1 + fake).mean()
    if kind == "wgan-gp":
        return fake.mean() - real.mean()
    raise ValueError(f"unknown GAN loss {kind!r}")


def g_loss(kind: str, fake: torch.Tensor) -> torch.Tensor:
    if kind == "ns":
        return F.softplus(-fake).mean()
    if kind == "minimax":  # minimise log(1 - D(G(z))): saturates early, kept for comparison
        return -F.softplus(fake).mean()
    if kind == "lsgan":
        return 0.5 * (fake - 1).square().mean()
    return -fake.mean()  # hinge and WGAN


def scored_d_loss(D: nn.Module, x: torch.Tensor, fake: torch.Tensor, c: torch.Tensor | None,
                  kind: str) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
    """D's loss on a real and a fake batch, with the logs every GAN-style D phase reports."""
    real_score, fake_score = D(x, c), D(fake, c)
    loss = d_loss(kind, real_score, fake_score)
    return loss, {"D_loss": loss.detach(), "D_real": real_score.mean().detach(), "D_fake": fake_score.mean().detach()}


def input_gradient_sq(D: nn.Module, x: torch.Tensor, c: torch.Tensor | None) -> torch.Tensor:
    """Per-sample ||dD/dx||^2, with a graph so the penalty can be back-propagated.

    Computed on this process's batch only: under DDP the penalty's parameter
    gradients are per process and are averaged with the rest by DDP."""
    x = x.detach().requires_grad_(True)
    (grad,) = torch.autograd.grad(D(x, c).sum(), x, create_graph=True)
    return grad.flatten(1).square().sum(dim=1)


@register("gan")
class GAN(GenerativeModel):
    network_names = ("G", "D")

    @property
    def scores_single_images(self) -> bool:
        return super().scores_single_images and self.spec.pac == 1

    def __init__(self, spec, data_shape, num_classes):
        super().__init__(spec, data_shape, num_classes)
        s = spec
        self.G = generator(s, data_shape, norm=s.g_batchnorm)
        self.D = Discriminator(arch=s.arch, data_shape=data_shape, c_dim=s.c_dim, width=s.d_width or s.width,
                               depth=s.d_depth or s.depth, pac=s.pac, sn=s.spectral_norm, mbstd=s.mbstd,
                               resblocks=s.resblocks, maxout_pieces=s.maxout_pieces if s.d_act == "maxout" else 0,
                               pac_embed=s.pac_embed)
        # With one D step per G step, the G step scores the D step's fake batch, as the DCGAN
        # paper and PyTorch's example do: G runs forward once per step instead of twice. The
        # batch comes from the D phase's (seed, step) noise, so runs stay independent of the
        # worker count and resumable from a step. With n_critic > 1, G draws fresh noise.
        self._reuse_fake, self._fake_for_g = s.train.n_critic == 1, None

    def phases(self) -> list[Phase]:
        t = self.spec.train
        return [Phase("D", ("D",), self.d_phase, t.lr_d, repeats=t.n_critic,
                      tracks=("G",) if self._reuse_fake else ()),
                Phase("G", ("G",), self.g_phase, t.lr_g)]

    def _fake(self, n: int, c: torch.Tensor | None, ctx: StepContext) -> torch.Tensor:
        return self.net("G")(ctx.randn(n, self.spec.z_dim), c if self.spec.c_dim else None)

    def d_phase(self, batch: Batch, ctx: StepContext) -> tuple[torch.Tensor, dict[str, float]]:
        x, c = batch
        c = c if self.spec.c_dim else None
        if self._reuse_fake:  # with G's graph, for the G phase; D's loss sees it detached
            self._fake_for_g = self._fake(x.shape[0], c, ctx)
            fake = self._fake_for_g.detach()
        else:
            with torch.no_grad():
                fake = self._fake(x.shape[0], c, ctx)
        loss, logs = scored_d_loss(self.net("D"), x, fake, c, self.spec.loss)
        if self.spec.loss == "wgan-gp" and self.spec.gp_lambda > 0:
            alpha = ctx.rand(x.shape[0], *([1] * (x.dim() - 1)))
            mixed = alpha * x + (1 - alpha) * fake
            gp = (input_gradient_sq(self.D, mixed, c).sqrt() - 1).square().mean()
            loss = loss + self.spec.gp_lambda * gp
            logs["gp"] = gp.detach()
        if self.spec.r1_gamma > 0:
            r1 = input_gradient_sq(self.D, x, c).mean()
            loss = loss + 0.5 * self.spec.r1_gamma * r1
            logs["r1"] = r1.detach()
        return loss, logs

    def g_phase(self, batch: Batch, ctx: StepContext) -> tuple[torch.Tensor, dict[str, float]]:
        x, c = batch
        c = c if self.spec.c_dim else None
        fake, self._fake_for_g = self._fake_for_g, None
        if fake is None:
            fake = self._fake(x.shape[0], c, ctx)
        fake_score = self.net("D")(fake, c)
        loss = g_loss(self.spec.loss, fake_score)
        return loss, {"G_loss": loss.detach()}

    def anomaly_score_from_noise(self, x: torch.Tensor, eps: torch.Tensor) -> torch.Tensor:
        """Minus D's realness score: the critic learned what training images look like."""
        return -self.D(x)

    def decoder(self) -> nn.Module:
        return self.eval_net("G")
