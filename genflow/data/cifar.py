"""CIFAR-10 / CIFAR-100 from the official *binary* distribution (no pickle, ever).

Each record is the label byte(s) followed by 3072 pixel bytes: the 1024 red
values row-major, then green, then blue (www.cs.toronto.edu/~kriz/cifar.html).
CIFAR-100 records carry two label bytes, coarse (20 classes) then fine (100).
"""
from __future__ import annotations

from pathlib import Path

import numpy as np

from genflow.data.raw import RawData, with_official_test
from genflow.errors import DataError

PIXELS = 3 * 32 * 32
LAYOUT = {  # files, label bytes per record, label names file per label kind
    "cifar10": {"train": [f"data_batch_{i}.bin" for i in range(1, 6)], "test": ["test_batch.bin"],
                "label_bytes": 1, "names": {"fine": "batches.meta.txt"}, "classes": {"fine": 10}},
    "cifar100": {"train": ["train.bin"], "test": ["test.bin"], "label_bytes": 2,
                 "names": {"coarse": "coarse_label_names.txt", "fine": "fine_label_names.txt"},
                 "classes": {"coarse": 20, "fine": 100}},
}


def read_batch(path: Path, label_bytes: int, label_offset: int, num_classes: int) -> tuple[np.ndarray, np.ndarray]:
    """One binary batch file -> uint8 (N, 32, 32, 3) images and int64 labels."""
    if not path.is_file():
        if path.with_suffix("").is_file():  # data_batch_1 beside where data_batch_1.bin should be
            raise DataError(f"{path}: not found, but {path.with_suffix('').name} is: that is the Python (pickle) "
                            "version, which genflow never unpickles; download the binary version")
        raise DataError(f"{path}: CIFAR batch file not found (expected the extracted *-binary.tar.gz)")
    try:
        blob = np.fromfile(path, dtype=np.uint8)
    except OSError as exc:
        raise DataError(f"{path}: unreadable CIFAR batch ({exc})") from None
    record = label_bytes + PIXELS
    if blob.size == 0 or blob.size % record:
        raise DataError(f"{path}: {blob.size} bytes is not a whole number of {record}-byte records "
                        "(truncated file, or CIFAR-10 and CIFAR-100 mixed up)")
    rows = blob.reshape(-1, record)
    labels = rows[:, label_offset].astype(np.int64)
    bad = np.flatnonzero(labels >= num_classes)
    if bad.size:
        raise DataError(f"{path}: record {bad[0]} has label {labels[bad[0]]}; this dataset has "
                        f"{num_classes} classes (is it really {'CIFAR-100' if label_bytes == 2 else 'CIFAR-10'}?)")
    images = rows[:, label_bytes:].reshape(-1, 3, 32, 32).transpose(0, 2, 3, 1)
    return np.ascontiguousarray(images), labels


def _names(root: Path, filename: str, num_classes: int) -> list[str] | None:
    """The class names file, if it is there and lists one name per class (else no names)."""
    path = root / filename
    if not path.is_file():
        return None
    try:
        text = path.read_bytes().decode("utf-8")
    except UnicodeDecodeError as exc:
        raise DataError(f"{path}: class names file is not UTF-8 text ({exc.reason} at byte {exc.start})") from None
    names = [line.strip() for line in text.splitlines() if line.strip()]
    return names if len(names) == num_classes else None


def _folder(path: Path) -> Path:
    if path.is_file() and path.name.endswith((".tar.gz", ".tgz", ".tar")):
        raise DataError(f"{path}: an archive; extract it and give the cifar-*-batches-bin / cifar-100-binary folder")
    if not path.is_dir():
        raise DataError(f"{path}: CIFAR folder not found")
    return path


def cifar_source(spec) -> RawData:
    """``source: cifar10 | cifar100``: the official train batches, then the official test batch."""
    layout, root = LAYOUT[spec.source], _folder(Path(spec.path))
    kind = spec.label if spec.source == "cifar100" else "fine"
    num_classes = layout["classes"][kind]
    offset = 1 if (spec.source == "cifar100" and kind == "fine") else 0
    parts = {split: [read_batch(root / name, layout["label_bytes"], offset, num_classes) for name in layout[split]]
             for split in ("train", "test")}
    x = np.concatenate([images for split in ("train", "test") for images, _ in parts[split]])
    y = np.concatenate([labels for split in ("train", "test") for _, labels in parts[split]])
    n_train = sum(len(labels) for _, labels in parts["train"])
    splits = with_official_test(n_train, len(x) - n_train, spec.val_fraction, spec.seed)
    return RawData(kind="image", x=x, labels=y, num_classes=num_classes, splits=splits,
                   class_names=_names(root, layout["names"][kind], num_classes))
