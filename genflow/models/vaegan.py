"""VAE-GAN (Larsen et al. 2016): a VAE whose reconstruction error is measured in the
feature space of a GAN discriminator, trained jointly with that discriminator.

Three phases, each updating only its own network:
  D  the GAN loss on real images vs. reconstructions and prior samples;
  E  KL(q(z|x) || p(z)) + feature-space reconstruction error;
  G  gamma * feature-space reconstruction error + non-saturating GAN loss.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from genflow.models.base import Batch, GenerativeModel, Phase, StepContext
from genflow.models.gan import Discriminator, generator
from genflow.models.registry import register
from genflow.models.vae import VAE, Encoder


@register("vaegan")
class VAEGAN(GenerativeModel):
    network_names = ("E", "G", "D")
    has_encoder = True

    def __init__(self, spec, data_shape, num_classes):
        super().__init__(spec, data_shape, num_classes)
        s = spec
        self.E = Encoder(arch=s.arch, data_shape=tuple(data_shape), c_dim=s.c_dim, z_dim=s.z_dim,
                         width=s.width, depth=s.depth, resblocks=s.resblocks)
        self.G = generator(s, data_shape)
        self.D = Discriminator(arch=s.arch, data_shape=data_shape, c_dim=s.c_dim, width=s.width, depth=s.depth,
                               pac=1, sn=s.spectral_norm, mbstd=False, resblocks=s.resblocks)

    def phases(self) -> list[Phase]:
        t = self.spec.train
        return [Phase("D", ("D",), self.d_phase, t.lr_d), Phase("E", ("E",), self.e_phase, t.lr_g),
                Phase("G", ("G",), self.g_phase, t.lr_g)]

    def _encode(self, x, c, ctx: StepContext):
        mu, logvar = self.net("E")(x, c)
        return mu, logvar, mu + torch.exp(0.5 * logvar) * ctx.randn(x.shape[0], self.spec.z_dim)

    def _feature_error(self, x: torch.Tensor, recon: torch.Tensor) -> torch.Tensor:
        """Gaussian log-likelihood in D's feature space, up to constants: per-sample SSE."""
        with torch.no_grad():
            target = self.D.features(x)
        return (self.D.features(recon) - target).square().sum(1)

    def d_phase(self, batch: Batch, ctx: StepContext):
        x, c = batch
        c = c if self.spec.c_dim else None
        with torch.no_grad():
            _, _, z = self._encode(x, c, ctx)
            recon = self.G(z, c)
            prior = self.G(ctx.randn(x.shape[0], self.spec.z_dim), c)
        D = self.net("D")
        real, fake_recon, fake_prior = D(x, c), D(recon, c), D(prior, c)
        loss = F.softplus(-real).mean() + 0.5 * (F.softplus(fake_recon).mean() + F.softplus(fake_prior).mean())
        return loss, {"D_loss": loss.detach()}

    def e_phase(self, batch: Batch, ctx: StepContext):
        x, c = batch
        c = c if self.spec.c_dim else None
        mu, logvar, z = self._encode(x, c, ctx)
        kl, feat = VAE.kl(mu, logvar), self._feature_error(x, self.G(z, c))
        loss = (self.spec.beta * kl + feat).mean()
        return loss, {"E_loss": loss.detach(), "kl": kl.mean().detach(), "feature_error": feat.mean().detach()}

    def g_phase(self, batch: Batch, ctx: StepContext):
        x, c = batch
        c = c if self.spec.c_dim else None
        with torch.no_grad():
            _, _, z = self._encode(x, c, ctx)
        G = self.net("G")
        recon, prior = G(z, c), G(ctx.randn(x.shape[0], self.spec.z_dim), c)
        adversarial = 0.5 * (F.softplus(-self.D(recon, c)).mean() + F.softplus(-self.D(prior, c)).mean())
        loss = self.spec.gamma * self._feature_error(x, recon).mean() + adversarial
        return loss, {"G_loss": loss.detach()}

    reconstruct = VAE.reconstruct  # decode the posterior mean: the same for both families

    def anomaly_score_from_noise(self, x: torch.Tensor, eps: torch.Tensor) -> torch.Tensor:
        """Reconstruction error in D's feature space, the similarity VAE-GAN is trained on."""
        mu, _ = self.E(x, None)
        return (self.D.features(self.decoder()(mu, None)) - self.D.features(x)).square().sum(1)

    def decoder(self) -> nn.Module:
        return self.eval_net("G")
