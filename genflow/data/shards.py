"""Prepared datasets: seeded splits written as Parquet shards plus a manifest.

Layout of ``data/prepared/<name>/``::

    train-00000.parquet ...   one row per example
    val-00000.parquet ...
    test-00000.parquet ...
    manifest.json             schema, counts, sha256 of every shard, source

Images are stored as ``fixed_size_binary(H*W*C)`` (uint8, HWC order, the
shape in the ``genflow.shape`` schema metadata) so a whole column maps to one
numpy array without per-row copies; 2-D points as ``fixed_size_list<float32>[D]``.
Ground-truth factors (sprites, stacked digits) are extra numeric columns.
"""
from __future__ import annotations

import json
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from genflow.data.raw import SPLITS, RawData, split_indices  # noqa: F401  (split_indices: re-exported)
from genflow.errors import DataError
from genflow.io import atomic_dir, sha256_file, write_json

SHARD_BYTES = 64 << 20
WRITE_THREADS = 4
FORMAT_VERSION = 1
SHAPE_KEY = "genflow.shape"


def to_table(raw: RawData, rows: np.ndarray) -> pa.Table:
    x = np.ascontiguousarray(raw.x[rows])
    columns: dict[str, pa.Array] = {}
    if raw.kind == "image":
        width = int(np.prod(x.shape[1:]))
        columns["image"] = pa.FixedSizeBinaryArray.from_buffers(
            pa.binary(width), len(x), [None, pa.py_buffer(x.tobytes())])
    else:
        flat = pa.array(x.reshape(-1), type=pa.float32())
        columns["x"] = pa.FixedSizeListArray.from_arrays(flat, x.shape[1])
    if raw.labels is not None:
        wide = raw.num_classes > np.iinfo(np.int16).max
        columns["label"] = pa.array(raw.labels[rows], type=pa.int32() if wide else pa.int16())
    if raw.components is not None:
        columns["component"] = pa.array(raw.components[rows], type=pa.int16())
    for name, values in raw.factors.items():
        columns[name] = pa.array(values[rows])
    metadata = {SHAPE_KEY: json.dumps(list(raw.x.shape[1:]))} if raw.kind == "image" else None
    return pa.table(columns, metadata=metadata)


def column_to_numpy(column: pa.ChunkedArray) -> np.ndarray:
    """Zero-copy view of a fixed-size binary / list column as a 2-D numpy array."""
    array = column.combine_chunks()
    if pa.types.is_fixed_size_binary(array.type):
        width = array.type.byte_width
        data = np.frombuffer(array.buffers()[1], dtype=np.uint8)
        return data[array.offset * width:(array.offset + len(array)) * width].reshape(len(array), width)
    width = array.type.list_size
    return array.flatten().to_numpy(zero_copy_only=False).reshape(len(array), width)


def _write_shard(piece: pa.Table, path: Path) -> dict[str, Any]:
    pq.write_table(piece, path, compression="zstd")
    return {"file": path.name, "rows": piece.num_rows, "sha256": sha256_file(path)}


def _write_split(table: pa.Table, out: Path, split: str) -> list[dict[str, Any]]:
    """Shards of at most SHARD_BYTES, written by a few threads at once (pyarrow's zstd
    encoder releases the GIL); a shard's bytes depend only on its rows."""
    row_bytes = max(1, table.nbytes // max(1, table.num_rows))
    rows_per_shard = max(1, SHARD_BYTES // row_bytes)
    starts = range(0, max(table.num_rows, 1), rows_per_shard)
    pieces = [(table.slice(start, rows_per_shard), out / f"{split}-{index:05d}.parquet")
              for index, start in enumerate(starts)]
    with ThreadPoolExecutor(max_workers=min(WRITE_THREADS, len(pieces))) as pool:
        return list(pool.map(lambda job: _write_shard(*job), pieces))


def write_prepared(raw: RawData, out: str | Path, *, source: dict[str, Any], val_fraction: float,
                   test_fraction: float, seed: int) -> dict[str, Any]:
    """Split ``raw``, write the shards and manifest into ``out`` atomically; return the manifest."""
    splits = raw.splits or split_indices(len(raw.x), val_fraction, test_fraction, seed)
    with atomic_dir(out) as tmp:
        manifest: dict[str, Any] = {
            "format_version": FORMAT_VERSION,
            "kind": raw.kind,
            "shape": list(raw.x.shape[1:]),
            "num_classes": raw.num_classes,
            "class_names": raw.class_names,
            "factors": sorted(raw.factors),
            "source": source,
            "splits": {},
        }
        if raw.centers is not None:
            manifest["mixture"] = {"centers": raw.centers.tolist(), "std": raw.std}
        for split, rows in splits.items():
            table = to_table(raw, rows)
            manifest["schema"] = table.schema.to_string(show_schema_metadata=False)
            manifest["splits"][split] = {"rows": int(len(rows)), "shards": _write_split(table, tmp, split)}
        write_json(tmp / "manifest.json", manifest)
    return manifest


def read_manifest(root: str | Path) -> dict[str, Any]:
    path = Path(root) / "manifest.json"
    if not path.exists():
        raise DataError(f"{path}: no manifest; run the prepare stage first (dvc repro prepare)")
    try:
        return json.loads(path.read_text())
    except json.JSONDecodeError as exc:
        raise DataError(f"{path}: manifest is not valid JSON ({exc})") from None


def manifest_hash(root: str | Path) -> str:
    return sha256_file(Path(root) / "manifest.json")


def read_split(root: str | Path, split: str, verify: bool = True) -> pa.Table:
    """Read one split's shards (checking their sha256 against the manifest)."""
    root = Path(root)
    manifest = read_manifest(root)
    if split not in manifest["splits"]:
        raise DataError(f"{root}: no split {split!r}; available: {sorted(manifest['splits'])}")
    tables = []
    for shard in manifest["splits"][split]["shards"]:
        path = root / shard["file"]
        if not path.exists():
            raise DataError(f"{path}: shard listed in the manifest is missing")
        if verify and sha256_file(path) != shard["sha256"]:
            raise DataError(f"{path}: sha256 does not match the manifest (corrupt or modified shard)")
        tables.append(pq.read_table(path))
    return pa.concat_tables(tables) if len(tables) > 1 else tables[0]
