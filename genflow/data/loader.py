"""Prepared Parquet split -> in-memory tensors -> deterministic per-rank batches.

The batch a rank sees at a step is a pure function of (seed, step, rank,
world size): each epoch is a seeded permutation, the global batch is
``batch_size * world_size`` consecutive indices of it and rank r takes the
r-th slice. So 1 worker with batch 2B sees exactly the examples 2 workers with
batch B see together, and resuming at step s needs nothing but s.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from genflow.data.shards import column_to_numpy, read_manifest, read_split
from genflow.errors import DataError


@dataclass
class Split:
    kind: str  # "image" or "points"
    x: torch.Tensor  # uint8 (N, C, H, W) images or float32 (N, D) points
    labels: torch.Tensor | None  # int64 (N,)
    num_classes: int

    def __len__(self) -> int:
        return self.x.shape[0]

    @property
    def shape(self) -> tuple[int, ...]:
        return tuple(self.x.shape[1:])

    def without_class(self, label: int) -> "Split":
        """The rows of every other class (anomaly detection trains without one class)."""
        if self.labels is None:
            raise ValueError("the split has no labels to hold a class out of")
        keep = self.labels != label
        return Split(kind=self.kind, x=self.x[keep], labels=self.labels[keep], num_classes=self.num_classes)

    def batch(self, index: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor | None]:
        """Rows ``index`` as model inputs: images scaled to [-1, 1], points as they are."""
        x = self.x[index]
        if self.kind == "image":
            x = x.float().div_(127.5).sub_(1.0)
        labels = self.labels[index] if self.labels is not None else None
        return x, labels


def load_split(root: str | Path, split: str = "train", verify: bool = True) -> Split:
    manifest = read_manifest(root)
    table = read_split(root, split, verify=verify)
    labels = None
    if "label" in table.column_names:
        labels = torch.from_numpy(table.column("label").to_numpy().astype(np.int64))
    if manifest["kind"] == "image":
        h, w, c = manifest["shape"]
        pixels = column_to_numpy(table.column("image")).reshape(-1, h, w, c)
        x = torch.from_numpy(np.ascontiguousarray(pixels.transpose(0, 3, 1, 2)))
    else:
        x = torch.from_numpy(column_to_numpy(table.column("x")).astype(np.float32))
    return Split(kind=manifest["kind"], x=x, labels=labels, num_classes=manifest["num_classes"])


def load_columns(root: str | Path, split: str, names) -> dict[str, np.ndarray]:
    """Extra per-row columns of a split (factors such as sprites' ``scale``), by name."""
    table = read_split(root, split)
    missing = [name for name in names if name not in table.column_names]
    if missing:
        raise DataError(f"{root}: split {split!r} has no column(s) {missing}; it has {table.column_names}")
    return {name: table.column(name).to_numpy() for name in names}


class BatchPlan:
    """Which rows rank ``rank`` of ``world_size`` trains on at each step."""

    def __init__(self, n: int, batch_size: int, seed: int, rank: int = 0, world_size: int = 1):
        self.global_batch = batch_size * world_size
        if n < self.global_batch:
            raise ValueError(f"dataset has {n} rows, fewer than one global batch "
                             f"({batch_size} x {world_size} workers)")
        self.n, self.batch_size, self.seed = n, batch_size, seed
        self.rank, self.world_size = rank, world_size
        self.steps_per_epoch = n // self.global_batch
        self._epoch, self._order = -1, None

    def epoch_of(self, step: int) -> int:
        return step // self.steps_per_epoch

    def indices(self, step: int) -> torch.Tensor:
        epoch = self.epoch_of(step)
        if epoch != self._epoch:  # the set_epoch of a DistributedSampler, derived from the step
            gen = torch.Generator().manual_seed(self.seed * 1_000_003 + epoch)
            self._order, self._epoch = torch.randperm(self.n, generator=gen), epoch
        start = (step % self.steps_per_epoch) * self.global_batch + self.rank * self.batch_size
        return self._order[start:start + self.batch_size]
