"""MNIST-family IDX files (MNIST, Fashion-MNIST, EMNIST), raw or gzipped.

Format (LeCun): two zero bytes, a type code (0x08 = uint8), the number of
dimensions, one big-endian uint32 per dimension, then the values. Only uint8
images (3 dimensions) and uint8 labels (1 dimension) are datasets here.
"""
from __future__ import annotations

import gzip
import zlib
from pathlib import Path

import numpy as np

from genflow.data.images import check_dimensions
from genflow.data.raw import RawData, split_indices, with_official_test
from genflow.errors import DataError

UINT8 = 0x08
DEFAULT_TEST_FRACTION = 0.2
MAX_COUNT = 100_000_000


def _read_bytes(path: Path) -> bytes:
    if not path.is_file():
        raise DataError(f"{path}: IDX file not found")
    blob = path.read_bytes()
    if blob[:2] != b"\x1f\x8b":
        return blob
    try:
        return gzip.decompress(blob)
    except (OSError, EOFError, zlib.error) as exc:
        raise DataError(f"{path}: corrupt or truncated gzip stream ({exc})") from None


def read_idx(path: str | Path, ndim: int) -> np.ndarray:
    """The uint8 array stored in an IDX file, checked against the header."""
    path = Path(path)
    blob = _read_bytes(path)
    if len(blob) < 4 or blob[:2] != b"\x00\x00":
        raise DataError(f"{path}: not an IDX file (bad magic number {blob[:4].hex() or 'empty'})")
    if blob[2] != UINT8:
        raise DataError(f"{path}: IDX type code 0x{blob[2]:02x}; only unsigned bytes (0x08) are supported")
    if blob[3] != ndim:
        kind = "images (3 dimensions)" if ndim == 3 else "labels (1 dimension)"
        raise DataError(f"{path}: IDX file has {blob[3]} dimensions; expected {kind}")
    header = 4 + 4 * ndim
    if len(blob) < header:
        raise DataError(f"{path}: truncated IDX header ({len(blob)} bytes)")
    dims = [int(d) for d in np.frombuffer(blob, dtype=">u4", count=ndim, offset=4)]
    if not 1 <= dims[0] <= MAX_COUNT:
        raise DataError(f"{path}: absurd item count {dims[0]} in the IDX header")
    if ndim == 3:
        check_dimensions(str(path), dims[1], dims[2])
    expected = header + int(np.prod(dims))
    if len(blob) != expected:
        state = "truncated" if len(blob) < expected else "has trailing bytes"
        raise DataError(f"{path}: {state}: header promises {'x'.join(map(str, dims))} values "
                        f"({expected} bytes), file holds {len(blob)} bytes")
    return np.frombuffer(blob, dtype=np.uint8, offset=header).reshape(dims)


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
    num_classes = int(y.max()) + 1 if y is not None else 0
    return RawData(kind="image", x=x, labels=y, num_classes=num_classes, splits=splits)
