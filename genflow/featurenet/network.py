"""The feature space that FID and friends are measured in.

For image datasets: a small conv classifier trained on the prepared training
split; its penultimate layer gives the features, and the sha256 of its
weights file identifies the feature space in every metric's protocol. For
``stacked_digits`` the classifier reads one channel at a time (a digit), the
features are the three channels' features side by side, and classifying the
channels names the mode (one of 1000). For 2-D point datasets the feature
space is the identity (the points themselves). Optionally, FID-style metrics
use the FID Inception-v3 from a local weights file instead (``evaluate.inception_weights``).
"""
from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import torch
from safetensors.torch import load_file, save_file
from torch import nn

from genflow.data.loader import BatchPlan, Split
from genflow.errors import DataError
from genflow.io import atomic_dir, sha256_file, write_json
from genflow.models.blocks import ConvTrunk

WEIGHTS, META = "weights.safetensors", "featurenet.json"
FEATURE_DIM = 64


class Classifier(nn.Module):
    def __init__(self, *, in_channels: int, resolution: int, num_classes: int, width: int):
        super().__init__()
        self.trunk = ConvTrunk(in_channels=in_channels, resolution=resolution, width=width)
        self.features = nn.Sequential(nn.Linear(self.trunk.out_dim, FEATURE_DIM), nn.ReLU())
        self.head = nn.Linear(FEATURE_DIM, num_classes)

    def embed(self, x: torch.Tensor) -> torch.Tensor:
        return self.features(self.trunk(x))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.embed(x))


@torch.no_grad()
def accuracy(net: Classifier, data: Split, batch: int = 1024) -> float:
    net.eval()
    correct = 0
    for start in range(0, len(data), batch):
        x, y = data.batch(torch.arange(start, min(start + batch, len(data))))
        correct += (net(x).argmax(1) == y).sum().item()
    return correct / len(data)


def train_classifier(train: Split, spec, log=print, steps: int | None = None) -> Classifier:
    """``spec.epochs`` epochs of ``train``, or exactly ``steps`` optimizer steps (the augmentation
    metrics give a small subset the same number of steps as the whole split)."""
    if train.labels is None or not train.num_classes:
        raise DataError("the feature network needs a labelled image dataset")
    torch.manual_seed(spec.seed)
    c, h, _ = train.shape
    net = Classifier(in_channels=c, resolution=h, num_classes=train.num_classes, width=spec.width)
    opt = torch.optim.Adam(net.parameters(), lr=spec.lr)
    plan = BatchPlan(len(train), min(spec.batch_size, len(train)), spec.seed)
    steps = spec.epochs * plan.steps_per_epoch if steps is None else steps
    for step in range(steps):
        net.train()
        x, y = train.batch(plan.indices(step))
        loss = nn.functional.cross_entropy(net(x), y)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        if (step + 1) % plan.steps_per_epoch == 0 and (step + 1) // plan.steps_per_epoch % 10 == 0:
            log(f"[featurenet] epoch {(step + 1) // plan.steps_per_epoch}/{-(-steps // plan.steps_per_epoch)} "
                f"loss {loss.item():.4f}")
    return net.eval()


def save(out: str | Path, net: Classifier | None, meta: dict[str, Any]) -> None:
    with atomic_dir(out) as tmp:
        if net is not None:
            save_file({k: v.contiguous() for k, v in net.state_dict().items()}, tmp / WEIGHTS)
            meta = {**meta, "sha256": sha256_file(tmp / WEIGHTS)}
        write_json(tmp / META, meta)


def _batched(fn, x: torch.Tensor, batch: int) -> torch.Tensor:
    return torch.cat([fn(x[i:i + batch]) for i in range(0, len(x), batch)])


class FeatureSpace:
    """Callable images/points -> feature vectors, with an id for the protocol; ``classify``
    gives the feature network's class of each image (a (N, 3) triple for channelwise)."""

    def __init__(self, root: str | Path, inception_weights: str | Path | None = None, inception_resize: str = "tf1"):
        root = Path(root)
        meta_path = root / META
        if not meta_path.exists():
            raise DataError(f"{meta_path}: missing; run the featurenet stage first")
        self.meta = json.loads(meta_path.read_text())
        self.net: Classifier | None = None
        self.channelwise = self.meta["kind"] == "channelwise"
        if self.meta["kind"] in ("classifier", "channelwise"):
            weights = root / WEIGHTS
            if sha256_file(weights) != self.meta["sha256"]:
                raise DataError(f"{weights}: sha256 does not match {META}")
            a = self.meta["architecture"]
            self.net = Classifier(**a).eval()
            self.net.load_state_dict(load_file(weights))
        self.id, self.kind = self.meta.get("sha256", "identity"), self.meta["kind"]
        self.inception = None
        if inception_weights is not None:
            from genflow.featurenet.inception import load_inception

            self.inception = load_inception(inception_weights, inception_resize)
            self.id, self.kind = sha256_file(inception_weights), "inception-v3"

    @property
    def backend(self) -> dict[str, Any]:
        """Which network makes the features and how images reach it: the protocol's record, so a
        number can be set beside one from another tool only when these match."""
        if self.inception is not None:
            from genflow.featurenet.inception import describe

            return {"network": "inception-v3 (the FID network, TF 2015-12-05 graph), pool3", "feature_dim": 2048,
                    "weights_sha256": self.id, "input_path": self.inception.resize, **describe(self.inception.resize)}
        if self.net is None:
            return {"network": "identity (the 2-D points are their own features)", "weights_sha256": None,
                    "resize": "none", "normalisation": "none"}
        return {"network": f"the dataset's featurenet ({self.kind}), penultimate layer",
                "feature_dim": self.meta.get("feature_dim"), "weights_sha256": self.id,
                "resize": "none: the dataset's own resolution" + (", each channel as a 1-channel image"
                                                                  if self.channelwise else ""),
                "normalisation": "uint8 / 127.5 - 1 ([-1, 1]), float32"}

    def _per_image(self, fn, x: torch.Tensor, batch: int) -> torch.Tensor:
        """``fn`` over batches; channelwise spaces see every channel as its own 1-channel image."""
        n = len(x)
        if self.channelwise:
            x = x.reshape(n * x.shape[1], 1, *x.shape[2:])
        out = _batched(fn, x, batch)
        return out.reshape(n, -1) if self.channelwise else out

    @torch.no_grad()
    def __call__(self, x: torch.Tensor, batch: int = 2048) -> torch.Tensor:
        if self.inception is not None:
            return _batched(self.inception, x, 64).double()
        if self.net is None:
            return x.flatten(1).double()
        return self._per_image(self.net.embed, x, batch).double()

    @torch.no_grad()
    def classify(self, x: torch.Tensor, batch: int = 2048) -> torch.Tensor:
        if self.net is None:
            raise DataError("this dataset's feature space has no classifier (2-D points)")
        return self._per_image(lambda part: self.net(part).argmax(1, keepdim=True), x, batch).squeeze(1)
