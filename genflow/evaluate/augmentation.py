"""How useful a conditional generator's samples are to a classifier: data augmentation.

* **CAS**, the Classification Accuracy Score (Ravuri & Vinyals 2019): the dataset's classifier
  (the feature network's architecture and settings, genflow.featurenet) trained on generated
  samples only, as many as the real train split has rows, labels balanced (sample i of class
  i mod c_dim), then tested on the real test split. Its floor (what a perfect generator scores) is
  the same classifier trained on the real train split.
* **Augmentation gain**: a classifier trained on a small real subset (SUBSET_FRACTION of every
  class of the train split, seeded) against one trained on that subset plus generated samples
  that take the places of the rows left out (the same labels, so the same class counts); the
  difference of their test accuracies (positive: the samples help). Its floor is what the left-out
  real rows themselves add: the full train split's accuracy minus the subset's.

Every classifier here trains for the same number of optimizer steps (``epochs`` epochs of the
real train split), so the subset is not simply trained less; on one torch thread, so the numbers
do not depend on the machine's core count. Generated images are rounded to uint8 as a prepared
dataset stores them (the model card's ``to_uint8``), which is what `genflow augment` writes; a
perfect generator's samples (the real rows, decoded) therefore round back to the real rows
exactly, and score exactly the floors (tests/test_augmentation.py).
"""
from __future__ import annotations

import json
import time
from contextlib import contextmanager
from functools import cached_property
from pathlib import Path
from typing import Any

import numpy as np
import torch

from genflow.config import FeatureNetSpec
from genflow.data.loader import Split, load_split
from genflow.evaluate.model_metrics import SAMPLE_CHUNK
from genflow.featurenet import network as featurenet

SUBSET_FRACTION = 0.1  # of every class of the train split: the "small real dataset" being augmented
STREAMS = {"cas": 1, "gain": 2}  # each draw its own random streams, apart from the protocol's samples


def to_uint8(images: torch.Tensor) -> torch.Tensor:
    """Images in [-1, 1] as a prepared dataset stores them: round((x + 1) * 127.5), clamped."""
    return ((images.clamp(-1, 1) + 1) * 127.5).round().to(torch.uint8)


def stratified_subset(labels: torch.Tensor, fraction: float, seed: int) -> torch.Tensor:
    """Sorted row indices: a seeded ``fraction`` of every class's rows (at least one each)."""
    order = torch.randperm(len(labels), generator=torch.Generator().manual_seed(seed))
    picked = [rows[:max(1, round(fraction * len(rows)))]
              for rows in (order[labels[order] == k] for k in torch.unique(labels).tolist())]
    return torch.cat(picked).sort().values


@contextmanager
def one_thread():
    """Classifier training on one torch thread (restored afterwards): on a 2-core machine two
    OpenMP threads make these tiny conv steps many times slower, and one thread makes the
    numbers independent of the core count."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(before)


@torch.no_grad()
def draw(model, labels: torch.Tensor, seed: int, stream: str) -> torch.Tensor:
    """Samples of the given classes, in chunks of SAMPLE_CHUNK, each chunk its own seeded stream."""
    parts = []
    for index, start in enumerate(range(0, len(labels), SAMPLE_CHUNK)):
        state = np.random.SeedSequence([seed, STREAMS[stream], index]).generate_state(2, dtype=np.uint32)
        gen = torch.Generator().manual_seed(int(state[0]) << 32 | int(state[1]))
        c = labels[start:start + SAMPLE_CHUNK]
        parts.append(model.sample(len(c), c, gen))
    return torch.cat(parts)


class Augmentation:
    """The real data, the classifier settings and the subset every seed of a model is measured with."""

    def __init__(self, data_dir: Path, classifier: FeatureNetSpec, epochs: int, seed: int):
        self.train, self.test = load_split(data_dir, "train"), load_split(data_dir, "test")
        self.classifier, self.epochs, self.seed = classifier, epochs, seed
        self.steps = epochs * (len(self.train) // min(classifier.batch_size, len(self.train)))
        self.subset = stratified_subset(self.train.labels, SUBSET_FRACTION, seed)
        kept = torch.zeros(len(self.train), dtype=torch.bool)
        kept[self.subset] = True
        self.left_out = torch.nonzero(~kept).squeeze(1)
        self.seconds = self.cpu_seconds = 0.0  # classifier training and testing: the protocol's cost line

    @classmethod
    def for_model(cls, model, data_dir: Path, featurenet_dir: Path, epochs: int, seed: int) -> "Augmentation | None":
        """The protocol of a conditional image generator whose dataset has a classifier feature
        network (not 2-D points, not stacked digits' per-channel one), or None; None too when
        ``evaluate.augmentation_epochs`` is 0."""
        meta = json.loads((Path(featurenet_dir) / featurenet.META).read_text())
        if not epochs or model.task != "generate" or not model.spec.c_dim or meta.get("kind") != "classifier":
            return None
        return cls(Path(data_dir), FeatureNetSpec(**meta["spec"]), epochs, seed)

    def accuracy(self, x: torch.Tensor, labels: torch.Tensor) -> float:
        """Test accuracy of the classifier trained on uint8 images ``x`` with ``labels``."""
        started, cpu = time.perf_counter(), time.process_time()
        with one_thread():
            rows = Split(kind="image", x=x, labels=labels, num_classes=self.train.num_classes)
            net = featurenet.train_classifier(rows, self.classifier, log=lambda *_: None, steps=self.steps)
            value = featurenet.accuracy(net, self.test)
        self.seconds += time.perf_counter() - started
        self.cpu_seconds += time.process_time() - cpu  # = wall time on an idle core; less on a busy machine
        return value

    def cas(self, samples: torch.Tensor, labels: torch.Tensor) -> float:
        """CAS of samples in [-1, 1] with their labels."""
        return self.accuracy(to_uint8(samples), labels)

    def gain(self, samples: torch.Tensor) -> float:
        """Accuracy gain from samples (in [-1, 1]) of the left-out rows' classes, in their places."""
        x = self.train.x.clone()
        x[self.left_out] = to_uint8(samples)
        return self.accuracy(x, self.train.labels) - self.subset_accuracy

    @cached_property
    def real_accuracy(self) -> float:
        return self.accuracy(self.train.x, self.train.labels)

    @cached_property
    def subset_accuracy(self) -> float:
        return self.accuracy(self.train.x[self.subset], self.train.labels[self.subset])

    def cas_labels(self) -> torch.Tensor:
        return torch.arange(len(self.train)) % self.train.num_classes

    def seed_metrics(self, model) -> dict[str, float]:
        cas = self.cas(draw(model, self.cas_labels(), self.seed, "cas"), self.cas_labels())
        gain_labels = self.train.labels[self.left_out]
        return {"cas": cas, "augmentation_gain": self.gain(draw(model, gain_labels, self.seed, "gain"))}

    def floors(self) -> dict[str, float]:
        """A perfect generator's scores: the real rows in the samples' places."""
        return {"cas_floor": self.real_accuracy, "augmentation_gain_floor": self.real_accuracy - self.subset_accuracy}

    def protocol(self) -> dict[str, Any]:
        return {
            "classifier": "the feature network's (genflow/featurenet/network.py Classifier), its featurenet "
                          "settings except epochs",
            "settings": {**self.classifier.model_dump(mode="json"), "epochs": self.epochs},
            "steps": self.steps, "threads": 1, "test_split": "test", "n_test": len(self.test),
            "cas_samples": len(self.train), "cas_labels": "balanced: sample i of class i mod c_dim",
            "sample_seed": self.seed,
            "sample_streams": "per 1024-sample chunk, seeded by (evaluate.seed, draw, chunk); the CAS and gain "
                              "draws apart from the metrics' samples",
            "subset_fraction": SUBSET_FRACTION, "subset": "stratified per class, seeded", "subset_seed": self.seed,
            "n_subset": len(self.subset), "gain_samples": len(self.left_out),
            "gain_labels": "the left-out train rows' labels (the same class counts as the full split)",
            "subset_accuracy": round(self.subset_accuracy, 6), "images": "rounded to uint8 (to_uint8)",
            "seconds": round(self.seconds, 2), "cpu_seconds": round(self.cpu_seconds, 2),
        }
