"""Representation learning: linear probes on a trained model's frozen features (issue #29).

The question: how good are a generative model's learned features for classification when labels
are scarce? genflow.metrics.linear_probe fits the probe at 1 %, 10 % and 100 % of the training
labels and scores it on the test split. Which features each family offers:

- ``vae``, ``vaegan``: the encoder's posterior mean μ(x). A conditional encoder (cVAE) also reads
  the label, which the probe must not see, so every image gets the same label, class 0. The
  encoder's head is linear in [trunk(x), one-hot(c)], so a fixed label shifts every μ by the same
  vector and standardisation removes it: the accuracy is the same for any fixed label (tested).
- ``gan``: the discriminator's trunk features (the layer its score reads). They never see the
  label: a projection discriminator (cGAN) adds the label after the trunk. Not for PacGAN's D
  (it reads packs of samples) or a D with minibatch std (a row's features depend on its batch).
- other families are not probed (StyleGAN's D exposes no feature layer; translators and
  upscalers are evaluated as their own task).

Reference rows, by the same probe on the same labelled subsets: the raw pixels, and the feature
network's own features (the FID feature space: a classifier trained with every training label,
so what a supervised representation of this data reaches).
"""
from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import numpy as np
import torch

from genflow.data.loader import load_split
from genflow.data.shards import read_manifest
from genflow.metrics import linear_probe

# stacked digits name one of 1000 modes: a 1000-way probe with one or two rows per class at 1 %
# says little and costs a lot, so datasets with more classes are not probed
MAX_CLASSES = 100
EMBED_BATCH = 1024
PIXELS, FEATURENET = "raw pixels", "feature network"


def feature_extractor(model) -> tuple[str, Callable[[torch.Tensor], torch.Tensor]] | None:
    """(what the features are, images -> features) of a model's frozen representation, or None."""
    spec = model.spec
    if spec.model in ("vae", "vaegan"):
        def encoder_mu(x: torch.Tensor) -> torch.Tensor:
            fixed = torch.zeros(len(x), dtype=torch.long) if spec.c_dim else None
            return model.E(x, fixed)[0]
        return ("encoder μ, label fixed to class 0" if spec.c_dim else "encoder μ"), encoder_mu
    if spec.model == "gan" and spec.pac == 1 and not spec.mbstd:
        return "D trunk features", model.D.features
    return None


@torch.no_grad()
def embed(fn: Callable[[torch.Tensor], torch.Tensor], x: torch.Tensor) -> np.ndarray:
    return torch.cat([fn(x[i:i + EMBED_BATCH]).flatten(1) for i in range(0, len(x), EMBED_BATCH)]).double().numpy()


@dataclass
class LinearProbes:
    """The labelled train and test rows of one dataset, probed in any feature space."""

    x_train: torch.Tensor
    y_train: np.ndarray
    x_test: torch.Tensor
    y_test: np.ndarray
    seed: int

    @classmethod
    def load(cls, data_dir: Path, spec) -> "LinearProbes | None":
        """The probes of an image dataset with at most MAX_CLASSES labelled classes and test rows;
        None for any other dataset, or when ``evaluate.linear_probe`` is off."""
        if not spec.linear_probe or read_manifest(data_dir)["kind"] != "image":
            return None
        train, test = load_split(data_dir, "train"), load_split(data_dir, "test")
        if train.labels is None or test.labels is None or len(test) == 0 or not 2 <= train.num_classes <= MAX_CLASSES:
            return None
        (x_train, y_train), (x_test, y_test) = (s.batch(torch.arange(len(s))) for s in (train, test))
        return cls(x_train, y_train.numpy(), x_test, y_test.numpy(), spec.seed)

    def scores(self, fn: Callable[[torch.Tensor], torch.Tensor]) -> dict[str, float]:
        """{probe_<p>pct: test accuracy} of the features ``fn`` gives."""
        return linear_probe.probe_metrics(embed(fn, self.x_train), self.y_train, embed(fn, self.x_test),
                                          self.y_test, self.seed)

    @staticmethod
    def applies(model) -> bool:
        """Whether the model has features to probe (a generator of a family listed above)."""
        return model.task == "generate" and feature_extractor(model) is not None

    def seed_metrics(self, model, log=print) -> dict[str, float]:
        """One trained seed's probe accuracies (a model that ``applies``)."""
        kind, fn = feature_extractor(model)
        model.eval()
        start = time.perf_counter()
        values = self.scores(fn)
        log(f"[evaluate] linear probe on {kind}: {time.perf_counter() - start:.1f} s")
        return values

    def reference_rows(self, features) -> dict[str, dict[str, float]]:
        """The raw pixels' and the feature network's probe accuracies (the report's reference rows)."""
        rows = {PIXELS: self.scores(lambda x: x)}
        if features.net is not None and not features.channelwise:
            rows[FEATURENET] = self.scores(features.net.embed)
        return {label: {key: round(value, 6) for key, value in values.items()} for label, values in rows.items()}

    def protocol(self, model) -> dict:
        return {**linear_probe.protocol(self.seed), "features": feature_extractor(model)[0],
                "n_train": len(self.y_train), "n_test": len(self.y_test)}
