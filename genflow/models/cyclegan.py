"""CycleGAN (Zhu et al. 2017): unpaired translation between two classes of one image dataset.

The two domains are two class labels of a labelled dataset (``domain_a``, ``domain_b``).
The worked pairing is ``sprites`` squares (class 0) <-> ellipses (class 1): a real
translation, since the shape must change while the pose (position, scale, orientation)
is kept; the dataset's feature network (a shape classifier) judges the domain, and the
known pose makes content preservation measurable (genflow/evaluate/translate.py). A square
has 4-fold symmetry, so square -> ellipse is ambiguous by 90 degrees; cycle consistency
still holds (any of the ellipses maps back to the one square).

Networks, scaled down for 8-64 px images:

* ``G_AB``, ``G_BA``: the paper's ResNet generator; its 7x7 input conv becomes 3x3, then
  stride-2 downsampling (1 level up to 32 px, 2 from 64 px), ``n_res`` residual blocks with
  InstanceNorm, transposed convs back up, a 3x3 conv out and tanh.
* ``D_A``, ``D_B``: PatchGANs (their own, not gan.Discriminator, which ends in one
  score): stride-2 4x4 convs with LeakyReLU (min(3, levels to 4x4) of them, the paper's 3
  on 256 px) to a map of patch scores, at least 4x4.

Phases: D (owns D_A, D_B) and G (owns G_AB, G_BA: adversarial + cycle + identity). The
paper's history buffer of 50 generated images for D is left out (it would be state
outside the weights that every checkpoint and every DDP rank must carry). The
generators' EMA (``train.ema_decay``) is what evaluation and export use, like a GAN's G.

A batch is split by label into its A rows and B rows (rows of other classes, if any, are
ignored). A batch without rows of one domain, possible with tiny batches, uses its first
row as a zero-weighted stand-in: the losses stay finite and every owned parameter still
gets a (zero) gradient, which DDP requires. In G every term is weighted by whether its
source domain is present; in D, each critic's loss needs a real and a fake image, so
both critics' losses are weighted by whether both domains are present.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from genflow.models.base import Batch, ExportNet, GenerativeModel, Phase, StepContext
from genflow.models.blocks import conv_levels
from genflow.models.gan import d_loss, g_loss
from genflow.models.registry import register


def _norm(channels: int) -> nn.Module:
    return nn.InstanceNorm2d(channels, affine=True)


def generator_levels(resolution: int) -> int:
    """Stride-2 steps down to the bottleneck: 1 up to 32 px (a 16x16 bottleneck at 32 px), 2 from
    64 px (the paper's 4x reduction). At 32 px a 5-pixel sprite loses its corners through an 8x8
    bottleneck: on sprites ellipse -> square (5,000 steps, seed 0) one level reached 96.6 % target
    accuracy against 90.6 % for two, at 1.15x the speed (docs in presets/systems/README.md)."""
    conv_levels(resolution)  # raises for sizes the conv models cannot take
    return 1 if resolution <= 32 else 2


class ResidualBlock(nn.Module):
    """x + (conv 3x3, IN, ReLU, conv 3x3, IN)(x), reflection-padded as in the paper."""

    def __init__(self, channels: int):
        super().__init__()
        self.body = nn.Sequential(
            nn.Conv2d(channels, channels, 3, 1, 1, padding_mode="reflect"), _norm(channels), nn.ReLU(),
            nn.Conv2d(channels, channels, 3, 1, 1, padding_mode="reflect"), _norm(channels))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.body(x)


class ResnetGenerator(nn.Module):
    """Image -> image of the same shape in [-1, 1] (no latent, no label)."""

    def __init__(self, *, channels: int, resolution: int, width: int, n_res: int):
        super().__init__()
        layers: list[nn.Module] = [nn.Conv2d(channels, width, 3, 1, 1, padding_mode="reflect"), _norm(width),
                                   nn.ReLU()]
        ch = width
        levels = generator_levels(resolution)
        for _ in range(levels):
            layers += [nn.Conv2d(ch, ch * 2, 3, 2, 1), _norm(ch * 2), nn.ReLU()]
            ch *= 2
        layers += [ResidualBlock(ch) for _ in range(n_res)]
        for _ in range(levels):
            layers += [nn.ConvTranspose2d(ch, ch // 2, 4, 2, 1), _norm(ch // 2), nn.ReLU()]
            ch //= 2
        layers += [nn.Conv2d(ch, channels, 3, 1, 1, padding_mode="reflect"), nn.Tanh()]
        self.net = nn.Sequential(*layers)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x)


class PatchDiscriminator(nn.Module):
    """Image -> (N, 1, h, w) realness scores, one per overlapping patch (PatchGAN)."""

    def __init__(self, *, channels: int, resolution: int, width: int):
        super().__init__()
        levels = min(3, conv_levels(resolution))  # the map stays >= 4x4
        layers: list[nn.Module] = [nn.Conv2d(channels, width, 4, 2, 1), nn.LeakyReLU(0.2)]
        ch = width
        for _ in range(levels - 1):
            layers += [nn.Conv2d(ch, ch * 2, 4, 2, 1), _norm(ch * 2), nn.LeakyReLU(0.2)]
            ch *= 2
        # the paper's stride-1 layers (3x3 here, so the map keeps its size)
        layers += [nn.Conv2d(ch, ch * 2, 3, 1, 1), _norm(ch * 2), nn.LeakyReLU(0.2), nn.Conv2d(ch * 2, 1, 3, 1, 1)]
        self.net = nn.Sequential(*layers)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x)


def domain_rows(x: torch.Tensor, c: torch.Tensor | None, label: int) -> tuple[torch.Tensor, float]:
    """The rows of class ``label`` and weight 1, or a zero-weighted stand-in row if there are none."""
    if c is None:
        raise ValueError("CycleGAN needs class labels: its domains are two classes of the dataset")
    keep = c == label
    if bool(keep.any()):
        return x[keep], 1.0
    return x[:1], 0.0


@register("cyclegan")
class CycleGAN(GenerativeModel):
    network_names = ("G_AB", "G_BA", "D_A", "D_B")
    ema_names = ("G_AB", "G_BA")
    task = "translate"

    def __init__(self, spec, data_shape, num_classes):
        super().__init__(spec, data_shape, num_classes)
        if len(self.data_shape) != 3:
            raise ValueError("CycleGAN translates images; this dataset holds points")
        channels, resolution, _ = self.data_shape
        for name in ("G_AB", "G_BA"):
            setattr(self, name, ResnetGenerator(channels=channels, resolution=resolution, width=spec.width,
                                                n_res=spec.n_res))
        for name in ("D_A", "D_B"):
            setattr(self, name, PatchDiscriminator(channels=channels, resolution=resolution, width=spec.width))

    def training_split(self, split):
        """Only the rows of the two domains (class labels domain_a and domain_b)."""
        from genflow.data.loader import Split

        keep = (split.labels == self.spec.domain_a) | (split.labels == self.spec.domain_b)
        return Split(kind=split.kind, x=split.x[keep], labels=split.labels[keep], num_classes=split.num_classes)

    def phases(self) -> list[Phase]:
        t = self.spec.train
        return [Phase("D", ("D_A", "D_B"), self.d_phase, t.lr_d, repeats=t.n_critic),
                Phase("G", ("G_AB", "G_BA"), self.g_phase, t.lr_g)]

    def _domains(self, batch: Batch) -> tuple[torch.Tensor, float, torch.Tensor, float]:
        x, c = batch
        a, w_a = domain_rows(x, c, self.spec.domain_a)
        b, w_b = domain_rows(x, c, self.spec.domain_b)
        return a, w_a, b, w_b

    def d_phase(self, batch: Batch, ctx: StepContext) -> tuple[torch.Tensor, dict[str, float]]:
        a, w_a, b, w_b = self._domains(batch)
        with torch.no_grad():
            fake_b, fake_a = self.net("G_AB")(a), self.net("G_BA")(b)
        D_A, D_B = self.net("D_A"), self.net("D_B")
        loss_a = d_loss(self.spec.loss, D_A(a), D_A(fake_a))
        loss_b = d_loss(self.spec.loss, D_B(b), D_B(fake_b))
        loss = w_a * w_b * (loss_a + loss_b)
        return loss, {"D_loss": loss.detach(), "D_A": loss_a.detach(), "D_B": loss_b.detach()}

    def g_phase(self, batch: Batch, ctx: StepContext) -> tuple[torch.Tensor, dict[str, float]]:
        s = self.spec
        a, w_a, b, w_b = self._domains(batch)
        G_AB, G_BA = self.net("G_AB"), self.net("G_BA")
        fake_b, fake_a = G_AB(a), G_BA(b)
        adv = w_a * g_loss(s.loss, self.net("D_B")(fake_b)) + w_b * g_loss(s.loss, self.net("D_A")(fake_a))
        cycle = w_a * F.l1_loss(G_BA(fake_b), a) + w_b * F.l1_loss(G_AB(fake_a), b)
        loss = adv + s.lambda_cycle * cycle
        logs = {"G_loss": loss.detach(), "G_adv": adv.detach(), "cycle": cycle.detach()}
        if s.lambda_identity > 0:  # a generator fed its own target domain should leave it alone
            identity = w_a * F.l1_loss(G_BA(a), a) + w_b * F.l1_loss(G_AB(b), b)
            loss = loss + s.lambda_cycle * s.lambda_identity * identity
            logs.update(G_loss=loss.detach(), identity=identity.detach())
        return loss, logs

    # -- translation ---------------------------------------------------------------
    @torch.no_grad()
    def translate(self, x: torch.Tensor, direction: str, batch: int = 256) -> torch.Tensor:
        """A -> B (``"ab"``) or B -> A (``"ba"``) with the evaluation generator (EMA if any)."""
        net = self.eval_net({"ab": "G_AB", "ba": "G_BA"}[direction]).eval()
        if len(x) == 0:
            return x.clone()
        return torch.cat([net(x[i:i + batch]) for i in range(0, len(x), batch)])

    def export_networks(self) -> dict[str, ExportNet]:
        gen = torch.Generator().manual_seed(1234)
        x = torch.rand(16, *self.data_shape, generator=gen) * 2 - 1
        return {f"translate_{d}": (self.eval_net(name), (x,), ["x"], ["y"])
                for d, name in (("ab", "G_AB"), ("ba", "G_BA"))}

    def card_io(self) -> dict:
        s = self.spec
        return {"domains": {"A": s.domain_a, "B": s.domain_b}, "data_shape": list(self.data_shape),
                "value_range": [-1.0, 1.0], "to_uint8": "round((x + 1) * 127.5)",
                "description": "translate_ab: x (N, C, H, W) in [-1, 1] of class domain A -> y of the same shape "
                               "in class domain B; translate_ba the other way (unpaired, CycleGAN)"}
