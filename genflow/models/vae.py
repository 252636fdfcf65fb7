"""Variational autoencoders: Gaussian encoder, Bernoulli or Gaussian decoder,
β weight with KL warm-up, class-conditional when c_dim > 0."""
from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from genflow.models.base import Batch, GenerativeModel, Phase, StepContext
from genflow.models.blocks import ConvGenerator, ConvTrunk, LabelEmbedding, MLPGenerator, MLPTrunk
from genflow.models.registry import register

LOG_2PI = math.log(2 * math.pi)


class Encoder(nn.Module):
    """x (+ one-hot c) -> (mu, logvar) of q(z | x, c)."""

    def __init__(self, *, arch: str, data_shape: tuple[int, ...], c_dim: int, z_dim: int, width: int, depth: int,
                 resblocks: bool = False):
        super().__init__()
        if arch == "conv":
            self.trunk = ConvTrunk(in_channels=data_shape[0], resolution=data_shape[1], width=width,
                                   resblocks=resblocks)
        else:
            self.trunk = MLPTrunk(in_dim=math.prod(data_shape), width=width, depth=depth)
        self.embed = LabelEmbedding(c_dim)
        self.head = nn.Linear(self.trunk.out_dim + c_dim, 2 * z_dim)

    def forward(self, x: torch.Tensor, c: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        mu, logvar = self.head(self.embed(self.trunk(x), c)).chunk(2, dim=1)
        return mu, logvar.clamp(-30.0, 20.0)


class Decoder(nn.Module):
    """z (+ c) -> parameters of p(x | z, c): Bernoulli logits, or a Gaussian mean with
    one learned scale (the σ-VAE of Rybkin et al. 2021, so β keeps its meaning)."""

    def __init__(self, *, arch: str, data_shape: tuple[int, ...], c_dim: int, z_dim: int, width: int, depth: int,
                 gaussian: bool, resblocks: bool = False):
        super().__init__()
        if arch == "conv":
            self.body = ConvGenerator(z_dim=z_dim, c_dim=c_dim, out_shape=data_shape, width=width, out_act=None,
                                      resblocks=resblocks)
        else:
            self.body = MLPGenerator(z_dim=z_dim, c_dim=c_dim, out_shape=data_shape, width=width, depth=depth)
        # only a Gaussian decoder has a scale: an unused parameter would stall DDP's reducer
        self.log_sigma = nn.Parameter(torch.zeros(())) if gaussian else None

    def forward(self, z: torch.Tensor, c: torch.Tensor | None = None) -> torch.Tensor:
        return self.body(z, c)


class MeanImage(nn.Module):
    """Decoder output -> the distribution's mean in data space (what samples show)."""

    def __init__(self, decoder: Decoder, likelihood: str, is_image: bool):
        super().__init__()
        self.decoder, self.bernoulli, self.is_image = decoder, likelihood == "bernoulli", is_image

    def forward(self, z: torch.Tensor, c: torch.Tensor | None = None) -> torch.Tensor:
        out = self.decoder(z, c)
        if self.bernoulli:
            return torch.sigmoid(out) * 2 - 1
        return out.clamp(-1, 1) if self.is_image else out


@register("vae")
class VAE(GenerativeModel):
    network_names = ("E", "G")
    has_likelihood = has_encoder = True

    def __init__(self, spec, data_shape, num_classes):
        super().__init__(spec, data_shape, num_classes)
        kw = dict(arch=spec.arch, data_shape=tuple(data_shape), c_dim=spec.c_dim, z_dim=spec.z_dim,
                  width=spec.width, depth=spec.depth, resblocks=spec.resblocks)
        self.E, self.G = Encoder(**kw), Decoder(**kw, gaussian=spec.likelihood == "gaussian")

    def phases(self) -> list[Phase]:
        return [Phase("VAE", ("E", "G"), self.vae_phase, self.spec.train.lr)]

    def nll(self, out: torch.Tensor, x: torch.Tensor, decoder: nn.Module | None = None) -> torch.Tensor:
        """-log p(x | z) per sample, in nats (pixels in [-1, 1] are read as [0, 1])."""
        if self.spec.likelihood == "bernoulli":
            target = (x + 1) / 2
            return F.binary_cross_entropy_with_logits(out, target, reduction="none").flatten(1).sum(1)
        log_sigma = (decoder or self.G).log_sigma
        per_dim = 0.5 * ((x - out) * torch.exp(-log_sigma)).square() + log_sigma + 0.5 * LOG_2PI
        return per_dim.flatten(1).sum(1)

    @staticmethod
    def kl(mu: torch.Tensor, logvar: torch.Tensor) -> torch.Tensor:
        return 0.5 * (mu.square() + logvar.exp() - 1 - logvar).sum(1)

    def kl_weight(self, step: int) -> float:
        warm = self.spec.kl_warmup_steps
        return self.spec.beta * (min(1.0, step / warm) if warm else 1.0)

    def vae_phase(self, batch: Batch, ctx: StepContext) -> tuple[torch.Tensor, dict[str, float]]:
        x, c = batch
        c = c if self.spec.c_dim else None
        mu, logvar = self.net("E")(x, c)
        z = mu + torch.exp(0.5 * logvar) * ctx.randn(x.shape[0], self.spec.z_dim)
        nll, kl = self.nll(self.net("G")(z, c), x), self.kl(mu, logvar)
        loss = (nll + self.kl_weight(ctx.step) * kl).mean()
        return loss, {"loss": loss.detach(), "nll": nll.mean().detach(), "kl": kl.mean().detach()}

    @torch.no_grad()
    def elbo(self, x: torch.Tensor, c: torch.Tensor | None, generator: torch.Generator) -> torch.Tensor:
        """Per-sample ELBO (β = 1) in nats with one posterior sample."""
        c = c if self.spec.c_dim else None
        mu, logvar = self.E(x, c)
        z = mu + torch.exp(0.5 * logvar) * torch.randn(mu.shape, generator=generator)
        return -(self.nll(self.G(z, c), x) + self.kl(mu, logvar))

    @torch.no_grad()
    def iwae_bound(self, x: torch.Tensor, c: torch.Tensor | None, k: int, generator: torch.Generator) -> torch.Tensor:
        """Per-sample importance-weighted bound on log p(x) with ``k`` posterior samples (Burda et
        al. 2016): log mean_k p(x | z_k) p(z_k) / q(z_k | x). k = 1 is the ELBO; it tightens with k."""
        eps = torch.randn(x.shape[0], k, self.spec.z_dim, generator=generator)
        return self.iwae_from_noise(x, c, eps)

    def iwae_from_noise(self, x: torch.Tensor, c: torch.Tensor | None, eps: torch.Tensor) -> torch.Tensor:
        """The IWAE bound for given standard-normal draws ``eps`` (N, K, z_dim): deterministic,
        so the exported scorer can be checked against it."""
        c = c if self.spec.c_dim else None
        n, k, _ = eps.shape
        mu, logvar = self.E(x, c)
        z = mu[:, None] + torch.exp(0.5 * logvar)[:, None] * eps
        log_q = -0.5 * (eps.square() + logvar[:, None] + LOG_2PI).sum(-1)
        log_prior = -0.5 * (z.square() + LOG_2PI).sum(-1)
        repeat = lambda t: t.repeat_interleave(k, dim=0)  # noqa: E731  (row i's K draws side by side)
        nll = self.nll(self.G(z.reshape(n * k, -1), None if c is None else repeat(c)), repeat(x)).reshape(n, k)
        return torch.logsumexp(log_prior - log_q - nll, dim=1) - math.log(k)

    ANOMALY_IWAE_SAMPLES = 16

    def anomaly_noise_shape(self) -> tuple[int, ...]:
        return (self.ANOMALY_IWAE_SAMPLES, self.spec.z_dim)

    def anomaly_score_from_noise(self, x: torch.Tensor, eps: torch.Tensor) -> torch.Tensor:
        """Minus the importance-weighted log-likelihood bound: improbable images are anomalies."""
        return -self.iwae_from_noise(x, None, eps)

    @torch.no_grad()
    def reconstruct(self, x: torch.Tensor, c: torch.Tensor | None = None) -> torch.Tensor:
        c = c if self.spec.c_dim else None
        mu, _ = self.E(x, c)
        return self.decoder()(mu, c)

    def decoder(self) -> nn.Module:
        return MeanImage(self.eval_net("G"), self.spec.likelihood, self.is_image)
