"""MNIST-family IDX files (MNIST, Fashion-MNIST, EMNIST), raw or gzipped.

Format (LeCun): two zero bytes, a type code (0x08 = uint8), the number of
dimensions, one big-endian uint32 per dimension, then the values. Only uint8
images (3 dimensions) and uint8 labels (1 dimension) are datasets here.

The header is read and checked first; then at most the bytes it promises (plus
one, to see trailing data) are read or decompressed, a chunk at a time. So a
small .gz that inflates to gigabytes costs no more memory than its header
promises, and the promise itself is bounded (MAX_COUNT items, MAX_SOURCE_BYTES in all).
"""
from __future__ import annotations

import gzip
import zlib
from pathlib import Path
from typing import BinaryIO

import numpy as np

from genflow.data.images import check_dimensions, pad_square
from genflow.data.raw import MAX_SOURCE_BYTES, RawData, split_indices, with_official_test
from genflow.errors import DataError

UINT8 = 0x08
DEFAULT_TEST_FRACTION = 0.2
MAX_COUNT = 100_000_000
GZIP_MAGIC = b"\x1f\x8b"
CHUNK = 1 << 20  # decompressed bytes per read: the only memory beyond the promised array


def _is_gzipped(path: Path) -> bool:
    with path.open("rb") as probe:
        return probe.read(2) == GZIP_MAGIC


def _read_up_to(stream: BinaryIO, size: int) -> np.ndarray:
    """At most ``size`` bytes from ``stream``, read chunk by chunk into one uninitialised buffer:
    pages the stream never fills are never touched, so a truncated file costs what it holds."""
    buffer = np.empty(size, dtype=np.uint8)
    view, filled = memoryview(buffer), 0
    while filled < size:
        got = stream.readinto(view[filled:filled + CHUNK])
        if not got:
            break
        filled += got
    view.release()
    return buffer[:filled]


def _header(path: Path, stream: BinaryIO, ndim: int) -> list[int]:
    """The dimensions an IDX header promises, after checking magic, type code and rank."""
    head = _read_up_to(stream, 4).tobytes()
    if len(head) < 4 or head[:2] != b"\x00\x00":
        raise DataError(f"{path}: not an IDX file (bad magic number {head.hex() or 'empty'})")
    if head[2] != UINT8:
        raise DataError(f"{path}: IDX type code 0x{head[2]:02x}; only unsigned bytes (0x08) are supported")
    if head[3] != ndim:
        kind = "images (3 dimensions)" if ndim == 3 else "labels (1 dimension)"
        raise DataError(f"{path}: IDX file has {head[3]} dimensions; expected {kind}")
    sizes = _read_up_to(stream, 4 * ndim).tobytes()
    if len(sizes) < 4 * ndim:
        raise DataError(f"{path}: truncated IDX header ({4 + len(sizes)} bytes)")
    return [int(d) for d in np.frombuffer(sizes, dtype=">u4")]


def _check_promise(path: Path, dims: list[int]) -> int:
    """The number of values the header promises, refused when absurd (before reading any)."""
    if not 1 <= dims[0] <= MAX_COUNT:
        raise DataError(f"{path}: absurd item count {dims[0]} in the IDX header")
    if len(dims) == 3:
        check_dimensions(str(path), dims[1], dims[2])
    values = int(np.prod(dims, dtype=np.int64))
    if values > MAX_SOURCE_BYTES:
        raise DataError(f"{path}: absurd size in the IDX header: {'x'.join(map(str, dims))} = {values} bytes "
                        f"(at most {MAX_SOURCE_BYTES})")
    return values


def _size_problem(path: Path, dims: list[int], got: int, gzipped: bool) -> str:
    """Why a payload of ``got`` bytes (``values + 1`` means: more than promised) does not fit."""
    values = int(np.prod(dims))
    header = 4 + 4 * len(dims)
    promise = f"header promises {'x'.join(map(str, dims))} values ({header + values} bytes)"
    if gzipped:
        holds = "the stream holds more" if got > values else f"the stream holds {header + got}"
        return f"{path}: {'truncated' if got < values else 'has trailing bytes'}: {promise}, {holds} once decompressed"
    size = path.stat().st_size
    state = "truncated" if size < header + values else "has trailing bytes"
    return f"{path}: {state}: {promise}, file holds {size} bytes"


def read_idx(path: str | Path, ndim: int) -> np.ndarray:
    """The uint8 array stored in an IDX file, checked against the header."""
    path = Path(path)
    if not path.is_file():
        raise DataError(f"{path}: IDX file not found")
    gzipped, values = False, 0
    try:
        gzipped = _is_gzipped(path)
        with (gzip.open(path, "rb") if gzipped else path.open("rb")) as stream:
            dims = _header(path, stream, ndim)
            values = _check_promise(path, dims)
            payload = _read_up_to(stream, values + 1)  # one byte more tells trailing data apart
    except MemoryError:
        raise DataError(f"{path}: cannot allocate the {values} bytes its IDX header promises") from None
    except (OSError, EOFError, zlib.error) as exc:
        what = "corrupt or truncated gzip stream" if gzipped else "unreadable IDX file"
        raise DataError(f"{path}: {what} ({exc})") from None
    if len(payload) != values:
        raise DataError(_size_problem(path, dims, len(payload), gzipped))
    return payload.reshape(dims)


def read_pair(images: str | Path, labels: str | Path | None, transpose: bool) -> tuple[np.ndarray, np.ndarray | None]:
    x = read_idx(images, 3)
    if transpose:  # EMNIST stores every image transposed
        x = x.transpose(0, 2, 1)
    y = None
    if labels is not None:
        y = read_idx(labels, 1).astype(np.int64)
        if len(y) != len(x):
            raise DataError(f"{labels}: {len(y)} labels for {len(x)} images in {images}")
    return np.ascontiguousarray(x)[..., None], y


def idx_source(spec) -> RawData:
    """``source: idx``: training images (+labels), optionally an official test pair."""
    x, y = read_pair(spec.images, spec.labels, spec.transpose)
    if spec.test_images is None:
        splits = split_indices(len(x), spec.val_fraction, spec.test_fraction or DEFAULT_TEST_FRACTION, spec.seed)
    else:
        test_x, test_y = read_pair(spec.test_images, spec.test_labels, spec.transpose)
        if test_x.shape[1:] != x.shape[1:]:
            raise DataError(f"{spec.test_images}: images are {test_x.shape[1]}x{test_x.shape[2]}, "
                            f"the training images in {spec.images} are {x.shape[1]}x{x.shape[2]}")
        splits = with_official_test(len(x), len(test_x), spec.val_fraction, spec.seed)
        x = np.concatenate([x, test_x])
        y = None if y is None else np.concatenate([y, test_y])
    if spec.pad_to is not None:
        x = pad_square(x, spec.pad_to, str(spec.images))
    num_classes = int(y.max()) + 1 if y is not None else 0
    return RawData(kind="image", x=x, labels=y, num_classes=num_classes, splits=splits)
