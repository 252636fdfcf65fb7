"""What every model offers the engine: networks, phases, sampling.

A model is an ``nn.Module`` holding named networks (``G``, ``D``, ``E``...).
Training is a list of :class:`Phase` objects; the engine runs each phase with
only the parameters it owns requiring grad, through its own optimizer. Inside
a phase a model reaches its networks through :meth:`GenerativeModel.net`,
which returns the DDP wrapper for the networks the phase owns (or tracks) and the plain
module for the others (their parameters are frozen for this phase, so DDP
must not wait for their gradients).
"""
from __future__ import annotations

import copy
from dataclasses import dataclass, field
from typing import Callable

import torch
from torch import nn

Batch = tuple[torch.Tensor, "torch.Tensor | None"]


@dataclass
class StepContext:
    """Where in training a phase runs; the source of all its randomness.

    Noise is drawn for the *global* batch from a generator seeded by
    (seed, step, phase, repeat) and each rank keeps its slice, so results do
    not depend on the number of workers and resuming needs only the step.
    """

    step: int
    seed: int
    phase: int = 0
    repeat: int = 0
    rank: int = 0
    world_size: int = 1
    _streams: int = field(default=0, repr=False)

    def _generator(self) -> torch.Generator:
        self._streams += 1
        key = (((self.seed * 1_000_003 + self.step) * 101 + self.phase) * 101 + self.repeat) * 101 + self._streams
        return torch.Generator().manual_seed(key % (2 ** 63))

    def _local(self, draw: Callable[[int, torch.Generator], torch.Tensor], n: int) -> torch.Tensor:
        full = draw(n * self.world_size, self._generator())
        return full[self.rank * n:(self.rank + 1) * n]

    def randn(self, n: int, *shape: int) -> torch.Tensor:
        return self._local(lambda m, g: torch.randn(m, *shape, generator=g), n)

    def rand(self, n: int, *shape: int) -> torch.Tensor:
        return self._local(lambda m, g: torch.rand(m, *shape, generator=g), n)


@dataclass
class Phase:
    """One optimisation step of some networks on one loss (e.g. D, G, or VAE)."""

    name: str
    owns: tuple[str, ...]
    loss: Callable[[Batch, StepContext], tuple[torch.Tensor, dict[str, float]]]
    lr: float
    repeats: int = 1
    # networks this phase runs with autograd on but does not step: a later phase of the same
    # step back-propagates through their output (a GAN's G step reusing the D step's fake)
    tracks: tuple[str, ...] = ()


# What a model does, which decides how it is evaluated, exported and used:
#   generate   z (+ c) -> x: samples, interpolation, anomaly scores (GANs, VAEs, StyleGAN)
#   translate  x of domain A <-> x of domain B, unpaired (CycleGAN)
#   upscale    a downsampled image -> the full-resolution image (super-resolution)
TASKS = ("generate", "translate", "upscale")

ExportNet = tuple[nn.Module, tuple[torch.Tensor, ...], list[str], list[str]]


class GenerativeModel(nn.Module):
    """Base class: subclasses set ``network_names`` and implement phases/decode.

    Models whose ``task`` is not ``generate`` have no ``decoder``; they implement
    ``export_networks`` and ``card_io`` instead, and their task's evaluation
    module (genflow/evaluate/protocol.py, ``TASK_EVALUATORS``) measures them."""

    network_names: tuple[str, ...] = ()
    ema_names: tuple[str, ...] = ("G",)
    task: str = "generate"
    # network -> parity tolerance where a deep network's float32 sums legitimately drift further
    # than genflow.export.write's defaults between PyTorch and ONNX Runtime kernels
    export_tolerances: dict[str, float] = {}
    # what the model offers beyond sampling, which decides what evaluate measures and export ships
    # (asked here, never probed with hasattr):
    has_likelihood: bool = False   # elbo() and iwae_bound(): VAEs
    has_encoder: bool = False      # network E and reconstruct(): VAE, VAE-GAN
    has_w_space: bool = False      # G.mapping z -> w: StyleGAN (its own path length, in W)

    def __init__(self, spec, data_shape: tuple[int, ...], num_classes: int):
        super().__init__()
        self.spec = spec
        self.data_shape = tuple(data_shape)
        self.num_classes = num_classes
        self.is_image = len(self.data_shape) == 3
        self._active: dict[str, nn.Module] = {}

    # -- networks -------------------------------------------------------
    def net(self, name: str) -> nn.Module:
        wrapper = self._active.get(name)
        return wrapper if wrapper is not None else getattr(self, name)

    def set_active(self, wrappers: dict[str, nn.Module]) -> None:
        self._active = wrappers

    def enable_ema(self, decay: float) -> None:
        self.ema_decay = decay
        for name in self.ema_names if decay > 0 else ():
            ema = copy.deepcopy(getattr(self, name)).eval().requires_grad_(False)
            setattr(self, f"{name}_ema", ema)

    @torch.no_grad()
    def update_ema(self) -> None:
        for name in self.ema_names:
            ema = getattr(self, f"{name}_ema", None)
            if ema is None:
                continue
            for p_ema, p in zip(ema.parameters(), getattr(self, name).parameters()):
                p_ema.lerp_(p, 1.0 - self.ema_decay)
            for b_ema, b in zip(ema.buffers(), getattr(self, name).buffers()):
                b_ema.copy_(b)

    def eval_net(self, name: str) -> nn.Module:
        """The network used for evaluation and export: its EMA when there is one."""
        ema = getattr(self, f"{name}_ema", None)
        return ema if ema is not None else getattr(self, name)

    # -- what subclasses provide -----------------------------------------
    def phases(self) -> list[Phase]:
        raise NotImplementedError

    def training_split(self, split):
        """The rows of the train split this model trains on (CycleGAN: its two domains)."""
        return split

    def export_networks(self) -> dict[str, ExportNet]:
        """Networks to export besides the generic ones of a ``generate`` model (generator,
        encoder, scorer): name -> (module, example inputs, input names, output names). The
        model is a baked eval-mode copy here (genflow.export.write.baked)."""
        return {}

    @property
    def scores_single_images(self) -> bool:
        """Whether anomaly_score applies to one image at a time (export ships it as ``scorer``):
        unconditional models; PacGAN's D reads packs, so GANs add pac == 1."""
        return self.spec.c_dim == 0

    def card_io(self) -> dict:
        """The model card's ``io`` section: what its exported networks take and give. This is the
        generic z (+ c) -> x one; translators and upscalers describe their own."""
        spec, shape = self.spec, list(self.data_shape)
        return {"z_dim": spec.z_dim, "z_distribution": "standard normal", "c_dim": spec.c_dim,
                "labels": f"int64 class 0..{spec.c_dim - 1}" if spec.c_dim else "unconditional (c ignored)",
                "data_shape": shape, "value_range": [-1.0, 1.0] if len(shape) == 3 else "data coordinates",
                "to_uint8": "round((x + 1) * 127.5)" if len(shape) == 3 else None}

    def decoder(self) -> nn.Module:
        """A module (z, c) -> samples in data space, for evaluation and export."""
        raise NotImplementedError

    @torch.no_grad()
    def anomaly_score(self, x: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
        """Per-image score, higher = less like the training data (anomaly detection)."""
        eps = torch.randn(x.shape[0], *self.anomaly_noise_shape(), generator=generator)
        return self.anomaly_score_from_noise(x, eps)

    def anomaly_noise_shape(self) -> tuple[int, ...]:
        """Per-image shape of the noise the score draws (a placeholder for deterministic scores)."""
        return (1,)

    def anomaly_score_from_noise(self, x: torch.Tensor, eps: torch.Tensor) -> torch.Tensor:
        """The score for given noise: what the exported scorer computes."""
        raise NotImplementedError(f"{type(self).__name__} has no anomaly score")

    @torch.no_grad()
    def sample(self, n: int, c: torch.Tensor | None = None, generator: torch.Generator | None = None) -> torch.Tensor:
        z = torch.randn(n, self.spec.z_dim, generator=generator)
        if self.spec.c_dim and c is None:
            c = torch.randint(self.spec.c_dim, (n,), generator=generator)
        dec = self.decoder().eval()
        return dec(z, c if self.spec.c_dim else None)
