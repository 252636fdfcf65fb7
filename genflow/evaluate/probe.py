"""The probe: a model's samples scored against validation rows, cheaply and reproducibly.

Two users: a sweep trial (one number that ASHA compares and Optuna learns from: ``Probe``) and
training itself (``train.eval_every``: ``TrainingProbe``, several numbers that go into the
training log and pick the best snapshot). Both read the *validation* split, never the test
split that the evaluate stage reports: nothing may be selected on the numbers it is judged by.
Both draw their samples from fixed latents (seeded chunks), so the same weights always score
the same, and a resumed run's log is byte-identical.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from genflow.data.loader import load_split
from genflow.data.shards import read_manifest
from genflow.errors import ConfigError
from genflow.evaluate.model_metrics import PROBE_KID_SUBSETS, generate
from genflow.evaluate.protocol import sample_rows
from genflow.featurenet.network import FeatureSpace
from genflow.metrics import frechet_distance, kid, mixture_modes
from genflow.metrics.catalog import BY_NAME, headline_order
from genflow.metrics.mixtures import discrete_modes
from genflow.models import registry
from genflow.models.plugins import validate_spec
from genflow.sweep.space import MIXTURE_METRICS

# the training log's columns of probe values: val_<metric>, so they never clash with a loss
PREFIX = "val_"
# samples kept from each probe for the strip over training (genflow.train.monitor, the report)
STRIP_IMAGES, STRIP_POINTS = 8, 500


@dataclass(frozen=True)
class ProbeSettings:
    """What a probe needs besides its data: a SweepSpec has these fields too."""

    metric: str = "fid"
    probe_samples: int = 1000
    probe_real: int = 1000
    seed: int = 0


class Probe:
    """Scores a model's samples against validation rows in the dataset's feature space."""

    def __init__(self, data_dir: str | Path, featurenet_dir: str | Path, sweep):
        self.metric, self.n_samples, self.seed = sweep.metric, sweep.probe_samples, sweep.seed
        self.last_fake = None  # the samples of the last values() call
        self.manifest = read_manifest(data_dir)
        if self.metric in MIXTURE_METRICS and "mixture" not in self.manifest:
            raise ConfigError(f"sweep metric {self.metric!r} needs a Gaussian-mixture dataset; "
                              f"{data_dir} is not one (use fid or kid)")
        self.features = FeatureSpace(featurenet_dir)
        self.real, self.real_c = sample_rows(load_split(data_dir, "val"), sweep.probe_real, sweep.seed)
        self.f_real = self.features(self.real)

    @torch.no_grad()
    def __call__(self, model) -> float:
        model.eval()
        if model.task != "generate":  # translation, super-resolution: their evaluation module's probe
            from genflow.evaluate.protocol import task_evaluator

            return float(task_evaluator(model).probe(model, self))
        fake, _ = generate(model, self.n_samples, self.seed)
        if self.metric in MIXTURE_METRICS:
            return float(self.mixture(fake)[self.metric])
        f_fake = self.features(fake)
        if self.metric == "fid":
            return float(frechet_distance(self.f_real, f_fake))
        return self.kid(f_fake)

    def mixture(self, fake: torch.Tensor) -> dict[str, float]:
        mix = self.manifest["mixture"]
        return mixture_modes(fake, mix["centers"], mix["std"])

    def kid(self, f_fake: torch.Tensor) -> float:
        size = min(1000, len(f_fake), len(self.f_real))
        return float(kid(self.f_real, f_fake, n_subsets=PROBE_KID_SUBSETS, subset_size=size, seed=self.seed)[0])

    @torch.no_grad()
    def values(self, model) -> dict[str, float]:
        """Every cheap metric of the dataset: modes, high quality and reverse KL on a mixture;
        FID (and modes, reverse KL on stacked digits) on images; the ELBO of a VAE; the task's
        probe for translation and super-resolution."""
        model.eval()
        if model.task != "generate":
            return {self.metric: float(self(model))}
        fake, _ = generate(model, self.n_samples, self.seed)
        self.last_fake = fake
        if "mixture" in self.manifest:
            values = self.mixture(fake)
        else:
            values = {"fid": float(frechet_distance(self.f_real, self.features(fake)))}
            if self.features.channelwise:  # stacked digits: the classifier names one of 1000 modes
                values.update(discrete_modes((self.features.classify(fake) @ torch.tensor([100, 10, 1])).numpy(),
                                             1000))
        if model.has_likelihood:
            gen = torch.Generator().manual_seed(self.seed)
            c = self.real_c if model.spec.c_dim else None
            values["elbo"] = float(model.elbo(self.real, c, gen).mean())
        return values


class TrainingProbe:
    """The probe run inside training (rank 0), as genflow.train.monitor expects it: called with
    the live weights, it scores a CPU copy of the model (the training model's mode, device and
    buffers stay untouched) and returns ``val_<metric>`` values; ``keys`` ranks them."""

    def __init__(self, config, featurenet_dir: str | Path):
        spec = validate_spec(config.spec)
        self.model = registry.build(spec, tuple(config.data_shape), config.num_classes)
        n = spec.train.eval_samples
        self.probe = Probe(config.data_dir, featurenet_dir, ProbeSettings(probe_samples=n, probe_real=n,
                                                                          seed=config.seed))
        order = headline_order(self.probe.values(self.model))  # the metrics an untrained model already has
        self.why, keys = order if order is not None else (self.probe.metric, (self.probe.metric,))
        self.keys = tuple(PREFIX + key for key in keys)
        self.directions = {PREFIX + key: BY_NAME[key].better for key in keys}

    def __call__(self, weights: dict[str, Any]) -> dict[str, float]:
        self.model.load_state_dict(weights)
        self.probe.last_fake = None
        values = {PREFIX + key: value for key, value in sorted(self.probe.values(self.model).items())}
        fake = self.probe.last_fake  # the strip over training: the first samples, the same latents every probe
        self.strip = None if fake is None else fake[:STRIP_IMAGES if self.model.is_image else STRIP_POINTS].clone()
        return values


def training_probe(config, featurenet_root: str | Path) -> TrainingProbe:
    """What genflow.launch hands the train workers (a picklable function of the worker config)."""
    return TrainingProbe(config, Path(featurenet_root) / config.spec["dataset"])
