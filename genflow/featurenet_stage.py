"""The featurenet step: the feature space of one prepared dataset."""
from __future__ import annotations

from pathlib import Path

from genflow import featurenet
from genflow.data.loader import load_split
from genflow.data.shards import manifest_hash, read_manifest


def build_feature_space(data_dir: Path, spec, out: Path, log=print) -> dict:
    manifest = read_manifest(data_dir)
    # no code revision here: identical weights must hash identically across commits, or every
    # commit would invalidate all evaluations downstream; the weights' sha256 is the identity
    meta = {"data_manifest_sha256": manifest_hash(data_dir)}
    if manifest["kind"] != "image":
        meta["kind"] = "identity"
        featurenet.save(out, None, meta)
        log(f"[featurenet] {data_dir.name}: 2-D points, identity feature space")
        return meta
    train, test = load_split(data_dir, "train"), load_split(data_dir, "test")
    net = featurenet.train_classifier(train, spec, log)
    c, h, _ = train.shape
    meta.update(kind="classifier", spec=spec.model_dump(mode="json"),
                architecture={"in_channels": c, "resolution": h, "num_classes": train.num_classes, "width": spec.width},
                test_accuracy=round(featurenet.accuracy(net, test), 6), feature_dim=featurenet.FEATURE_DIM)
    featurenet.save(out, net, meta)
    log(f"[featurenet] {data_dir.name}: test accuracy {meta['test_accuracy']:.4f} on {len(test)} images")
    return meta
