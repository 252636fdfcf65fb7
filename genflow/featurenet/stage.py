"""The featurenet step: the feature space of one prepared dataset."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from genflow.data.loader import Split, load_columns, load_split
from genflow.data.shards import manifest_hash, read_manifest
from genflow.errors import DataError
from genflow.featurenet import network as featurenet
from genflow.io import write_json

CHANNEL_LABELS = ("label_r", "label_g", "label_b")


def channel_split(data_dir: Path, split: str) -> Split:
    """Every channel of a stacked dataset as its own 1-channel digit, labelled by its column.

    Stacked images reuse a few thousand base digits many times; deduplicating the
    channel images keeps one copy of each, so an epoch costs what one on the base
    digits costs, not three times the stacked dataset."""
    data = load_split(data_dir, split)
    labels = np.stack(list(load_columns(data_dir, split, CHANNEL_LABELS).values()), axis=1)
    n, c, h, w = data.x.shape
    channels = data.x.reshape(n * c, 1, h, w).numpy()
    _, first = np.unique(channels.reshape(n * c, -1), axis=0, return_index=True)
    keep = np.sort(first)
    return Split(kind="image", x=torch.from_numpy(channels[keep]),
                 labels=torch.from_numpy(labels.reshape(-1)[keep].astype(np.int64)), num_classes=10)


def build_feature_space(data_dir: Path, spec, out: Path, log=print, metrics_out: Path | None = None) -> dict:
    """The feature space of one dataset in ``out``; its test accuracy (and feature size) as a DVC
    metrics file in ``metrics_out`` (metrics/featurenet/<dataset>.json)."""
    meta = _build(data_dir, spec, out, log)
    if metrics_out is not None:  # 2-D points are their own features: their size is all there is to say
        points = {"feature_dim": read_manifest(data_dir)["shape"][0]} if meta["kind"] == "identity" else {}
        write_json(metrics_out, {**points, **{k: meta[k] for k in ("test_accuracy", "feature_dim") if k in meta}})
    return meta


def _build(data_dir: Path, spec, out: Path, log) -> dict:
    manifest = read_manifest(data_dir)
    # no code revision here: identical weights must hash identically across commits, or every
    # commit would invalidate all evaluations downstream; the weights' sha256 is the identity
    meta = {"data_manifest_sha256": manifest_hash(data_dir)}
    if manifest["kind"] != "image":
        meta["kind"] = "identity"
        featurenet.save(out, None, meta)
        log(f"[featurenet] {data_dir.name}: 2-D points, identity feature space")
        return meta
    height, width = manifest["shape"][:2]
    if height != width or height < 8 or height & (height - 1):
        raise DataError(f"{data_dir / 'manifest.json'}: {height}x{width} images; the FID feature network, like "
                        "every conv model, needs square power-of-two images of at least 8x8 (an image folder "
                        "takes `size: 8|16|32|64` in its data entry, an IDX source `pad_to: 32` for 28x28 "
                        "MNIST)")
    channelwise = set(CHANNEL_LABELS) <= set(manifest.get("factors", []))
    read = channel_split if channelwise else load_split
    train, test = read(data_dir, "train"), read(data_dir, "test")
    if channelwise:
        log(f"[featurenet] {data_dir.name}: stacked channels, a digit classifier on {len(train)} distinct "
            f"channel images")
    net = featurenet.train_classifier(train, spec, log)
    c, h, _ = train.shape
    meta.update(kind="channelwise" if channelwise else "classifier", spec=spec.model_dump(mode="json"),
                architecture={"in_channels": c, "resolution": h, "num_classes": train.num_classes, "width": spec.width},
                test_accuracy=round(featurenet.accuracy(net, test), 6),
                feature_dim=featurenet.FEATURE_DIM * (manifest["shape"][2] if channelwise else 1))
    featurenet.save(out, net, meta)
    log(f"[featurenet] {data_dir.name}: test accuracy {meta['test_accuracy']:.4f} on {len(test)} images")
    return meta
