"""Embedded sources, Parquet shards + manifest, load_split, deterministic batch plans."""
from __future__ import annotations

import json
import shutil

import numpy as np
import pytest
import torch

from genflow import config
from genflow.data import shards
from genflow.data.embedded import digits, mixture, mixture_centers
from genflow.data.loader import BatchPlan, load_split
from genflow.data.prepare import prepare
from genflow.data.sources import load_source
from genflow.errors import DataError
from genflow.io import sha256_file

from conftest import quiet, tiny_params_dict


def test_digits_source():
    raw = digits()
    assert raw.kind == "image" and raw.num_classes == 10
    assert raw.x.shape == (1797, 8, 8, 1) and raw.x.dtype == np.uint8
    assert raw.x.min() == 0 and raw.x.max() == 255
    assert sorted(np.unique(raw.labels)) == list(range(10))
    assert raw.labels.shape == (1797,)


def test_mixture_centers():
    ring = mixture_centers("ring8")
    assert ring.shape == (8, 2)
    np.testing.assert_allclose(np.linalg.norm(ring, axis=1), 2.0, atol=1e-12)
    angles = np.sort(np.mod(np.arctan2(ring[:, 1], ring[:, 0]), 2 * np.pi))
    np.testing.assert_allclose(np.diff(angles), 2 * np.pi / 8, atol=1e-12)
    grid = mixture_centers("grid25")
    assert grid.shape == (25, 2)
    values = [-4, -2, 0, 2, 4]
    assert {tuple(p) for p in grid} == {(a, b) for a in values for b in values}


def test_mixture_samples_lie_near_their_component():
    raw = mixture("ring8", 5000, 0.05, seed=3)
    assert raw.x.shape == (5000, 2) and raw.x.dtype == np.float32
    offsets = raw.x - raw.centers[raw.components]
    assert abs(offsets.std() - 0.05) < 0.005
    assert np.bincount(raw.components, minlength=8).min() > 500


def test_same_seed_same_data_different_seed_different():
    a, b, c = (mixture("grid25", 1000, 0.05, seed=s) for s in (0, 0, 1))
    np.testing.assert_array_equal(a.x, b.x)
    np.testing.assert_array_equal(a.components, b.components)
    assert not np.array_equal(a.x, c.x)
    assert not np.array_equal(shards.split_indices(1000, 0.1, 0.1, 0)["train"],
                              shards.split_indices(1000, 0.1, 0.1, 1)["train"])


def test_split_indices_partition():
    parts = shards.split_indices(1797, 0.1, 0.2, seed=0)
    assert {k: len(v) for k, v in parts.items()} == {"test": 359, "val": 180, "train": 1258}
    allrows = np.concatenate(list(parts.values()))
    assert len(np.unique(allrows)) == 1797 and allrows.min() == 0 and allrows.max() == 1796


def _write(raw, out, seed=0):
    return shards.write_prepared(raw, out, source={"test": True}, val_fraction=0.1, test_fraction=0.2, seed=seed)


def test_write_prepared_manifest_and_shards(tmp_path):
    raw = mixture("ring8", 1000, 0.05, seed=0)
    manifest = _write(raw, tmp_path / "ring8")
    on_disk = json.loads((tmp_path / "ring8" / "manifest.json").read_text())
    assert on_disk == manifest
    assert manifest["kind"] == "points" and manifest["shape"] == [2] and manifest["num_classes"] == 0
    assert len(manifest["mixture"]["centers"]) == 8 and manifest["mixture"]["std"] == 0.05
    counts = {k: v["rows"] for k, v in manifest["splits"].items()}
    assert counts == {"train": 700, "val": 100, "test": 200}
    files = set()
    for split, entry in manifest["splits"].items():
        assert sum(s["rows"] for s in entry["shards"]) == entry["rows"]
        for shard in entry["shards"]:
            assert shard["file"].startswith(f"{split}-") and shard["file"].endswith(".parquet")
            assert sha256_file(tmp_path / "ring8" / shard["file"]) == shard["sha256"]
            files.add(shard["file"])
    assert {p.name for p in (tmp_path / "ring8").iterdir()} == files | {"manifest.json"}

    # the splits are disjoint and cover every row: the points themselves identify rows
    loaded = {s: load_split(tmp_path / "ring8", s).x.numpy() for s in shards.SPLITS}
    rows = [tuple(r) for s in shards.SPLITS for r in loaded[s]]
    assert len(rows) == len(set(rows)) == 1000
    assert set(rows) == {tuple(r) for r in raw.x}


def test_load_split_roundtrip_images(prepared_dir):
    raw = digits()
    spec = config.validate(tiny_params_dict()).data["digits"]
    parts = shards.split_indices(len(raw.x), spec.val_fraction, spec.test_fraction, spec.seed)
    for split in shards.SPLITS:
        data = load_split(prepared_dir / "digits", split)
        idx = parts[split]
        assert data.kind == "image" and data.num_classes == 10 and data.shape == (1, 8, 8)
        assert data.x.dtype == torch.uint8
        np.testing.assert_array_equal(data.x.numpy(), raw.x[idx].transpose(0, 3, 1, 2))
        np.testing.assert_array_equal(data.labels.numpy(), raw.labels[idx])
    x, y = load_split(prepared_dir / "digits", "test").batch(torch.tensor([0, 1]))
    assert x.dtype == torch.float32 and x.min() >= -1 and x.max() <= 1 and y.dtype == torch.int64


def test_load_split_roundtrip_points(prepared_dir):
    spec = config.validate(tiny_params_dict()).data["ring8"]
    raw = load_source(spec)
    parts = shards.split_indices(len(raw.x), spec.val_fraction, spec.test_fraction, spec.seed)
    for split in shards.SPLITS:
        data = load_split(prepared_dir / "ring8", split)
        assert data.kind == "points" and data.labels is None and data.x.dtype == torch.float32
        np.testing.assert_array_equal(data.x.numpy(), raw.x[parts[split]])


def test_many_small_shards_roundtrip(tmp_path, monkeypatch):
    monkeypatch.setattr(shards, "SHARD_BYTES", 2048)
    raw = digits()
    manifest = _write(raw, tmp_path / "d")
    assert len(manifest["splits"]["train"]["shards"]) > 3
    parts = shards.split_indices(len(raw.x), 0.1, 0.2, 0)
    data = load_split(tmp_path / "d", "train")
    np.testing.assert_array_equal(data.x.numpy(), raw.x[parts["train"]].transpose(0, 3, 1, 2))
    np.testing.assert_array_equal(data.labels.numpy(), raw.labels[parts["train"]])


def test_prepare_is_reproducible(tmp_path, prepared_dir):
    spec = config.validate(tiny_params_dict()).data["ring8"]
    prepare(spec, tmp_path / "again", log=quiet)
    for shard in json.loads((tmp_path / "again" / "manifest.json").read_text())["splits"]["train"]["shards"]:
        assert sha256_file(tmp_path / "again" / shard["file"]) == sha256_file(prepared_dir / "ring8" / shard["file"])


def test_corrupted_shard_raises_data_error(tmp_path, prepared_dir):
    root = tmp_path / "ring8"
    shutil.copytree(prepared_dir / "ring8", root)
    shard = root / "train-00000.parquet"
    blob = bytearray(shard.read_bytes())
    middle = len(blob) // 2
    blob[middle:middle + 8] = bytes(b ^ 0xFF for b in blob[middle:middle + 8])
    shard.write_bytes(bytes(blob))
    with pytest.raises(DataError, match="train-00000.parquet.*sha256"):
        load_split(root, "train")
    load_split(root, "test")  # the other splits are untouched


def test_missing_manifest_or_shard(tmp_path, prepared_dir):
    with pytest.raises(DataError, match="manifest"):
        load_split(tmp_path / "nothing", "train")
    root = tmp_path / "ring8"
    shutil.copytree(prepared_dir / "ring8", root)
    (root / "val-00000.parquet").unlink()
    with pytest.raises(DataError, match="val-00000.parquet.*missing"):
        load_split(root, "val")
    with pytest.raises(DataError, match="no split 'holdout'"):
        load_split(root, "holdout")
    (root / "manifest.json").unlink()
    with pytest.raises(DataError, match="manifest.json"):
        load_split(root, "train")


# -- BatchPlan ---------------------------------------------------------------------

def test_one_worker_double_batch_equals_two_workers():
    n, b = 1000, 16
    single = BatchPlan(n, 2 * b, seed=5)
    ranks = [BatchPlan(n, b, seed=5, rank=r, world_size=2) for r in range(2)]
    assert single.steps_per_epoch == ranks[0].steps_per_epoch == n // (2 * b)
    for step in range(3 * single.steps_per_epoch + 2):  # across epoch boundaries
        together = torch.cat([plan.indices(step) for plan in ranks])
        assert torch.equal(single.indices(step), together)
        assert len(ranks[0].indices(step)) == b


def test_epoch_is_a_permutation_and_epochs_differ():
    n, b = 100, 10
    plan = BatchPlan(n, b, seed=0)
    epochs = [torch.cat([plan.indices(e * plan.steps_per_epoch + s) for s in range(plan.steps_per_epoch)])
              for e in range(3)]
    for order in epochs:
        assert sorted(order.tolist()) == list(range(n))
    assert not torch.equal(epochs[0], epochs[1]) and not torch.equal(epochs[1], epochs[2])
    # a pure function of (seed, step): a fresh plan, queried out of order, agrees
    fresh = BatchPlan(n, b, seed=0)
    assert torch.equal(fresh.indices(15), plan.indices(15)) and torch.equal(fresh.indices(3), epochs[0][30:40])
    assert not torch.equal(BatchPlan(n, b, seed=1).indices(0), plan.indices(0))


def test_incomplete_last_batch_is_dropped():
    plan = BatchPlan(105, 10, seed=0)
    assert plan.steps_per_epoch == 10
    seen = torch.cat([plan.indices(s) for s in range(10)])
    assert len(seen) == 100 and len(set(seen.tolist())) == 100


def test_dataset_smaller_than_global_batch():
    with pytest.raises(ValueError, match="fewer than one global batch"):
        BatchPlan(30, 16, seed=0, world_size=2)
    BatchPlan(32, 16, seed=0, world_size=2)
