"""``source: parquet``: an existing Parquet dataset in genflow's schema.

Columns: ``image`` as ``fixed_size_binary(H*W*C)`` uint8 HWC (the shape comes
from the ``genflow.shape`` schema metadata genflow writes, or from ``shape``
in params) or ``x`` as ``fixed_size_list<float32>[D]`` for points; optional
integer ``label``; optional ``split`` (train / val / test) to keep a fixed
split; any other numeric column is carried along as a factor.
"""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from genflow.data.images import check_dimensions
from genflow.data.raw import SPLITS, RawData, split_indices
from genflow.data.shards import column_to_numpy
from genflow.errors import DataError

SHAPE_KEY = b"genflow.shape"
RESERVED = {"image", "x", "label", "split", "component"}


def _files(path: Path) -> list[Path]:
    if path.is_file():
        return [path]
    if not path.is_dir():
        raise DataError(f"{path}: Parquet file or folder not found")
    files = sorted(path.rglob("*.parquet"))
    if not files:
        raise DataError(f"{path}: folder holds no *.parquet files")
    return files


def read_tables(path: Path) -> pa.Table:
    tables = []
    for file in _files(path):
        try:
            tables.append(pq.read_table(file))
        except (pa.ArrowException, OSError) as exc:
            raise DataError(f"{file}: unreadable Parquet ({exc})") from None
    try:
        return pa.concat_tables(tables)
    except pa.ArrowInvalid as exc:
        raise DataError(f"{path}: the Parquet files have different schemas ({exc})") from None


def _image_shape(table: pa.Table, spec, path: Path) -> tuple[int, int, int]:
    meta = table.schema.metadata or {}
    shape = spec.shape or (json.loads(meta[SHAPE_KEY]) if SHAPE_KEY in meta else None)
    if shape is None:
        raise DataError(f"{path}: column 'image' has no genflow.shape metadata; set shape: [H, W, C] in params")
    h, w, c = shape
    check_dimensions(str(path), h, w, c)
    width = table.schema.field("image").type.byte_width
    if h * w * c != width:
        raise DataError(f"{path}: shape {h}x{w}x{c} = {h * w * c} bytes, but column 'image' holds {width} per row")
    return h, w, c


def _features(table: pa.Table, spec, path: Path) -> tuple[str, np.ndarray]:
    if "image" in table.column_names:
        if not pa.types.is_fixed_size_binary(table.schema.field("image").type):
            raise DataError(f"{path}: column 'image' must be fixed_size_binary(H*W*C), "
                            f"got {table.schema.field('image').type}")
        h, w, c = _image_shape(table, spec, path)
        return "image", column_to_numpy(table.column("image")).reshape(-1, h, w, c).copy()
    if "x" in table.column_names and pa.types.is_fixed_size_list(table.schema.field("x").type):
        return "points", column_to_numpy(table.column("x")).astype(np.float32)
    raise DataError(f"{path}: no 'image' (fixed_size_binary) or 'x' (fixed_size_list<float32>) column; "
                    f"columns are {table.column_names}")


def _is_number(kind: pa.DataType) -> bool:
    return pa.types.is_integer(kind) or pa.types.is_floating(kind)


def _fixed_splits(table: pa.Table, path: Path) -> dict[str, np.ndarray]:
    values = np.asarray(table.column("split").to_pylist(), dtype=object)
    unknown = set(values) - set(SPLITS)
    if unknown:
        raise DataError(f"{path}: column 'split' holds {sorted(map(str, unknown))}; allowed: {', '.join(SPLITS)}")
    return {name: np.flatnonzero(values == name) for name in SPLITS}


def parquet_source(spec) -> RawData:
    path = Path(spec.path)
    table = read_tables(path)
    if table.num_rows == 0:
        raise DataError(f"{path}: the Parquet dataset has no rows")
    kind, x = _features(table, spec, path)
    labels = None
    if "label" in table.column_names:
        if not pa.types.is_integer(table.schema.field("label").type):
            raise DataError(f"{path}: column 'label' must be integer, got {table.schema.field('label').type}")
        labels = table.column("label").to_numpy().astype(np.int64)
        if labels.min() < 0:
            raise DataError(f"{path}: column 'label' holds negative values")
    factors = {f.name: table.column(f.name).to_numpy() for f in table.schema
               if f.name not in RESERVED and _is_number(f.type)}
    splits = (_fixed_splits(table, path) if "split" in table.column_names
              else split_indices(len(x), spec.val_fraction, spec.test_fraction, spec.seed))
    if labels is None and spec.num_classes:
        raise DataError(f"{path}: num_classes is set but there is no 'label' column")
    known = _prepared_manifest(path)  # genflow's own shards: keep its class count and names
    num_classes = spec.num_classes or known.get("num_classes") or (int(labels.max()) + 1 if labels is not None else 0)
    if labels is not None and labels.max() >= num_classes:
        raise DataError(f"{path}: label {labels.max()} does not fit num_classes {num_classes}")
    components = table.column("component").to_numpy().astype(np.int64) if "component" in table.column_names else None
    return RawData(kind=kind, x=x, labels=labels, num_classes=num_classes, factors=factors, splits=splits,
                   components=components, class_names=known.get("class_names"))


def _prepared_manifest(path: Path) -> dict:
    """The manifest.json of a genflow prepared folder holding ``path``, if any."""
    folder = path if path.is_dir() else path.parent
    manifest = folder / "manifest.json"
    try:
        return json.loads(manifest.read_text()) if manifest.is_file() else {}
    except (OSError, json.JSONDecodeError):
        return {}
