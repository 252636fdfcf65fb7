"""StyleGAN2-style model for small images: mapping network z -> w, a synthesis network driven
by per-layer styles, style mixing, lazy R1 on D and optional path-length regularisation.

The discriminator is the GAN family's conv D (projection term when c_dim > 0); the
non-saturating loss and the R1 gradient come from gan.py too.
"""
from __future__ import annotations

import math

import torch
from torch import nn

from genflow.models.base import Batch, ExportNet, GenerativeModel, Phase, StepContext
from genflow.models.gan import Discriminator, g_loss, input_gradient_sq, scored_d_loss
from genflow.models.registry import register
from genflow.models.style_blocks import MappingNetwork, SynthesisNetwork

PL_DECAY = 0.01  # the running mean of path lengths follows new batches at this rate (StyleGAN2)


class StyleGenerator(nn.Module):
    """z (+ c) -> image: ``synthesis(broadcast(mapping(z)))``, optionally with a second latent's
    styles from per-sample crossover layers on (style mixing) and explicit noise inputs."""

    def __init__(self, *, z_dim: int, c_dim: int, w_dim: int, mapping_layers: int, mapping_lr_mul: float,
                 out_shape: tuple[int, int, int], width: int):
        super().__init__()
        self.mapping = MappingNetwork(z_dim=z_dim, c_dim=c_dim, w_dim=w_dim, layers=mapping_layers,
                                      lr_mul=mapping_lr_mul)
        self.synthesis = SynthesisNetwork(out_shape=out_shape, w_dim=w_dim, width=width)
        self.num_ws, self.w_dim = self.synthesis.num_ws, w_dim

    def broadcast(self, w: torch.Tensor) -> torch.Tensor:
        """w (N, w_dim) -> ws (N, num_ws, w_dim): the same style for every layer."""
        return w.unsqueeze(1).repeat(1, self.num_ws, 1)

    def mixed_ws(self, w: torch.Tensor, w2: torch.Tensor, crossover: torch.Tensor) -> torch.Tensor:
        """ws[:, :k] from ``w`` and ws[:, k:] from ``w2``, k = ``crossover`` (N,) per sample."""
        layer = torch.arange(self.num_ws, device=w.device)
        return torch.where((layer[None, :] < crossover[:, None])[..., None], w[:, None], w2[:, None])

    def forward(self, z: torch.Tensor, c: torch.Tensor | None = None, noise: list[torch.Tensor] | None = None,
                mix_z: torch.Tensor | None = None, crossover: torch.Tensor | None = None) -> torch.Tensor:
        w = self.mapping(z, c)
        ws = self.broadcast(w) if mix_z is None else self.mixed_ws(w, self.mapping(mix_z, c), crossover)
        return self.synthesis(ws, noise)


class MappingNet(nn.Module):
    """The exported ``mapping(z, c) -> w`` (c ignored when unconditional, like the generator)."""

    def __init__(self, mapping: nn.Module, conditional: bool):
        super().__init__()
        self.mapping, self.conditional = mapping, conditional

    def forward(self, z: torch.Tensor, c: torch.Tensor) -> torch.Tensor:
        return self.mapping(z, c if self.conditional else None)


def lazy_due(step: int, every: int) -> bool:
    """A lazy regulariser runs on the last step of each interval: log rows land on multiples of
    log_every (usually a multiple of the interval) after that step, so they show its value."""
    return (step + 1) % every == 0


@register("stylegan")
class StyleGAN(GenerativeModel):
    network_names = ("G", "D")
    has_w_space = True
    # two demodulated convs per resolution, each an rsqrt of a sum over in_channels x 9 taps: a
    # trained 32 px G differs from ONNX Runtime by ~1.6e-5 on [-1, 1] outputs (presets/systems),
    # i.e. 0.002 of one uint8 level; 1e-4 keeps the check meaningful (a wrong op is >= 1e-2)
    export_tolerances = {"generator": 1e-4, "synthesis": 1e-4}

    def __init__(self, spec, data_shape, num_classes):
        super().__init__(spec, data_shape, num_classes)
        s = spec
        if len(data_shape) != 3:
            raise ValueError(f"stylegan generates images; dataset {s.dataset!r} holds points of shape {data_shape}")
        self.G = StyleGenerator(z_dim=s.z_dim, c_dim=s.c_dim, w_dim=s.w_dim, mapping_layers=s.mapping_layers,
                                mapping_lr_mul=s.mapping_lr_mul, out_shape=data_shape, width=s.width)
        self.D = Discriminator(arch="conv", data_shape=data_shape, c_dim=s.c_dim, width=s.width, depth=s.depth,
                               pac=1, sn=False, mbstd=s.mbstd, resblocks=s.resblocks)
        # part of the state dict, so a resumed run continues the same penalty
        self.register_buffer("pl_mean", torch.zeros(()))

    def phases(self) -> list[Phase]:
        t = self.spec.train
        return [Phase("D", ("D",), self.d_phase, t.lr_d, repeats=t.n_critic),
                Phase("G", ("G",), self.g_phase, t.lr_g)]

    # -- drawing fakes ---------------------------------------------------------
    def _noise(self, n: int, ctx: StepContext) -> list[torch.Tensor]:
        return [ctx.randn(n, *shape) for shape in self.G.synthesis.noise_shapes()]

    def _fake(self, n: int, c: torch.Tensor | None, ctx: StepContext) -> torch.Tensor:
        """Fakes with fresh noise; a share ``mixing_prob`` switch to a second latent's styles at a
        crossover layer drawn uniformly from 1..num_ws-1 (the others keep one latent)."""
        num_ws = self.G.num_ws
        z, z2 = ctx.randn(n, self.spec.z_dim), ctx.randn(n, self.spec.z_dim)
        mixed = ctx.rand(n) < self.spec.mixing_prob
        cut = 1 + (ctx.rand(n) * (num_ws - 1)).long().clamp(max=num_ws - 2)
        crossover = torch.where(mixed, cut, torch.full_like(cut, num_ws))
        return self.net("G")(z, c, self._noise(n, ctx), z2, crossover)

    # -- phases ----------------------------------------------------------------
    def d_phase(self, batch: Batch, ctx: StepContext) -> tuple[torch.Tensor, dict[str, float]]:
        x, c = batch
        c = c if self.spec.c_dim else None
        with torch.no_grad():
            fake = self._fake(x.shape[0], c, ctx)
        loss, logs = scored_d_loss(self.net("D"), x, fake, c, "ns")
        if self.spec.r1_gamma > 0 and lazy_due(ctx.step, self.spec.r1_every):
            r1 = input_gradient_sq(self.D, x, c).mean()
            loss = loss + 0.5 * self.spec.r1_gamma * self.spec.r1_every * r1
            logs["r1"] = r1.detach()
        return loss, logs

    def g_phase(self, batch: Batch, ctx: StepContext) -> tuple[torch.Tensor, dict[str, float]]:
        x, c = batch
        c = c if self.spec.c_dim else None
        loss = g_loss("ns", self.net("D")(self._fake(x.shape[0], c, ctx), c))
        logs = {"G_loss": loss.detach()}
        if self.spec.pl_weight > 0 and lazy_due(ctx.step, self.spec.pl_every):
            penalty, lengths = self._path_length_penalty(max(1, x.shape[0] // 2), c, ctx)
            loss = loss + self.spec.pl_weight * self.spec.pl_every * penalty
            logs.update(pl_penalty=penalty.detach(), pl_length=lengths.mean().detach())
        return loss, logs

    def _path_length_penalty(self, n: int, c: torch.Tensor | None, ctx: StepContext):
        """StyleGAN2's path-length regulariser on half a batch: the Jacobian norm |J_w^T y| for
        random image-space directions y should stay at its running mean (``pl_mean``).

        On the plain G like R1 on the plain D (gan.input_gradient_sq): a double backward."""
        G = self.G
        ws = G.broadcast(G.mapping(ctx.randn(n, self.spec.z_dim), None if c is None else c[:n]))
        img = G.synthesis(ws, self._noise(n, ctx))
        y = ctx.randn(n, *img.shape[1:]) / math.sqrt(img.shape[2] * img.shape[3])
        (grad,) = torch.autograd.grad((img * y).sum(), ws, create_graph=True)
        lengths = grad.square().sum(dim=2).mean(dim=1).sqrt()
        with torch.no_grad():
            self.pl_mean.copy_(self.pl_mean.lerp(lengths.mean(), PL_DECAY))
        return (lengths - self.pl_mean).square().mean(), lengths

    # -- evaluation and export --------------------------------------------------
    def anomaly_score_from_noise(self, x: torch.Tensor, eps: torch.Tensor) -> torch.Tensor:
        """Minus D's realness score: the critic learned what training images look like."""
        return -self.D(x)

    def decoder(self) -> nn.Module:
        return self.eval_net("G")

    def export_networks(self) -> dict[str, ExportNet]:
        G, conditional = self.eval_net("G"), self.spec.c_dim > 0
        gen = torch.Generator().manual_seed(1234)
        z, z2 = torch.randn(2, 16, self.spec.z_dim, generator=gen)
        c = torch.arange(16) % self.spec.c_dim if conditional else torch.zeros(16, dtype=torch.long)
        with torch.no_grad():  # mixed styles: the synthesis network must take any ws, not only broadcast ones
            ws = G.mixed_ws(G.mapping(z, c if conditional else None), G.mapping(z2, c if conditional else None),
                            torch.arange(16) % (G.num_ws + 1))
        return {"mapping": (MappingNet(G.mapping, conditional), (z, c), ["z", "c"], ["w"]),
                "synthesis": (G.synthesis, (ws,), ["ws"], ["x"])}

    def card_io(self) -> dict:
        levels = len(self.G.synthesis.resolutions) - 1
        note = ("ws[0]: the 4 px conv; at level i = 1.." + str(levels) + " (4*2^i px) ws[2i-1], ws[2i]: its two "
                "convs; ws[2i+1]: toRGB of level i (shared with level i+1's first conv); low = coarse")
        return {**super().card_io(), "w_dim": self.spec.w_dim,
                "num_ws": self.G.num_ws, "ws_layers": note}
