"""`genflow augment`: a labelled dataset drawn from an exported conditional generator.

The file is Parquet in genflow's own schema (genflow.data.shards.to_table: ``image`` as
fixed_size_binary uint8 HWC with its ``genflow.shape``, or ``x`` for points, and ``label``), so
``source: parquet`` in params.yaml's data section prepares it like any dataset, alone or as
the generated half of an augmented one. Images are rounded to uint8 as the model card's
``to_uint8`` says, the same rounding the evaluate stage's CAS and augmentation gain measure
(genflow.evaluate.augmentation). Runs on the export folder alone (ONNX Runtime + model card).
"""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pyarrow.parquet as pq

from genflow.data.raw import MAX_SOURCE_BYTES, RawData
from genflow.data.shards import to_table
from genflow.errors import DataError, GenflowError
from genflow.export.exported import ExportedModel
from genflow.io import atomic_path

BATCH = 1024  # latents per generator call
PROVENANCE_KEY = b"genflow.generated_by"


def check_request(model_dir: str | Path, per_class: int, out: str | Path) -> None:
    """What can be refused before a model is loaded: the folder, the count, the output path."""
    model_dir, out = Path(model_dir), Path(out)
    if not model_dir.is_dir():
        raise DataError(f"{model_dir}: no such export folder (`dvc repro export@<model>` writes export/<model>)")
    if per_class < 1:
        raise GenflowError(f"--per-class {per_class}: give at least 1 sample per class")
    if out.suffix != ".parquet":
        raise GenflowError(f"--out {out}: the dataset is written as Parquet; give a file name ending in .parquet")
    if not out.parent.is_dir():
        raise DataError(f"--out {out}: folder {out.parent} does not exist")


def _to_rows(x: np.ndarray, is_image: bool) -> np.ndarray:
    """Generator output -> a prepared dataset's rows: uint8 (N, H, W, C) images or float32 points."""
    if not is_image:
        return x.astype(np.float32)
    pixels = np.clip(np.rint((x + 1.0) * 127.5), 0, 255).astype(np.uint8)  # the card's to_uint8
    return np.ascontiguousarray(pixels.transpose(0, 2, 3, 1))


def augment(model: ExportedModel, per_class: int, seed: int, out: str | Path) -> np.ndarray:
    """``per_class`` samples of every class (class-major order) -> ``out``; returns the labels."""
    model.require("generator", "augment")
    c_dim = model.io["c_dim"]
    if not c_dim:
        raise GenflowError(f"augment: model {model.name!r} is unconditional (c_dim 0), so it cannot draw samples "
                           "of a given class; augment needs a conditional model (c_dim > 0), such as cgan_digits "
                           "or cvae_digits")
    labels = np.repeat(np.arange(c_dim, dtype=np.int64), per_class)
    shape = model.io["data_shape"]
    if len(labels) * int(np.prod(shape)) > MAX_SOURCE_BYTES:
        raise GenflowError(f"--per-class {per_class}: {len(labels)} samples of shape {shape} exceed the "
                           f"{MAX_SOURCE_BYTES} bytes a Parquet source may hold; ask for fewer")
    z = np.random.default_rng(seed).standard_normal((len(labels), model.io["z_dim"]))
    x = np.concatenate([model.generate(z[i:i + BATCH], labels[i:i + BATCH]) for i in range(0, len(z), BATCH)])
    raw = RawData(kind="image" if model.is_image else "points", x=_to_rows(x, model.is_image), labels=labels,
                  num_classes=c_dim)
    table = to_table(raw, np.arange(len(labels)))
    provenance = {"model": model.name, "model_state_sha256": model.card.get("model_state_sha256"),
                  "per_class": per_class, "seed": seed, "classes": (model.card.get("data") or {}).get("class_names")}
    table = table.replace_schema_metadata({**(table.schema.metadata or {}),
                                           PROVENANCE_KEY: json.dumps(provenance).encode()})
    with atomic_path(out) as tmp:
        pq.write_table(table, tmp, compression="zstd")
    return labels
