"""File sources (IDX, CIFAR binary, image folders, Parquet): real files written by the tests,
parsed back exactly; broken files raise DataError naming the file; prepare writes nothing on failure."""
from __future__ import annotations

import gzip
import io
import re
import struct

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import torch
from PIL import Image

from genflow import config
from genflow.data.cifar import cifar_source
from genflow.data.idx import idx_source, read_idx
from genflow.data.imagefolder import imagefolder_source
from genflow.data.loader import load_split
from genflow.data.parquet_source import parquet_source
from genflow.data.prepare import prepare
from genflow.data.raw import split_indices
from genflow.data.sources import load_source
from genflow.data.specs import CifarData, IdxData, ImageFolderData, ParquetData
from genflow.errors import ConfigError, DataError

from conftest import quiet, tiny_params_dict

RNG = np.random.default_rng(1234)


def _nchw(x: np.ndarray) -> np.ndarray:
    return x.transpose(0, 3, 1, 2)


def _check_prepared(out, raw_x: np.ndarray, raw_y: np.ndarray | None, splits: dict) -> None:
    """load_split(out, s) holds exactly rows splits[s] of the written pixels / labels."""
    for split, rows in splits.items():
        data = load_split(out, split)
        assert data.x.dtype == torch.uint8 and tuple(data.x.shape[1:]) == _nchw(raw_x).shape[1:]
        np.testing.assert_array_equal(data.x.numpy(), _nchw(raw_x[rows]))
        if raw_y is None:
            assert data.labels is None
        else:
            np.testing.assert_array_equal(data.labels.numpy(), raw_y[rows])


def _assert_nothing_written(parent, name: str) -> None:
    assert not (parent / name).exists()
    assert not [p.name for p in parent.iterdir() if p.name.startswith(f".{name}")]  # no temp folder left


# -- IDX ----------------------------------------------------------------------------

def idx_bytes(array: np.ndarray, type_code: int = 0x08, dims=None) -> bytes:
    dims = array.shape if dims is None else dims
    header = bytes([0, 0, type_code, len(dims)]) + b"".join(struct.pack(">I", d) for d in dims)
    return header + np.ascontiguousarray(array, dtype=np.uint8).tobytes()


def write_idx(path, array: np.ndarray, gz: bool = False, **kwargs):
    blob = idx_bytes(array, **kwargs)
    path.write_bytes(gzip.compress(blob) if gz else blob)
    return path


def _mnist_like(n: int, h: int = 6, w: int = 5):
    return RNG.integers(0, 256, size=(n, h, w), dtype=np.uint8), RNG.integers(0, 10, size=n).astype(np.uint8)


@pytest.mark.parametrize("gz", [False, True])
def test_idx_images_and_labels(tmp_path, gz):
    x, y = _mnist_like(20)
    y[0] = 9  # num_classes = largest label + 1
    suffix = ".gz" if gz else ""
    images = write_idx(tmp_path / f"train-images-idx3-ubyte{suffix}", x, gz=gz)
    labels = write_idx(tmp_path / f"train-labels-idx1-ubyte{suffix}", y, gz=gz)
    if gz:
        assert images.read_bytes()[:2] == b"\x1f\x8b"
    np.testing.assert_array_equal(read_idx(images, 3), x)
    np.testing.assert_array_equal(read_idx(labels, 1), y)

    spec = IdxData(source="idx", images=str(images), labels=str(labels), val_fraction=0.1, test_fraction=0.25)
    raw = idx_source(spec)
    assert raw.kind == "image" and raw.x.shape == (20, 6, 5, 1) and raw.x.dtype == np.uint8
    np.testing.assert_array_equal(raw.x[..., 0], x)
    np.testing.assert_array_equal(raw.labels, y.astype(np.int64))
    assert raw.num_classes == 10
    expected = split_indices(20, 0.1, 0.25, 0)
    assert {k: v.tolist() for k, v in raw.splits.items()} == {k: v.tolist() for k, v in expected.items()}

    out = tmp_path / "prepared"
    manifest = prepare(spec, out, log=quiet)
    assert manifest["shape"] == [6, 5, 1] and manifest["num_classes"] == 10
    _check_prepared(out, x[..., None], y.astype(np.int64), expected)


def test_idx_without_labels(tmp_path):
    x, _ = _mnist_like(10)
    spec = IdxData(source="idx", images=str(write_idx(tmp_path / "imgs.idx", x)))
    raw = idx_source(spec)
    assert raw.labels is None and raw.num_classes == 0
    np.testing.assert_array_equal(raw.x[..., 0], x)
    out = tmp_path / "prepared"
    assert prepare(spec, out, log=quiet)["num_classes"] == 0
    _check_prepared(out, x[..., None], None, raw.splits)


def test_idx_official_test_pair(tmp_path):
    x, y = _mnist_like(30)
    tx, ty = _mnist_like(7)
    spec = IdxData(source="idx", images=str(write_idx(tmp_path / "train-images", x)),
                   labels=str(write_idx(tmp_path / "train-labels", y, gz=True)),
                   test_images=str(write_idx(tmp_path / "t10k-images", tx, gz=True)),
                   test_labels=str(write_idx(tmp_path / "t10k-labels", ty)), val_fraction=0.2, seed=3)
    raw = idx_source(spec)
    np.testing.assert_array_equal(raw.x[raw.splits["test"], ..., 0], tx)
    np.testing.assert_array_equal(raw.labels[raw.splits["test"]], ty)
    train_val = np.concatenate([raw.splits["train"], raw.splits["val"]])
    assert sorted(train_val.tolist()) == list(range(30))  # val is carved from the training rows only
    assert len(raw.splits["val"]) == 6
    np.testing.assert_array_equal(raw.x[raw.splits["val"], ..., 0], x[raw.splits["val"]])

    out = tmp_path / "prepared"
    manifest = prepare(spec, out, log=quiet)
    assert {k: v["rows"] for k, v in manifest["splits"].items()} == {"train": 24, "val": 6, "test": 7}
    test = load_split(out, "test")
    np.testing.assert_array_equal(test.x.numpy()[:, 0], tx)
    np.testing.assert_array_equal(test.labels.numpy(), ty)
    val = load_split(out, "val")
    np.testing.assert_array_equal(val.x.numpy()[:, 0], x[raw.splits["val"]])


def test_idx_transpose_for_emnist(tmp_path):
    x, y = _mnist_like(8, h=4, w=7)
    images, labels = write_idx(tmp_path / "emnist-images", x), write_idx(tmp_path / "emnist-labels", y)
    raw = idx_source(IdxData(source="idx", images=str(images), labels=str(labels), transpose=True))
    assert raw.x.shape == (8, 7, 4, 1)
    np.testing.assert_array_equal(raw.x[..., 0], x.transpose(0, 2, 1))
    plain = idx_source(IdxData(source="idx", images=str(images), labels=str(labels)))
    np.testing.assert_array_equal(plain.x[..., 0], x)


def test_idx_pad_to_centres_each_image_on_a_black_square(tmp_path):
    """pad_to: 28x28 MNIST becomes 32x32 for the conv models; the pixels are kept exactly, the
    border is black, training and official test images alike."""
    x, y = _mnist_like(6, h=28, w=28)
    tx, ty = _mnist_like(3, h=28, w=28)
    spec = IdxData(source="idx", images=str(write_idx(tmp_path / "train-images", x, gz=True)),
                   labels=str(write_idx(tmp_path / "train-labels", y)),
                   test_images=str(write_idx(tmp_path / "t10k-images", tx)),
                   test_labels=str(write_idx(tmp_path / "t10k-labels", ty)), pad_to=32)
    raw = idx_source(spec)
    assert raw.x.shape == (9, 32, 32, 1)
    np.testing.assert_array_equal(raw.x[:6, 2:30, 2:30, 0], x)
    np.testing.assert_array_equal(raw.x[raw.splits["test"], 2:30, 2:30, 0], tx)
    border = raw.x.copy()
    border[:, 2:30, 2:30] = 0
    assert not border.any()
    assert prepare(spec, tmp_path / "prepared", log=quiet)["shape"] == [32, 32, 1]
    odd = idx_source(IdxData(source="idx", images=spec.images, pad_to=31))  # the extra pixel: bottom / right
    np.testing.assert_array_equal(odd.x[:, 1:29, 1:29, 0], x)
    with pytest.raises(DataError, match=r"train-images: images are 28x28, larger than pad_to 16"):
        idx_source(IdxData(source="idx", images=spec.images, pad_to=16))
    with pytest.raises(ConfigError, match=r"data\.mnist\.pad_to"):
        raw_params = tiny_params_dict()
        raw_params["data"]["mnist"] = {"source": "idx", "images": spec.images, "pad_to": 4}
        config.validate(raw_params)


def _broken_idx_cases(tmp_path):
    x, y = _mnist_like(4)
    good = idx_bytes(x)
    cases = {
        "bad-magic": b"\x01\x02" + good[2:],
        "bad-type": idx_bytes(x, type_code=0x0D),
        "truncated": good[:-5],
        "trailing": good + b"\x00\x00\x00",
        "zero-items": idx_bytes(x[:0]),
        "zero-rows": idx_bytes(x[:, :0, :]),
        "huge-rows": idx_bytes(x, dims=(4, 100_000, 5)),
        "huge-count": idx_bytes(x, dims=(200_000_000, 6, 5)),
        "empty": b"",
        "short-header": good[:9],
    }
    paths = {}
    for name, blob in cases.items():
        (tmp_path / name).write_bytes(blob)
        paths[name] = tmp_path / name
    truncated_gz = tmp_path / "truncated.gz"
    truncated_gz.write_bytes(gzip.compress(good)[:-12])
    paths["truncated.gz"] = truncated_gz
    paths["labels-as-images"] = write_idx(tmp_path / "labels-as-images", y)
    return paths


BROKEN_IDX = ["bad-magic", "bad-type", "truncated", "trailing", "zero-items", "zero-rows", "huge-rows",
              "huge-count", "empty", "short-header", "truncated.gz", "labels-as-images"]


@pytest.mark.parametrize("case", BROKEN_IDX)
def test_idx_broken_file_names_itself(tmp_path, case):
    path = _broken_idx_cases(tmp_path)[case]
    spec = IdxData(source="idx", images=str(path))
    with pytest.raises(DataError) as info:
        idx_source(spec)
    assert path.name in str(info.value)
    with pytest.raises(DataError):
        prepare(spec, tmp_path / "out", log=quiet)
    _assert_nothing_written(tmp_path, "out")


def test_idx_specific_messages(tmp_path):
    paths = _broken_idx_cases(tmp_path)
    expect = {"bad-magic": "magic", "bad-type": "type code", "truncated": "truncated",
              "trailing": "trailing", "labels-as-images": "dimensions", "truncated.gz": "gzip",
              "huge-rows": "absurd", "zero-items": "absurd"}
    for case, word in expect.items():
        with pytest.raises(DataError, match=word):
            read_idx(paths[case], 3)
    # images given where labels are expected: wrong number of dimensions too
    x, _ = _mnist_like(3)
    with pytest.raises(DataError, match="expected labels"):
        read_idx(write_idx(tmp_path / "imgs", x), 1)


def test_idx_count_mismatch_and_missing_files(tmp_path):
    x, y = _mnist_like(5)
    images = write_idx(tmp_path / "images-5", x)
    labels = write_idx(tmp_path / "labels-4", y[:4])
    with pytest.raises(DataError) as info:
        idx_source(IdxData(source="idx", images=str(images), labels=str(labels)))
    assert "labels-4" in str(info.value) and "4 labels for 5 images" in str(info.value)

    for missing_key in ("images", "labels", "test_images"):
        kwargs = {"images": str(images), "labels": None, missing_key: str(tmp_path / f"no-{missing_key}")}
        with pytest.raises(DataError, match="not found") as info:
            idx_source(IdxData(source="idx", **kwargs))
        assert f"no-{missing_key}" in str(info.value)

    # official test images of another size than the training images
    small, _ = _mnist_like(3, h=4, w=4)
    with pytest.raises(DataError) as info:
        idx_source(IdxData(source="idx", images=str(images), test_images=str(write_idx(tmp_path / "t-4x4", small))))
    assert "t-4x4" in str(info.value)
    # official test labels whose count does not match the test images
    with pytest.raises(DataError) as info:
        idx_source(IdxData(source="idx", images=str(images), labels=str(write_idx(tmp_path / "l5", y)),
                           test_images=str(write_idx(tmp_path / "t3", x[:3])), test_labels=str(labels)))
    assert "labels-4" in str(info.value) and "t3" in str(info.value)


# -- CIFAR binary -------------------------------------------------------------------

def cifar_records(images: np.ndarray, *labels: np.ndarray) -> bytes:
    """images (N, 32, 32, 3) HWC -> label byte(s) + R plane + G plane + B plane per record."""
    planes = images.transpose(0, 3, 1, 2).reshape(len(images), -1)
    cols = [np.asarray(lab, dtype=np.uint8)[:, None] for lab in labels]
    return np.concatenate([*cols, planes], axis=1).astype(np.uint8).tobytes()


def _cifar_images(n: int) -> np.ndarray:
    return RNG.integers(0, 256, size=(n, 32, 32, 3), dtype=np.uint8)


CIFAR10_NAMES = ["airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck"]


def write_cifar10(root, counts=(2, 3, 1, 2, 2), n_test=3):
    root.mkdir()
    xs, ys = [], []
    for i, n in enumerate(counts, start=1):
        x, y = _cifar_images(n), RNG.integers(0, 10, size=n)
        (root / f"data_batch_{i}.bin").write_bytes(cifar_records(x, y))
        xs.append(x)
        ys.append(y)
    tx, ty = _cifar_images(n_test), RNG.integers(0, 10, size=n_test)
    (root / "test_batch.bin").write_bytes(cifar_records(tx, ty))
    (root / "batches.meta.txt").write_text("\n".join(CIFAR10_NAMES) + "\n\n")
    return np.concatenate(xs), np.concatenate(ys), tx, ty


def test_cifar_record_layout_is_planar(tmp_path):
    """One hand-built record: pixel (row 1, col 2) red = byte 1 + 32 + 2 of the record."""
    record = np.zeros(1 + 3072, dtype=np.uint8)
    record[0] = 7
    record[1 + 34] = 11  # R plane, row 1, col 2
    record[1 + 1024 + 31] = 22  # G plane, row 0, col 31
    record[1 + 2048 + 32 * 31] = 33  # B plane, row 31, col 0
    root = tmp_path / "c10"
    root.mkdir()
    for name in [f"data_batch_{i}.bin" for i in range(1, 6)] + ["test_batch.bin"]:
        (root / name).write_bytes(record.tobytes())
    raw = cifar_source(CifarData(source="cifar10", path=str(root)))
    assert raw.x.shape == (6, 32, 32, 3)
    img = raw.x[0]
    assert img[1, 2, 0] == 11 and img[0, 31, 1] == 22 and img[31, 0, 2] == 33
    assert int(img.astype(int).sum()) == 66
    assert raw.labels.tolist() == [7] * 6
    assert raw.class_names is None  # no batches.meta.txt


def test_cifar10_images_labels_split(tmp_path):
    x, y, tx, ty = write_cifar10(tmp_path / "cifar-10-batches-bin")
    spec = CifarData(source="cifar10", path=str(tmp_path / "cifar-10-batches-bin"), val_fraction=0.2)
    raw = cifar_source(spec)
    assert raw.x.shape == (13, 32, 32, 3) and raw.num_classes == 10
    np.testing.assert_array_equal(raw.x, np.concatenate([x, tx]))
    np.testing.assert_array_equal(raw.labels, np.concatenate([y, ty]))
    assert raw.class_names == CIFAR10_NAMES
    assert raw.splits["test"].tolist() == [10, 11, 12]
    assert sorted(np.concatenate([raw.splits["train"], raw.splits["val"]]).tolist()) == list(range(10))
    assert len(raw.splits["val"]) == 2

    out = tmp_path / "prepared"
    manifest = prepare(spec, out, log=quiet)
    assert manifest["class_names"] == CIFAR10_NAMES and manifest["shape"] == [32, 32, 3]
    test = load_split(out, "test")
    assert tuple(test.x.shape) == (3, 3, 32, 32)
    np.testing.assert_array_equal(test.x.numpy(), _nchw(tx))
    np.testing.assert_array_equal(test.labels.numpy(), ty)
    _check_prepared(out, raw.x, raw.labels, raw.splits)


@pytest.mark.parametrize("label", ["fine", "coarse"])
def test_cifar100_fine_and_coarse(tmp_path, label):
    root = tmp_path / "cifar-100-binary"
    root.mkdir()
    x, tx = _cifar_images(5), _cifar_images(2)
    coarse, fine = RNG.integers(0, 20, size=5), RNG.integers(0, 100, size=5)
    tcoarse, tfine = np.array([19, 0]), np.array([99, 3])
    (root / "train.bin").write_bytes(cifar_records(x, coarse, fine))
    (root / "test.bin").write_bytes(cifar_records(tx, tcoarse, tfine))
    fine_names, coarse_names = [f"fine_{i}" for i in range(100)], [f"coarse_{i}" for i in range(20)]
    (root / "fine_label_names.txt").write_text("\n".join(fine_names) + "\n")
    (root / "coarse_label_names.txt").write_text("\n".join(coarse_names) + "\n")

    spec = CifarData(source="cifar100", path=str(root), label=label, val_fraction=0.2)
    raw = cifar_source(spec)
    np.testing.assert_array_equal(raw.x, np.concatenate([x, tx]))
    if label == "fine":
        np.testing.assert_array_equal(raw.labels, np.concatenate([fine, tfine]))
        assert raw.num_classes == 100 and raw.class_names == fine_names
    else:
        np.testing.assert_array_equal(raw.labels, np.concatenate([coarse, tcoarse]))
        assert raw.num_classes == 20 and raw.class_names == coarse_names
    assert raw.splits["test"].tolist() == [5, 6]

    out = tmp_path / "prepared"
    assert prepare(spec, out, log=quiet)["num_classes"] == raw.num_classes
    test = load_split(out, "test")
    np.testing.assert_array_equal(test.x.numpy(), _nchw(tx))
    np.testing.assert_array_equal(test.labels.numpy(), tfine if label == "fine" else tcoarse)


def test_cifar_broken(tmp_path):
    x, y, tx, ty = write_cifar10(tmp_path / "c10")
    spec = CifarData(source="cifar10", path=str(tmp_path / "c10"))

    batch = tmp_path / "c10" / "data_batch_2.bin"
    good = batch.read_bytes()
    batch.write_bytes(good[:-100])  # truncated
    with pytest.raises(DataError, match="data_batch_2.bin.*not a whole number"):
        cifar_source(spec)
    with pytest.raises(DataError):
        prepare(spec, tmp_path / "out", log=quiet)
    _assert_nothing_written(tmp_path, "out")

    batch.write_bytes(b"")  # empty
    with pytest.raises(DataError, match="data_batch_2.bin"):
        cifar_source(spec)

    batch.unlink()  # missing
    with pytest.raises(DataError, match="data_batch_2.bin.*not found"):
        cifar_source(spec)

    bad = y[:2].copy()
    bad[1] = 12  # label out of range for CIFAR-10
    batch.write_bytes(cifar_records(x[:2], bad))
    with pytest.raises(DataError, match=r"data_batch_2.bin: record 1 has label 12"):
        cifar_source(spec)

    batch.write_bytes(good)
    cifar_source(spec)  # restored: parses again

    # CIFAR-100 records (2 label bytes) read as CIFAR-10: size is no multiple of 3073
    (tmp_path / "c10" / "test_batch.bin").write_bytes(cifar_records(tx, ty, ty))
    with pytest.raises(DataError, match="test_batch.bin"):
        cifar_source(spec)

    with pytest.raises(DataError, match="nowhere"):
        cifar_source(CifarData(source="cifar10", path=str(tmp_path / "nowhere")))


def test_cifar100_fine_label_out_of_range(tmp_path):
    root = tmp_path / "c100"
    root.mkdir()
    (root / "train.bin").write_bytes(cifar_records(_cifar_images(2), [1, 2], [5, 100]))
    (root / "test.bin").write_bytes(cifar_records(_cifar_images(1), [1], [5]))
    with pytest.raises(DataError, match="train.bin: record 1 has label 100"):
        cifar_source(CifarData(source="cifar100", path=str(root)))
    # the coarse byte is fine (< 20): the coarse view loads
    assert cifar_source(CifarData(source="cifar100", path=str(root), label="coarse")).labels.tolist() == [1, 2, 1]


def test_cifar10_coarse_label_rejected():
    from pydantic import ValidationError

    with pytest.raises(ValidationError, match="coarse"):
        CifarData(source="cifar10", path="x", label="coarse")
    raw = tiny_params_dict()
    raw["data"]["c10"] = {"source": "cifar10", "path": "data/raw/cifar", "label": "coarse"}
    with pytest.raises(ConfigError) as info:
        config.validate(raw)
    assert re.search(r"data\.c10(\.|: )label", str(info.value))
    with pytest.raises(ConfigError, match=r"data\.c10\.test_fraction"):  # the test batch is the test split
        raw["data"]["c10"] = {"source": "cifar10", "path": "x", "test_fraction": 0.2}
        config.validate(raw)


# -- image folders ------------------------------------------------------------------

def _save(path, array: np.ndarray, fmt: str = "PNG") -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(array.squeeze(-1) if array.shape[-1] == 1 else array).save(path, format=fmt)


def write_folder(root, classes=("cat", "ant", "bee"), per_class=3, h=6, w=5):
    """PNG files root/<class>/<i>.png; returns pixels and labels in sorted (class, file) order."""
    pixels, labels = [], []
    for name in classes:
        for i in range(per_class):
            img = RNG.integers(0, 256, size=(h, w, 3), dtype=np.uint8)
            _save(root / name / f"img{i}.png", img)
    for index, name in enumerate(sorted(classes)):
        for i in range(per_class):
            pixels.append(np.asarray(Image.open(root / name / f"img{i}.png")))
            labels.append(index)
    return np.stack(pixels), np.array(labels)


def test_imagefolder_labels_from_sorted_folders(tmp_path):
    root = tmp_path / "pets"
    x, y = write_folder(root)
    (root / ".DS_Store").write_bytes(b"\x00junk")
    (root / "ant" / ".DS_Store").write_bytes(b"\x00junk")
    (root / ".hidden_class").mkdir()
    (root / ".hidden_class" / "x.txt").write_text("skip me")
    spec = ImageFolderData(source="imagefolder", path=str(root), val_fraction=0.2, test_fraction=0.2)
    raw = imagefolder_source(spec, log=quiet)
    assert raw.class_names == ["ant", "bee", "cat"] and raw.num_classes == 3
    assert raw.x.shape == (9, 6, 5, 3)
    np.testing.assert_array_equal(raw.x, x)  # PNG is lossless: pixels round-trip exactly
    np.testing.assert_array_equal(raw.labels, y)

    out = tmp_path / "prepared"
    manifest = prepare(spec, out, log=quiet)
    assert manifest["class_names"] == ["ant", "bee", "cat"]
    _check_prepared(out, x, y, split_indices(9, 0.2, 0.2, 0))


def test_imagefolder_unlabeled_nested_and_grayscale(tmp_path):
    root = tmp_path / "faces"
    grey = RNG.integers(0, 256, size=(4, 5, 5, 1), dtype=np.uint8)
    _save(root / "a.png", grey[0])
    _save(root / "b.png", grey[1])
    _save(root / "sub" / "c.png", grey[2])
    _save(root / "sub" / "d.png", grey[3])
    raw = imagefolder_source(ImageFolderData(source="imagefolder", path=str(root), labels="none"), log=quiet)
    assert raw.labels is None and raw.class_names is None and raw.num_classes == 0
    # grey PNGs read without grayscale: converted to RGB, every channel equal
    assert raw.x.shape == (4, 5, 5, 3)
    for ch in range(3):
        np.testing.assert_array_equal(raw.x[..., ch:ch + 1], grey)

    gray = imagefolder_source(ImageFolderData(source="imagefolder", path=str(root), labels="none", grayscale=True),
                              log=quiet)
    np.testing.assert_array_equal(gray.x, grey)

    # RGB -> L uses Pillow's ITU-R 601-2 luma
    rgb = RNG.integers(0, 256, size=(5, 5, 3), dtype=np.uint8)
    _save(tmp_path / "rgb" / "one.png", rgb)
    _save(tmp_path / "rgb" / "two.png", rgb)
    spec = ImageFolderData(source="imagefolder", path=str(tmp_path / "rgb"), labels="none", grayscale=True)
    converted = imagefolder_source(spec, log=quiet).x
    expected = np.asarray(Image.fromarray(rgb).convert("L"))
    np.testing.assert_array_equal(converted[0, ..., 0], expected)
    luma = rgb @ np.array([0.299, 0.587, 0.114])
    assert np.abs(converted[0, ..., 0] - luma).max() <= 1.0


def test_imagefolder_resize_and_crop(tmp_path):
    root = tmp_path / "mixed"
    wide = RNG.integers(0, 256, size=(4, 8, 3), dtype=np.uint8)  # H=4, W=8
    _save(root / "a" / "wide.png", wide)
    _save(root / "a" / "tall.jpg", RNG.integers(0, 256, size=(12, 6, 3), dtype=np.uint8), fmt="JPEG")
    _save(root / "b" / "big.jpeg", RNG.integers(0, 256, size=(20, 30, 3), dtype=np.uint8), fmt="JPEG")
    _save(root / "b" / "grey.png", RNG.integers(0, 256, size=(7, 7, 1), dtype=np.uint8))

    center = imagefolder_source(ImageFolderData(source="imagefolder", path=str(root), size=4), log=quiet)
    assert center.x.shape == (4, 4, 4, 3) and center.x.dtype == np.uint8
    # 8x4 at size 4: the short side already fits, so centre crop = the middle 4 columns, exactly
    np.testing.assert_array_equal(center.x[1], wide[:, 2:6])  # sorted: a/tall.jpg, a/wide.png
    assert center.labels.tolist() == [0, 0, 1, 1]

    stretch = imagefolder_source(ImageFolderData(source="imagefolder", path=str(root), size=6, crop="none",
                                                 grayscale=True), log=quiet)
    assert stretch.x.shape == (4, 6, 6, 1)
    expected = np.asarray(Image.fromarray(wide).convert("L").resize((6, 6), Image.Resampling.BICUBIC))
    np.testing.assert_array_equal(stretch.x[1, ..., 0], expected)

    out = tmp_path / "prepared"
    spec = ImageFolderData(source="imagefolder", path=str(root), size=8, val_fraction=0.25, test_fraction=0.25)
    prepare(spec, out, log=quiet)
    loaded = [load_split(out, s).x for s in ("train", "val", "test")]
    assert all(tuple(t.shape[1:]) == (3, 8, 8) for t in loaded) and sum(len(t) for t in loaded) == 4


def test_imagefolder_16bit_png_keeps_top_byte(tmp_path):
    wide = (np.arange(20, dtype=np.uint16).reshape(4, 5) * 3000)
    (tmp_path / "a").mkdir()
    Image.fromarray(wide).save(tmp_path / "a" / "deep.png")
    raw = imagefolder_source(ImageFolderData(source="imagefolder", path=str(tmp_path), grayscale=True), log=quiet)
    np.testing.assert_array_equal(raw.x[0, :, :, 0], (wide >> 8).astype(np.uint8))


def test_imagefolder_applies_exif_orientation(tmp_path):
    pixels = np.zeros((4, 6, 3), dtype=np.uint8)
    pixels[0, :] = 255  # a white top row
    image = Image.fromarray(pixels)
    exif = image.getexif()
    exif[0x0112] = 6  # "rotate 90 CW to display", as phones write it
    (tmp_path / "a").mkdir()
    image.save(tmp_path / "a" / "phone.png", exif=exif.tobytes())
    raw = imagefolder_source(ImageFolderData(source="imagefolder", path=str(tmp_path)), log=quiet)
    assert raw.x.shape[1:] == (6, 4, 3)  # displayed upright: the stored 4x6 turned a quarter
    np.testing.assert_array_equal(raw.x[0, :, -1, 0], np.full(6, 255))  # top row became the right column


def test_imagefolder_jpeg_decodes(tmp_path):
    root = tmp_path / "jpegs"
    for i in range(3):
        _save(root / "only" / f"{i}.jpg", np.full((9, 7, 3), 40 * i + 20, dtype=np.uint8), fmt="JPEG")
    raw = imagefolder_source(ImageFolderData(source="imagefolder", path=str(root)), log=quiet)
    assert raw.x.shape == (3, 9, 7, 3) and raw.class_names == ["only"]
    # flat colours survive JPEG almost unchanged
    assert np.abs(raw.x.astype(int) - np.array([20, 60, 100])[:, None, None, None]).max() <= 3


def test_imagefolder_broken(tmp_path):
    def fails(path, match=None, **kwargs):
        spec = ImageFolderData(source="imagefolder", path=str(path), **kwargs)
        with pytest.raises(DataError, match=match) as info:
            imagefolder_source(spec, log=quiet)
        return str(info.value)

    empty = tmp_path / "empty"
    empty.mkdir()
    fails(empty, "no class sub-folders")
    fails(empty, "no images found", labels="none")
    fails(tmp_path / "missing", "not found")

    root = tmp_path / "data"
    write_folder(root, classes=("a", "b"), per_class=2)
    (root / "c").mkdir()
    assert f"{root / 'c'}: class folder holds no images" in fails(root)
    (root / "c" / ".DS_Store").write_bytes(b"junk")  # hidden files do not count as images
    fails(root, "class folder holds no images")
    (root / "c" / ".DS_Store").unlink()
    (root / "c").rmdir()
    imagefolder_source(ImageFolderData(source="imagefolder", path=str(root)), log=quiet)  # valid again

    notes = root / "a" / "notes.txt"
    notes.write_text("not an image")
    assert str(notes) in fails(root, "not an image file")
    notes.unlink()

    corrupt = root / "b" / "corrupt.png"
    corrupt.write_bytes(RNG.integers(0, 256, size=200, dtype=np.uint8).tobytes())
    assert str(corrupt) in fails(root, "unreadable image")
    corrupt.unlink()

    buffer = io.BytesIO()
    Image.fromarray(RNG.integers(0, 256, size=(40, 40, 3), dtype=np.uint8)).save(buffer, format="PNG")
    truncated = root / "b" / "truncated.png"
    truncated.write_bytes(buffer.getvalue()[: len(buffer.getvalue()) // 2])
    assert str(truncated) in fails(root, "unreadable image")
    truncated.unlink()

    odd = root / "b" / "zodd.png"
    _save(odd, RNG.integers(0, 256, size=(9, 9, 3), dtype=np.uint8))
    message = fails(root, "set size")
    assert str(odd) in message and "9x9" in message
    imagefolder_source(ImageFolderData(source="imagefolder", path=str(root), size=8), log=quiet)  # size fixes it
    odd.unlink()

    loose = root / "stray.png"
    _save(loose, RNG.integers(0, 256, size=(6, 5, 3), dtype=np.uint8))
    assert str(loose) in fails(root, "outside any class sub-folder")
    imagefolder_source(ImageFolderData(source="imagefolder", path=str(root), labels="none"), log=quiet)

    with pytest.raises(DataError):
        prepare(ImageFolderData(source="imagefolder", path=str(root)), tmp_path / "out", log=quiet)
    _assert_nothing_written(tmp_path, "out")


# -- Parquet ------------------------------------------------------------------------

@pytest.fixture(scope="module")
def prepared_digits(tmp_path_factory):
    root = tmp_path_factory.mktemp("pq") / "digits"
    prepare(config.validate(tiny_params_dict()).data["digits"], root, log=quiet)
    return root


def test_parquet_roundtrip_of_prepared_shards(prepared_digits, tmp_path):
    train = load_split(prepared_digits, "train")
    shard = sorted(prepared_digits.glob("train-*.parquet"))
    assert len(shard) == 1
    spec = ParquetData(source="parquet", path=str(shard[0]), val_fraction=0.1, test_fraction=0.2, seed=4)
    raw = parquet_source(spec)
    assert raw.kind == "image" and raw.num_classes == 10 and raw.factors == {}
    np.testing.assert_array_equal(_nchw(raw.x), train.x.numpy())
    np.testing.assert_array_equal(raw.labels, train.labels.numpy())

    out = tmp_path / "again"
    manifest = prepare(spec, out, log=quiet)
    assert manifest["shape"] == [8, 8, 1]
    _check_prepared(out, raw.x, raw.labels, split_indices(len(raw.x), 0.1, 0.2, 4))

    # the whole prepared folder: every shard of every split, in file order (test, train, val)
    whole = parquet_source(ParquetData(source="parquet", path=str(prepared_digits)))
    expected = np.concatenate([load_split(prepared_digits, s).x.numpy() for s in ("test", "train", "val")])
    np.testing.assert_array_equal(_nchw(whole.x), expected)


def test_parquet_of_prepared_folder_keeps_classes_and_components(prepared_digits, tmp_path):
    raw = parquet_source(ParquetData(source="parquet", path=str(prepared_digits)))
    assert raw.num_classes == 10  # from the folder's manifest.json, not from the largest label seen
    ring = tmp_path / "ring"
    prepare(config.validate(tiny_params_dict()).data["ring8"], ring, log=quiet)
    points = parquet_source(ParquetData(source="parquet", path=str(ring)))
    assert points.kind == "points" and points.components is not None
    assert set(np.unique(points.components)) == set(range(8))
    with pytest.raises(DataError, match="no 'label' column"):
        parquet_source(ParquetData(source="parquet", path=str(ring), num_classes=3))


def _image_table(x: np.ndarray, **columns) -> pa.Table:
    flat = np.ascontiguousarray(x).reshape(len(x), int(np.prod(x.shape[1:])))
    image = pa.FixedSizeBinaryArray.from_buffers(pa.binary(flat.shape[1]), len(x), [None, pa.py_buffer(flat.tobytes())])
    return pa.table({"image": image, **columns})


def test_parquet_hand_written_needs_shape(tmp_path):
    x = RNG.integers(0, 256, size=(12, 4, 3, 3), dtype=np.uint8)
    y = np.arange(12) % 4
    path = tmp_path / "hand.parquet"
    pq.write_table(_image_table(x, label=pa.array(y, type=pa.int64()), weight=pa.array(np.linspace(0, 1, 12))), path)

    with pytest.raises(DataError, match="shape") as info:
        parquet_source(ParquetData(source="parquet", path=str(path)))
    assert "hand.parquet" in str(info.value)
    with pytest.raises(DataError, match="48 bytes.*holds 36 per row"):
        parquet_source(ParquetData(source="parquet", path=str(path), shape=[4, 4, 3]))
    with pytest.raises(DataError, match="channels"):
        parquet_source(ParquetData(source="parquet", path=str(path), shape=[3, 3, 4]))

    spec = ParquetData(source="parquet", path=str(path), shape=[4, 3, 3], test_fraction=0.25)
    raw = parquet_source(spec)
    np.testing.assert_array_equal(raw.x, x)
    np.testing.assert_array_equal(raw.labels, y)
    assert raw.num_classes == 4
    np.testing.assert_allclose(raw.factors["weight"], np.linspace(0, 1, 12))
    with_classes = ParquetData(source="parquet", path=str(path), shape=[4, 3, 3], num_classes=7)
    assert parquet_source(with_classes).num_classes == 7
    with pytest.raises(DataError, match="num_classes 3"):
        parquet_source(ParquetData(source="parquet", path=str(path), shape=[4, 3, 3], num_classes=3))

    out = tmp_path / "prepared"
    manifest = prepare(spec, out, log=quiet)
    assert manifest["factors"] == ["weight"]
    _check_prepared(out, x, y, split_indices(12, 0.1, 0.25, 0))


def test_parquet_split_column_is_honoured(tmp_path):
    x = RNG.integers(0, 256, size=(8, 4, 4, 1), dtype=np.uint8)
    split = ["train", "test", "train", "val", "train", "test", "train", "train"]
    path = tmp_path / "split.parquet"
    pq.write_table(_image_table(x, split=pa.array(split)), path)
    spec = ParquetData(source="parquet", path=str(path), shape=[4, 4, 1])
    raw = parquet_source(spec)
    assert {k: v.tolist() for k, v in raw.splits.items()} == {"train": [0, 2, 4, 6, 7], "val": [3], "test": [1, 5]}
    assert raw.labels is None and raw.num_classes == 0
    out = tmp_path / "prepared"
    prepare(spec, out, log=quiet)
    _check_prepared(out, x, None, raw.splits)

    pq.write_table(_image_table(x, split=pa.array(["train"] * 7 + ["holdout"])), path)
    with pytest.raises(DataError, match="holdout"):
        parquet_source(spec)


def test_parquet_points(tmp_path):
    points = RNG.normal(size=(40, 2)).astype(np.float32)
    column = pa.FixedSizeListArray.from_arrays(pa.array(points.reshape(-1), type=pa.float32()), 2)
    path = tmp_path / "points.parquet"
    pq.write_table(pa.table({"x": column, "component": pa.array(np.arange(40) % 3, type=pa.int16())}), path)
    spec = ParquetData(source="parquet", path=str(path))
    raw = parquet_source(spec)
    assert raw.kind == "points" and raw.labels is None
    np.testing.assert_array_equal(raw.x, points)
    out = tmp_path / "prepared"
    prepare(spec, out, log=quiet)
    parts = split_indices(40, 0.1, 0.2, 0)
    for split, rows in parts.items():
        np.testing.assert_array_equal(load_split(out, split).x.numpy(), points[rows])


def test_parquet_wrong_columns(tmp_path):
    x = RNG.integers(0, 256, size=(4, 2, 2, 1), dtype=np.uint8)
    cases = {
        "var_binary.parquet": (pa.table({"image": pa.array([bytes(r) for r in x.reshape(4, -1)])}),
                               "fixed_size_binary"),
        "float_label.parquet": (_image_table(x, label=pa.array([0.0, 1.0, 1.0, 0.0])), "label.*integer"),
        "negative_label.parquet": (_image_table(x, label=pa.array([0, -1, 1, 0])), "negative"),
        "no_data.parquet": (pa.table({"label": pa.array([0, 1, 2, 3])}), "no 'image'"),
        "list_x.parquet": (pa.table({"x": pa.array([[1.0, 2.0], [3.0]])}), "no 'image'"),
        "empty.parquet": (_image_table(x[:0]), "no rows"),
    }
    for name, (table, match) in cases.items():
        pq.write_table(table, tmp_path / name)
        with pytest.raises(DataError, match=match) as info:
            parquet_source(ParquetData(source="parquet", path=str(tmp_path / name), shape=[2, 2, 1]))
        assert name in str(info.value)


def test_parquet_unreadable_and_missing(tmp_path):
    garbage = tmp_path / "garbage.parquet"
    garbage.write_bytes(RNG.integers(0, 256, size=300, dtype=np.uint8).tobytes())
    spec = ParquetData(source="parquet", path=str(garbage))
    with pytest.raises(DataError, match="unreadable Parquet") as info:
        parquet_source(spec)
    assert "garbage.parquet" in str(info.value)
    with pytest.raises(DataError):
        prepare(spec, tmp_path / "out", log=quiet)
    _assert_nothing_written(tmp_path, "out")

    with pytest.raises(DataError, match="not found"):
        parquet_source(ParquetData(source="parquet", path=str(tmp_path / "nope.parquet")))
    (tmp_path / "emptydir").mkdir()
    with pytest.raises(DataError, match="no \\*.parquet"):
        parquet_source(ParquetData(source="parquet", path=str(tmp_path / "emptydir")))

    # two files with different schemas in one folder
    folder = tmp_path / "mixed"
    folder.mkdir()
    x = RNG.integers(0, 256, size=(3, 2, 2, 1), dtype=np.uint8)
    pq.write_table(_image_table(x), folder / "a.parquet")
    pq.write_table(_image_table(x, label=pa.array([0, 1, 2])), folder / "b.parquet")
    with pytest.raises(DataError, match="different schemas"):
        parquet_source(ParquetData(source="parquet", path=str(folder), shape=[2, 2, 1]))


# -- prepare: atomic output -----------------------------------------------------------

def test_failed_prepare_keeps_previous_output(tmp_path):
    x, y = _mnist_like(10)
    images = write_idx(tmp_path / "imgs", x)
    spec = IdxData(source="idx", images=str(images))
    out = tmp_path / "prepared"
    prepare(spec, out, log=quiet)
    before = {p.name: p.read_bytes() for p in out.iterdir()}
    images.write_bytes(idx_bytes(x)[:-1])  # now truncated
    with pytest.raises(DataError, match="imgs"):
        prepare(spec, out, log=quiet)
    assert {p.name: p.read_bytes() for p in out.iterdir()} == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["imgs", "prepared"]


def test_failure_while_writing_leaves_nothing(tmp_path, monkeypatch):
    from genflow.data import shards

    x, _ = _mnist_like(10)
    spec = IdxData(source="idx", images=str(write_idx(tmp_path / "imgs", x)))

    def boom(*_args, **_kwargs):
        raise OSError("disk full")

    monkeypatch.setattr(shards.pq, "write_table", boom)
    with pytest.raises(OSError, match="disk full"):
        prepare(spec, tmp_path / "out", log=quiet)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["imgs"]


# -- params validation ----------------------------------------------------------------

@pytest.mark.parametrize("entry, key", [
    ({"source": "idx", "images": "a", "test_labels": "b"}, "test_labels"),
    ({"source": "idx", "images": "a", "test_images": "b", "test_fraction": 0.1}, "test_fraction"),
    ({"source": "idx", "images": "a", "labels": "l", "test_images": "b"}, "test_labels"),
    ({"source": "imagefolder", "path": "x", "size": 2}, "size"),
    ({"source": "imagefolder", "path": "x", "crop": "left"}, "crop"),
    ({"source": "sprites", "resolution": 48}, "resolution"),
    ({"source": "stacked_digits", "resolution": 12}, "resolution"),
    ({"source": "sprites", "colour": True}, "colour"),
    ({"source": "idx", "image": "a"}, "image"),
    ({"source": "parquet", "path": "p", "shape": [4, 4]}, "shape"),
])
def test_data_entry_validation_names_key(entry, key):
    raw = tiny_params_dict()
    raw["data"]["mine"] = entry
    with pytest.raises(ConfigError) as info:
        config.validate(raw)
    assert re.search(rf"data\.mine\.{key}: ", str(info.value)), str(info.value)


def test_file_sources_validate_and_load_through_params(tmp_path):
    x, y = _mnist_like(10)
    raw = tiny_params_dict()
    raw["data"]["mnist"] = {"source": "idx", "images": str(write_idx(tmp_path / "i", x)),
                            "labels": str(write_idx(tmp_path / "l", y))}
    spec = config.validate(raw).data["mnist"]
    assert isinstance(spec, IdxData)
    np.testing.assert_array_equal(load_source(spec, log=quiet).x[..., 0], x)


# -- the prepare stage command on broken files: exit 2, the file named, the old output kept --------

def _broken_sources(tmp_path) -> dict[str, tuple[dict, str]]:
    x, _ = _mnist_like(10)
    (tmp_path / "raw").mkdir()
    idx = write_idx(tmp_path / "raw" / "imgs-idx3-ubyte", x)
    idx.write_bytes(idx.read_bytes()[:-7])
    folder = tmp_path / "raw" / "faces"
    write_folder(folder, classes=("a", "b"), per_class=2)
    (folder / "b" / "broken.png").write_bytes(b"\x89PNG\r\n\x1a\n not really")
    cifar = tmp_path / "raw" / "cifar"
    write_cifar10(cifar)
    (cifar / "data_batch_3.bin").write_bytes((cifar / "data_batch_3.bin").read_bytes()[:-1])
    garbage = tmp_path / "raw" / "table.parquet"
    garbage.write_bytes(b"PAR1" + bytes(200))
    return {"idx": ({"source": "idx", "images": str(idx)}, idx.name),
            "imagefolder": ({"source": "imagefolder", "path": str(folder)}, "broken.png"),
            "cifar10": ({"source": "cifar10", "path": str(cifar)}, "data_batch_3.bin"),
            "parquet": ({"source": "parquet", "path": str(garbage)}, "table.parquet")}


def _parquet_entry(path, table: pa.Table) -> tuple[dict, str]:
    pq.write_table(table, path)
    return {"source": "parquet", "path": str(path)}, path.name


def _images_10(**columns) -> pa.Table:
    return _image_table(np.zeros((10, 2, 2, 1), np.uint8), **columns)


def _folder_with_link(root, link: str, target) -> tuple[dict, str]:
    write_folder(root, classes=("a", "b"), per_class=5)
    (root / link).symlink_to(target)
    return {"source": "imagefolder", "path": str(root)}, link


def _gzip_bomb(path) -> tuple[dict, str]:
    """Ten 6x5 images as the header promises, then 64 MiB of zeros (gzip members concatenate)."""
    header = bytes([0, 0, 8, 3]) + b"".join(struct.pack(">I", d) for d in (10, 6, 5))
    path.write_bytes(gzip.compress(header + bytes(300)) + gzip.compress(bytes(16 << 20)) * 4)
    return {"source": "idx", "images": str(path)}, path.name


def _pickled_cifar(root) -> tuple[dict, str]:
    root.mkdir()
    (root / "data_batch_1").write_bytes(b"\x80\x04 a pickle")
    return {"source": "cifar10", "path": str(root)}, "data_batch_1.bin"


NAN_POINTS = pa.FixedSizeListArray.from_arrays(pa.array([0.0, 1.0, float("nan"), 2.0] * 5, type=pa.float32()), 2)
MORE_BROKEN = {  # input that used to be accepted, or to end in a traceback (issue #32): raw folder -> entry, name
    "parquet-nan-points": lambda raw: _parquet_entry(raw / "nan-points.parquet", pa.table({"x": NAN_POINTS})),
    "parquet-shape-metadata": lambda raw: _parquet_entry(
        raw / "bad-shape.parquet", _images_10().replace_schema_metadata({"genflow.shape": "[2, 2"})),
    "parquet-huge-label": lambda raw: _parquet_entry(raw / "huge-label.parquet",
                                                     _images_10(label=pa.array([10**9] + [0] * 9))),
    "imagefolder-dangling-link": lambda raw: _folder_with_link(raw / "dangling", "a/moved.png", raw / "gone.png"),
    "imagefolder-link-loop": lambda raw: _folder_with_link(raw / "loop", "again", raw / "loop"),
    "idx-gzip-bomb": lambda raw: _gzip_bomb(raw / "bomb-idx3-ubyte.gz"),
    "idx-empty-split": lambda raw: ({"source": "idx", "images": str(write_idx(raw / "three", _mnist_like(3)[0]))},
                                    "three"),
    "cifar10-pickle-version": lambda raw: _pickled_cifar(raw / "cifar-10-batches-py"),
}


def _broken_source(tmp_path, source: str) -> tuple[dict, str]:
    if source not in MORE_BROKEN:
        return _broken_sources(tmp_path)[source]
    (tmp_path / "raw").mkdir()
    return MORE_BROKEN[source](tmp_path / "raw")


@pytest.mark.parametrize("source", ["idx", "imagefolder", "cifar10", "parquet", *MORE_BROKEN])
def test_prepare_stage_on_a_broken_file_exits_2_naming_it(tmp_path, source):
    import subprocess

    import yaml

    from conftest import PYTHON, REPO

    entry, name = _broken_source(tmp_path, source)
    raw = tiny_params_dict()
    raw["data"]["mine"] = entry
    (tmp_path / "params.yaml").write_text(yaml.safe_dump(raw))
    out = tmp_path / "data" / "prepared" / "mine"
    out.mkdir(parents=True)
    (out / "manifest.json").write_text("{}")  # the previous output, which must survive
    proc = subprocess.run([str(PYTHON), str(REPO / "stages" / "prepare.py"), "--dataset", "mine"], cwd=tmp_path,
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == 2, proc.stderr
    assert name in proc.stderr and "Traceback" not in proc.stderr, proc.stderr
    assert [p.name for p in out.iterdir()] == ["manifest.json"]
    assert [p.name for p in out.parent.iterdir()] == ["mine"]  # no temporary left beside it
