"""``source: parquet``: an existing Parquet dataset in genflow's schema.

Columns: ``image`` as ``fixed_size_binary(H*W*C)`` uint8 HWC (the shape comes
from the ``genflow.shape`` schema metadata genflow writes, or from ``shape``
in params) or ``x`` as ``fixed_size_list<float32>[D]`` for points; optional
integer ``label``; optional ``split`` (train / val / test) to keep a fixed
split; any other numeric column is carried along as a factor.

Everything read is checked before it is used, the file named: no nulls in any
column used, finite points and factors, labels in 0..MAX_CLASSES-1, a
well-formed ``genflow.shape`` that every file of a folder agrees on. A folder
is read like Spark and pyarrow write one: its ``*.parquet`` files, recursively,
skipping names that start with ``.`` or ``_`` (``_temporary/``, ``_SUCCESS``,
``.part-0.parquet.crc``); a sub-folder named ``*.parquet`` is walked, not read
as one more file (it used to be read whole and then once more file by file).
Only the columns genflow uses are decoded, and only after the footer says they
fit in MAX_SOURCE_BYTES (a small file of equal images can decode to gigabytes).
"""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from genflow.data.images import check_dimensions
from genflow.data.raw import MAX_SOURCE_BYTES, SPLITS, RawData, first_empty_split, split_indices
from genflow.data.shards import column_to_numpy
from genflow.errors import DataError

SHAPE_KEY = b"genflow.shape"
RESERVED = {"image", "x", "label", "split", "component"}
# the most classes a dataset may have: the largest num_classes params accept
# (genflow.data.specs.ParquetData). Without num_classes the class count is the largest label + 1,
# so one stray label of 10**9 would otherwise build a 10**9-way classifier head.
MAX_CLASSES = 100_000
MAX_COMPONENT = np.iinfo(np.int16).max  # prepared shards store the mixture component as int16


# -- files ---------------------------------------------------------------------------------

def _is_ignored(path: Path, root: Path) -> bool:
    """Spark / pyarrow convention: a name starting with '.' or '_' is bookkeeping, not data."""
    return any(part.startswith((".", "_")) for part in path.relative_to(root).parts)


def _files(path: Path) -> list[Path]:
    if path.is_file():
        return [path]
    if not path.is_dir():
        raise DataError(f"{path}: Parquet file or folder not found")
    files = sorted(p for p in path.rglob("*.parquet") if p.is_file() and not _is_ignored(p, path))
    if not files:
        raise DataError(f"{path}: folder holds no *.parquet files")
    return files


def _row_width(kind: pa.DataType) -> int:
    """Bytes one value of ``kind`` takes once decoded; variable-width types count their offset."""
    if pa.types.is_fixed_size_list(kind):
        return kind.list_size * _row_width(kind.value_type)
    try:
        return max(1, kind.bit_width // 8)
    except ValueError:  # strings, binary, lists: the rest is in the stored size
        return 4


def _used_columns(schema: pa.Schema) -> list[str] | None:
    """The columns genflow reads: its own and the numeric ones (factors). Others (captions, paths)
    stay on disk; a file with none of them is read whole, so the error can list its columns."""
    used = [field.name for field in schema if field.name in RESERVED or _is_number(field.type)]
    return used or None


def _declared_bytes(meta: pq.FileMetaData, columns: list[str] | None) -> int:
    """What those columns decode to, from the footer alone: the rows times their fixed widths
    (dictionary or run-length encoding may store a million equal images in a few bytes), or
    their uncompressed page sizes, whichever is more."""
    schema = meta.schema.to_arrow_schema()
    wanted = set(columns or schema.names)
    stored = sum(chunk.total_uncompressed_size
                 for group in range(meta.num_row_groups)
                 for chunk in (meta.row_group(group).column(i) for i in range(meta.num_columns))
                 if chunk.path_in_schema.split(".")[0] in wanted)
    per_row = sum(_row_width(field.type) for field in schema if field.name in wanted)
    return max(stored, meta.num_rows * per_row)


def _read_file(file: Path, budget: int) -> pa.Table:
    """One file, refused before decoding when it declares more than ``budget`` bytes: a small file
    of zeros would otherwise inflate to gigabytes, like a gzip bomb."""
    try:
        meta = pq.read_metadata(file)
        columns = _used_columns(meta.schema.to_arrow_schema())
        declared = _declared_bytes(meta, columns)
        if declared > budget:
            raise DataError(f"{file}: decodes to {declared} bytes uncompressed; a Parquet source may hold at most "
                            f"{MAX_SOURCE_BYTES} in all")
        return pq.read_table(file, columns=columns)
    except (pa.ArrowException, OSError) as exc:
        raise DataError(f"{file}: unreadable Parquet ({exc})") from None


def _one_shape_metadata(tables: list[pa.Table], files: list[Path]) -> None:
    """concat_tables keeps the first file's metadata: files that disagree on it are refused."""
    seen: dict[bytes, Path] = {}
    for table, file in zip(tables, files):
        value = (table.schema.metadata or {}).get(SHAPE_KEY)
        if value is not None:
            seen.setdefault(value, file)
    if len(seen) > 1:
        (a, first), (b, second) = list(seen.items())[:2]
        raise DataError(f"{second}: genflow.shape {b.decode(errors='replace')} differs from "
                        f"{a.decode(errors='replace')} in {first}")


def read_tables(path: Path) -> pa.Table:
    files, tables, budget = _files(path), [], MAX_SOURCE_BYTES
    for file in files:
        tables.append(_read_file(file, budget))
        budget -= tables[-1].nbytes
    _one_shape_metadata(tables, files)
    try:
        return pa.concat_tables(tables)
    except pa.ArrowInvalid as exc:
        raise DataError(f"{path}: the Parquet files have different schemas ({exc})") from None


# -- columns -------------------------------------------------------------------------------

def _no_nulls(table: pa.Table, name: str, path: Path) -> None:
    column = table.column(name)
    if column.null_count:
        row = int(np.flatnonzero(column.is_null().to_numpy(zero_copy_only=False))[0])
        raise DataError(f"{path}: column {name!r} has {column.null_count} null values (first at row {row})")


def _parse_shape(raw: bytes, path: Path) -> list[int]:
    """The ``genflow.shape`` metadata: a JSON list of three integers (their range: check_dimensions)."""
    try:
        shape = json.loads(raw)
    except (ValueError, UnicodeDecodeError):
        shape = None
    if not (isinstance(shape, list) and len(shape) == 3
            and all(isinstance(d, int) and not isinstance(d, bool) for d in shape)):
        excerpt = raw[:60].decode(errors="replace")
        raise DataError(f"{path}: genflow.shape metadata {excerpt!r} is not [H, W, C] (three integers); "
                        "fix it, or set shape: [H, W, C] in params")
    return shape


def _image_shape(table: pa.Table, spec, path: Path) -> tuple[int, int, int]:
    meta = table.schema.metadata or {}
    if spec.shape:
        shape = spec.shape
    elif SHAPE_KEY in meta:
        shape = _parse_shape(meta[SHAPE_KEY], path)
    else:
        raise DataError(f"{path}: column 'image' has no genflow.shape metadata; set shape: [H, W, C] in params")
    h, w, c = shape
    check_dimensions(str(path), h, w, c)
    width = table.schema.field("image").type.byte_width
    if h * w * c != width:
        raise DataError(f"{path}: shape {h}x{w}x{c} = {h * w * c} bytes, but column 'image' holds {width} per row")
    return h, w, c


def _first_bad_row(bad: np.ndarray) -> int:
    return int(np.flatnonzero(bad.reshape(len(bad), -1).any(axis=1))[0])


def _points(table: pa.Table, path: Path) -> np.ndarray:
    kind = table.schema.field("x").type
    if not (pa.types.is_integer(kind.value_type) or pa.types.is_floating(kind.value_type)) or kind.list_size < 1:
        raise DataError(f"{path}: column 'x' must be fixed_size_list<float32>[D] with D >= 1, got {kind}")
    _no_nulls(table, "x", path)
    values = table.column("x").combine_chunks().flatten()
    if values.null_count:
        raise DataError(f"{path}: column 'x' has {values.null_count} null coordinates")
    with np.errstate(over="ignore"):  # an overflowing cast is reported below, as a non-finite value
        points = column_to_numpy(table.column("x")).astype(np.float32)
    finite = np.isfinite(points)  # after the cast: a float64 of 1e300 becomes inf in float32
    if not finite.all():
        row = _first_bad_row(~finite)
        raise DataError(f"{path}: column 'x' holds a non-finite value (NaN or Inf, or beyond float32) "
                        f"at row {row}: {points[row].tolist()[:8]}")
    return points


def _features(table: pa.Table, spec, path: Path) -> tuple[str, np.ndarray]:
    if "image" in table.column_names:
        if not pa.types.is_fixed_size_binary(table.schema.field("image").type):
            raise DataError(f"{path}: column 'image' must be fixed_size_binary(H*W*C), "
                            f"got {table.schema.field('image').type}")
        h, w, c = _image_shape(table, spec, path)
        _no_nulls(table, "image", path)  # a null row reads as whatever bytes lie under it
        return "image", column_to_numpy(table.column("image")).reshape(-1, h, w, c).copy()
    if "x" in table.column_names and pa.types.is_fixed_size_list(table.schema.field("x").type):
        return "points", _points(table, path)
    raise DataError(f"{path}: no 'image' (fixed_size_binary) or 'x' (fixed_size_list<float32>) column; "
                    f"columns are {table.column_names}")


def _is_number(kind: pa.DataType) -> bool:
    return pa.types.is_integer(kind) or pa.types.is_floating(kind)


def _integers(table: pa.Table, name: str, path: Path, largest: int) -> np.ndarray:
    """An integer column without nulls, every value in 0..largest."""
    if not pa.types.is_integer(table.schema.field(name).type):
        raise DataError(f"{path}: column {name!r} must be integer, got {table.schema.field(name).type}")
    _no_nulls(table, name, path)
    values = table.column(name).to_numpy().astype(np.int64)
    if values.min() < 0:
        raise DataError(f"{path}: column {name!r} holds negative values (row {int(np.argmin(values))}: "
                        f"{values.min()})")
    if values.max() > largest:
        raise DataError(f"{path}: column {name!r} holds {values.max()} (row {int(np.argmax(values))}); "
                        f"at most {largest} is allowed")
    return values


def _labels(table: pa.Table, spec, path: Path) -> np.ndarray | None:
    if "label" not in table.column_names:
        if spec.num_classes:
            raise DataError(f"{path}: num_classes is set but there is no 'label' column")
        return None
    return _integers(table, "label", path, MAX_CLASSES - 1)


def _factors(table: pa.Table, path: Path) -> dict[str, np.ndarray]:
    factors = {}
    for field in table.schema:
        if field.name in RESERVED or not _is_number(field.type):
            continue
        _no_nulls(table, field.name, path)
        values = table.column(field.name).to_numpy()
        if values.dtype.kind == "f" and not np.isfinite(values).all():
            row = int(np.flatnonzero(~np.isfinite(values))[0])
            raise DataError(f"{path}: column {field.name!r} holds {values[row]} at row {row}; factors must be finite")
        factors[field.name] = values
    return factors


def _fixed_splits(table: pa.Table, spec, path: Path) -> dict[str, np.ndarray]:
    _no_nulls(table, "split", path)
    values = np.asarray(table.column("split").to_pylist(), dtype=object)
    unknown = set(values) - set(SPLITS)
    if unknown:
        raise DataError(f"{path}: column 'split' holds {sorted(map(str, unknown))[:5]}; "
                        f"allowed: {', '.join(SPLITS)}")
    splits = {name: np.flatnonzero(values == name) for name in SPLITS}
    empty = first_empty_split(splits, spec.val_fraction)
    if empty is not None:
        counts = ", ".join(f"{name} {len(rows)}" for name, rows in splits.items())
        hint = " (or set val_fraction: 0 for no validation split)" if empty == "val" else ""
        raise DataError(f"{path}: column 'split' leaves {empty} empty ({counts}); give it {empty} rows{hint}")
    return splits


def _num_classes(labels: np.ndarray | None, spec, known: dict, path: Path) -> int:
    if labels is None:
        return 0
    num_classes = spec.num_classes or known.get("num_classes") or int(labels.max()) + 1
    if labels.max() >= num_classes:
        raise DataError(f"{path}: label {labels.max()} does not fit num_classes {num_classes}")
    return num_classes


def parquet_source(spec) -> RawData:
    path = Path(spec.path)
    table = read_tables(path)
    if table.num_rows == 0:
        raise DataError(f"{path}: the Parquet dataset has no rows")
    kind, x = _features(table, spec, path)
    labels = _labels(table, spec, path)
    factors = _factors(table, path)
    splits = (_fixed_splits(table, spec, path) if "split" in table.column_names
              else split_indices(len(x), spec.val_fraction, spec.test_fraction, spec.seed))
    known = _prepared_manifest(path) if labels is not None else {}  # genflow's own shards: its classes
    components = (_integers(table, "component", path, MAX_COMPONENT)
                  if "component" in table.column_names else None)
    return RawData(kind=kind, x=x, labels=labels, num_classes=_num_classes(labels, spec, known, path),
                   factors=factors, splits=splits, components=components, class_names=known.get("class_names"))


def _prepared_manifest(path: Path) -> dict:
    """Class count and names from the manifest.json of a genflow prepared folder holding ``path``.

    A manifest.json that is not genflow's (no format_version) is ignored; genflow's own, when its
    classes are not a count in 1..MAX_CLASSES with as many names (or none), is refused."""
    folder = path if path.is_dir() else path.parent
    manifest = folder / "manifest.json"
    try:
        known = json.loads(manifest.read_text()) if manifest.is_file() else {}
    except (OSError, ValueError):
        return {}
    if not (isinstance(known, dict) and "format_version" in known):
        return {}
    count, names = known.get("num_classes"), known.get("class_names")
    if not (isinstance(count, int) and not isinstance(count, bool) and 0 <= count <= MAX_CLASSES):
        raise DataError(f"{manifest}: num_classes {str(count)[:40]!r} is not a count in 0..{MAX_CLASSES}")
    if names is not None and not (isinstance(names, list) and len(names) == count
                                  and all(isinstance(n, str) for n in names)):
        raise DataError(f"{manifest}: class_names is not a list of {count} names")
    return {"num_classes": count, "class_names": names}
