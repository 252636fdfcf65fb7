"""The feature space that FID and friends are measured in.

For image datasets: a small conv classifier trained on the prepared training
split; its penultimate layer gives the features, and the sha256 of its
weights file identifies the feature space in every metric's protocol. For
2-D point datasets the feature space is the identity (the points themselves).
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


def train_classifier(train: Split, spec, log=print) -> Classifier:
    if train.labels is None or not train.num_classes:
        raise DataError("the feature network needs a labelled image dataset")
    torch.manual_seed(spec.seed)
    c, h, _ = train.shape
    net = Classifier(in_channels=c, resolution=h, num_classes=train.num_classes, width=spec.width)
    opt = torch.optim.Adam(net.parameters(), lr=spec.lr)
    plan = BatchPlan(len(train), min(spec.batch_size, len(train)), spec.seed)
    steps = spec.epochs * plan.steps_per_epoch
    for step in range(steps):
        net.train()
        x, y = train.batch(plan.indices(step))
        loss = nn.functional.cross_entropy(net(x), y)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        if (step + 1) % plan.steps_per_epoch == 0 and (step + 1) // plan.steps_per_epoch % 10 == 0:
            log(f"[featurenet] epoch {(step + 1) // plan.steps_per_epoch}/{spec.epochs} loss {loss.item():.4f}")
    return net.eval()


def save(out: str | Path, net: Classifier | None, meta: dict[str, Any]) -> None:
    with atomic_dir(out) as tmp:
        if net is not None:
            save_file({k: v.contiguous() for k, v in net.state_dict().items()}, tmp / WEIGHTS)
            meta = {**meta, "sha256": sha256_file(tmp / WEIGHTS)}
        write_json(tmp / META, meta)


class FeatureSpace:
    """Callable images/points -> feature vectors, with an id for the protocol."""

    def __init__(self, root: str | Path):
        root = Path(root)
        meta_path = root / META
        if not meta_path.exists():
            raise DataError(f"{meta_path}: missing; run the featurenet stage first")
        self.meta = json.loads(meta_path.read_text())
        self.net: Classifier | None = None
        if self.meta["kind"] == "classifier":
            weights = root / WEIGHTS
            if sha256_file(weights) != self.meta["sha256"]:
                raise DataError(f"{weights}: sha256 does not match {META}")
            a = self.meta["architecture"]
            self.net = Classifier(**a).eval()
            self.net.load_state_dict(load_file(weights))
        self.id = self.meta.get("sha256", "identity")

    @torch.no_grad()
    def __call__(self, x: torch.Tensor, batch: int = 2048) -> torch.Tensor:
        if self.net is None:
            return x.flatten(1).double()
        return torch.cat([self.net.embed(x[i:i + batch]) for i in range(0, len(x), batch)]).double()
