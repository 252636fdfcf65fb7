"""File sources validate what they accept (issue #32, "bad data"): non-finite and null values,
label and shape bounds, symbolic links, bounded decompression, and splits that must hold rows.
Every case writes its own small file and checks that the DataError names the file and the problem."""
from __future__ import annotations

import gzip
import json
import os
import struct
import subprocess
import sys

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from PIL import Image

from genflow.data.cifar import cifar_source
from genflow.data.idx import read_idx
from genflow.data.imagefolder import imagefolder_source, list_images
from genflow.data.parquet_source import MAX_CLASSES, parquet_source
from genflow.data.prepare import prepare
from genflow.data.raw import MAX_SOURCE_BYTES
from genflow.data.specs import CifarData, ImageFolderData, ParquetData
from genflow.errors import DataError

from conftest import REPO, quiet

RNG = np.random.default_rng(32)


def _refused(load, *words: str) -> str:
    """``load()`` raises DataError whose message holds every one of ``words``; the message."""
    with pytest.raises(DataError) as info:
        load()
    message = str(info.value)
    for word in words:
        assert word in message, message
    return message


# -- Parquet ---------------------------------------------------------------------------------

def _image_table(n: int = 6, shape=(2, 2, 1), metadata: str | None = "[2, 2, 1]", **columns) -> pa.Table:
    width = int(np.prod(shape))
    pixels = RNG.integers(0, 256, size=(n, width), dtype=np.uint8)
    image = pa.FixedSizeBinaryArray.from_buffers(pa.binary(width), n, [None, pa.py_buffer(pixels.tobytes())])
    table = pa.table({"image": image, **columns})
    return table.replace_schema_metadata({"genflow.shape": metadata}) if metadata is not None else table


def _points_table(values, dim: int = 2, kind=pa.float32(), **columns) -> pa.Table:
    return pa.table({"x": pa.FixedSizeListArray.from_arrays(pa.array(values, type=kind), dim), **columns})


def _parquet(tmp_path, name: str, table: pa.Table) -> ParquetData:
    pq.write_table(table, tmp_path / name)
    return ParquetData(source="parquet", path=str(tmp_path / name))


FINITE_POINTS = [float(v) for v in range(12)]
BAD_VALUES = {  # file name -> (table, words the message must hold)
    "nan-point.parquet": (_points_table(FINITE_POINTS[:5] + [float("nan")] + FINITE_POINTS[6:]),
                          ["non-finite", "row 2"]),
    "inf-point.parquet": (_points_table([float("-inf")] + FINITE_POINTS[1:]), ["non-finite", "row 0"]),
    "float64-overflow.parquet": (_points_table(FINITE_POINTS[:-1] + [1e300], kind=pa.float64()),
                                 ["beyond float32", "row 5"]),
    "null-point-row.parquet": (pa.table({"x": pa.array([[0.0, 1.0], None, [2.0, 3.0]], pa.list_(pa.float32(), 2))}),
                               ["column 'x'", "null", "row 1"]),
    "null-coordinate.parquet": (_points_table([0.0, None, 2.0, 3.0]), ["null coordinates"]),
    "text-points.parquet": (_points_table(["a", "b", "c", "d"], kind=pa.string()), ["column 'x'", "string"]),
    "null-image.parquet": (_image_table(3).set_column(0, "image", pa.array([b"abcd", None, b"abcd"], pa.binary(4))),
                           ["column 'image'", "null", "row 1"]),
    "null-label.parquet": (_image_table(3, label=pa.array([0, None, 1])), ["column 'label'", "null", "row 1"]),
    "null-split.parquet": (_image_table(3, split=pa.array(["train", "test", None])), ["column 'split'", "null"]),
    "nan-factor.parquet": (_image_table(3, weight=pa.array([0.5, float("nan"), 1.0])), ["'weight'", "nan", "row 1"]),
    "null-factor.parquet": (_image_table(3, scale=pa.array([1, 2, None])), ["'scale'", "null", "row 2"]),
    "huge-label.parquet": (_image_table(3, label=pa.array([0, 10**9, 1])), ["'label'", "1000000000", "99999"]),
    "negative-component.parquet": (_points_table(FINITE_POINTS[:4], component=pa.array([0, -3])),
                                   ["'component'", "negative"]),
    "huge-component.parquet": (_points_table(FINITE_POINTS[:4], component=pa.array([0, 40_000])),
                               ["'component'", "40000"]),
    "float-component.parquet": (_points_table(FINITE_POINTS[:4], component=pa.array([0.0, 1.0])),
                                ["'component'", "integer"]),
}


@pytest.mark.parametrize("name", sorted(BAD_VALUES))
def test_parquet_bad_values_are_refused_naming_file_and_row(tmp_path, name):
    table, words = BAD_VALUES[name]
    spec = _parquet(tmp_path, name, table)
    _refused(lambda: parquet_source(spec), name, *words)


def test_parquet_label_bound_is_the_params_bound():
    """Without num_classes the class count is the largest label + 1: labels are bounded like num_classes."""
    bound = next(m.le for m in ParquetData.model_fields["num_classes"].metadata if hasattr(m, "le"))
    assert MAX_CLASSES == bound


def test_parquet_largest_allowed_label_is_accepted(tmp_path):
    spec = _parquet(tmp_path, "wide.parquet", _image_table(3, label=pa.array([0, MAX_CLASSES - 1, 1])))
    assert parquet_source(spec).num_classes == MAX_CLASSES


BAD_SHAPES = {"bad-json": "[2, 2", "two-numbers": "[4, 1]", "text": '"2x2x1"', "floats": "[2.0, 2, 1]",
              "booleans": "[true, 4, 1]", "object": '{"h": 2}', "zero": "[0, 4, 1]", "negative": "[-2, -2, 1]",
              "wrong-bytes": "[1, 1, 1]", "four-channels": "[1, 1, 4]"}


@pytest.mark.parametrize("case", sorted(BAD_SHAPES))
def test_parquet_malformed_shape_metadata_is_named(tmp_path, case):
    spec = _parquet(tmp_path, f"{case}.parquet", _image_table(4, metadata=BAD_SHAPES[case]))
    message = _refused(lambda: parquet_source(spec), f"{case}.parquet")
    assert any(word in message for word in ("genflow.shape", "absurd", "bytes", "channels")), message


def test_parquet_shape_in_params_overrides_broken_metadata(tmp_path):
    pq.write_table(_image_table(4, metadata="[2, 2"), tmp_path / "fixable.parquet")
    raw = parquet_source(ParquetData(source="parquet", path=str(tmp_path / "fixable.parquet"), shape=[2, 2, 1]))
    assert raw.x.shape == (4, 2, 2, 1)


def test_parquet_folder_files_must_agree_on_shape(tmp_path):
    folder = tmp_path / "mixed"
    folder.mkdir()
    pq.write_table(_image_table(3, metadata="[2, 2, 1]"), folder / "a.parquet")
    pq.write_table(_image_table(3, metadata="[4, 1, 1]"), folder / "b.parquet")
    _refused(lambda: parquet_source(ParquetData(source="parquet", path=str(folder))), "b.parquet", "[4, 1, 1]",
             "a.parquet")


def test_parquet_spark_style_folder_is_read_once(tmp_path):
    """x.parquet/part-*.parquet with Spark's bookkeeping: each row once, whether the path names the
    x.parquet folder or the folder above it (which used to read x.parquet whole and then each part)."""
    dataset = tmp_path / "outer" / "x.parquet"
    (dataset / "_temporary" / "0").mkdir(parents=True)
    parts = [_image_table(4), _image_table(5)]
    for index, part in enumerate(parts):
        pq.write_table(part, dataset / f"part-{index:05d}-abc.snappy.parquet")
        (dataset / f".part-{index:05d}-abc.snappy.parquet.crc").write_bytes(b"crc")
    pq.write_table(_image_table(7), dataset / "_temporary" / "0" / "part-00000-attempt.parquet")
    (dataset / "_SUCCESS").write_bytes(b"")
    expected = np.concatenate([p.column("image").to_numpy(zero_copy_only=False) for p in parts])
    for path in (dataset, tmp_path / "outer"):
        raw = parquet_source(ParquetData(source="parquet", path=str(path)))
        assert len(raw.x) == 9
        assert [row.tobytes() for row in raw.x] == list(expected)


def test_parquet_decompression_is_bounded_before_reading(tmp_path, monkeypatch):
    """The footer's uncompressed sizes are checked before any page is inflated, over a folder's
    files together (the bound lowered here to 1 MiB; it is MAX_SOURCE_BYTES, 8 GiB)."""
    from genflow.data import parquet_source as module

    monkeypatch.setattr(module, "MAX_SOURCE_BYTES", 1 << 20)
    zeros = pa.FixedSizeBinaryArray.from_buffers(pa.binary(1024), 4096, [None, pa.py_buffer(bytes(4 << 20))])
    bomb = tmp_path / "zeros.parquet"
    pq.write_table(pa.table({"image": zeros}), bomb, compression="zstd")
    assert bomb.stat().st_size < 64 << 10
    _refused(lambda: parquet_source(ParquetData(source="parquet", path=str(bomb), shape=[32, 32, 1])),
             "zeros.parquet", "uncompressed", str(1 << 20))
    folder = tmp_path / "parts"
    folder.mkdir()
    for index in range(3):  # 400 KiB each: the third goes past the bound
        pq.write_table(pa.table({"image": zeros.slice(0, 400)}), folder / f"part-{index}.parquet")
    _refused(lambda: parquet_source(ParquetData(source="parquet", path=str(folder), shape=[32, 32, 1])),
             "part-2.parquet", "uncompressed")


def test_parquet_split_column_that_leaves_a_split_empty(tmp_path):
    spec = _parquet(tmp_path, "no-train.parquet", _image_table(4, split=pa.array(["val", "test", "test", "val"])))
    _refused(lambda: prepare(spec, tmp_path / "out", log=quiet), "no-train.parquet", "column 'split' leaves train empty",
             "train 0, val 2, test 2")
    assert not (tmp_path / "out").exists()
    no_val = _image_table(4, split=pa.array(["train", "test", "train", "train"]))
    spec = _parquet(tmp_path, "no-val.parquet", no_val)
    _refused(lambda: prepare(spec, tmp_path / "out", log=quiet), "no-val.parquet", "leaves val empty",
             "val_fraction: 0")
    # val_fraction: 0 says no validation split is wanted
    manifest = prepare(spec.model_copy(update={"val_fraction": 0.0}), tmp_path / "out", log=quiet)
    assert {k: v["rows"] for k, v in manifest["splits"].items()} == {"train": 3, "val": 0, "test": 1}
    spec = _parquet(tmp_path, "unknown.parquet", _image_table(3, split=pa.array(["train", "holdout", "dev"])))
    _refused(lambda: parquet_source(spec), "unknown.parquet", "'dev'", "'holdout'")


def test_parquet_manifest_beside_the_files(tmp_path):
    """A manifest.json that is not genflow's is ignored; genflow's own with absurd classes is refused."""
    pq.write_table(_image_table(4, label=pa.array([0, 1, 2, 1])), tmp_path / "a.parquet")
    spec = ParquetData(source="parquet", path=str(tmp_path / "a.parquet"))
    (tmp_path / "manifest.json").write_text(json.dumps({"num_classes": "ten"}))  # someone else's
    assert parquet_source(spec).num_classes == 3
    (tmp_path / "manifest.json").write_text(json.dumps({"format_version": 1, "num_classes": 10**9}))
    _refused(lambda: parquet_source(spec), "manifest.json", "1000000000")
    (tmp_path / "manifest.json").write_text(json.dumps({"format_version": 1, "num_classes": 5,
                                                        "class_names": ["a", "b"]}))
    _refused(lambda: parquet_source(spec), "manifest.json", "class_names")


# -- image folders ---------------------------------------------------------------------------

def _folder(root, classes=("a", "b"), per_class=2):
    for name in classes:
        (root / name).mkdir(parents=True)
        for i in range(per_class):
            Image.fromarray(RNG.integers(0, 256, size=(4, 4, 3), dtype=np.uint8)).save(root / name / f"{i}.png")
    return root


def _link(link, target):
    os.symlink(target, link)
    return link


LINK_CASES = {  # case -> (make(root) -> the path the message must name, words)
    "dangling-file": (lambda r: _link(r / "a" / "gone.png", r / "nowhere.png"), ["broken symbolic link"]),
    "dangling-class": (lambda r: _link(r / "c", r.parent / "nowhere"), ["broken symbolic link"]),
    "self-link": (lambda r: _link(r / "a" / "self.png", "self.png"), ["broken symbolic link"]),
    "class-loops-to-root": (lambda r: _link(r / "loop", r), ["symbolic link loop"]),
    "nested-loop": (lambda r: _link(r / "a" / "back", r.parent), ["symbolic link loop"]),
    "link-to-slash": (lambda r: _link(r / "b" / "everything", "/"), ["symbolic link loop"]),
    "file-linked-twice": (lambda r: _link(r / "b" / "again.png", r / "a" / "0.png"), ["same file as", "0.png"]),
    "class-linked-twice": (lambda r: _link(r / "c", r / "a"), ["same file as"]),
    "fifo": (lambda r: (os.mkfifo(r / "a" / "pipe.png"), r / "a" / "pipe.png")[1], ["FIFO"]),
}


@pytest.mark.parametrize("case", sorted(LINK_CASES))
def test_imagefolder_links_and_special_files_are_refused(tmp_path, case):
    make, words = LINK_CASES[case]
    root = _folder(tmp_path / "data")
    named = make(root)
    message = _refused(lambda: list_images(root, "folders"), *words)
    assert str(named) in message, message
    _refused(lambda: list_images(root, "none"), str(named), *words)  # unlabeled folders: walked the same way


def test_imagefolder_reads_links_that_do_not_loop(tmp_path):
    """Symlink farms and class folders linked from elsewhere are data, read once each."""
    pool = _folder(tmp_path / "pool", classes=("cats", "dogs"))
    root = tmp_path / "data"
    (root / "x").mkdir(parents=True)
    _link(root / "x" / "c0.png", pool / "cats" / "0.png")
    _link(root / "x" / "c1.png", pool / "cats" / "1.png")
    _link(root / "y", pool / "dogs")
    raw = imagefolder_source(ImageFolderData(source="imagefolder", path=str(root)), log=quiet)
    assert raw.class_names == ["x", "y"] and raw.labels.tolist() == [0, 0, 1, 1]
    np.testing.assert_array_equal(raw.x[2], np.asarray(Image.open(pool / "dogs" / "0.png")))


def test_imagefolder_zero_size_image_is_refused(tmp_path):
    import io

    root = _folder(tmp_path / "data")
    buffer = io.BytesIO()
    Image.new("RGB", (3, 2)).save(buffer, format="PNG")
    png = bytearray(buffer.getvalue())
    png[16:24] = bytes(8)  # IHDR width and height: 0 x 0
    (root / "b" / "empty.png").write_bytes(bytes(png))
    spec = ImageFolderData(source="imagefolder", path=str(root))
    _refused(lambda: imagefolder_source(spec, log=quiet), "empty.png", "unreadable image")


def test_imagefolder_image_modes_read_right(tmp_path):
    """Palette (with and without transparency), grey + alpha, RGBA, 1-bit and 16-bit grey all
    decode to the grey values they show (16-bit keeps its top 8 bits)."""
    grey = (np.arange(16, dtype=np.uint8) * 16).reshape(4, 4)
    root = tmp_path / "modes"
    root.mkdir()
    Image.fromarray(grey).convert("P").save(root / "p.png")
    Image.fromarray(grey).convert("P").save(root / "p-transparent.png", transparency=0)
    Image.fromarray(np.stack([grey, np.full_like(grey, 128)], -1), "LA").save(root / "la.png")
    Image.fromarray(np.stack([grey] * 3 + [np.full_like(grey, 128)], -1)).save(root / "rgba.png")
    Image.fromarray(grey.astype(np.uint16) * 256 + 255).save(root / "i16.png")
    Image.fromarray(grey >= 128).save(root / "one-bit.png")
    spec = ImageFolderData(source="imagefolder", path=str(root), labels="none", grayscale=True)
    raw = imagefolder_source(spec, log=quiet)
    files = list_images(root, "none")[0]
    for path, pixels in zip(files, raw.x):
        expected = np.where(grey >= 128, 255, 0) if path.name == "one-bit.png" else grey
        np.testing.assert_array_equal(pixels[..., 0], expected, err_msg=path.name)


# -- IDX -------------------------------------------------------------------------------------

def _idx_header(dims) -> bytes:
    return bytes([0, 0, 8, len(dims)]) + b"".join(struct.pack(">I", d) for d in dims)


def _gzip_bomb(path, zeros_mib: int) -> None:
    """A header promising 10 28x28 images, the images, then ``zeros_mib`` MiB of zeros, gzipped:
    one compressed 16 MiB block written over and over (gzip members concatenate), so the
    test writes a ~0.5 MB file without compressing half a gigabyte."""
    block = gzip.compress(bytes(16 << 20), compresslevel=9)
    with open(path, "wb") as out:
        out.write(gzip.compress(_idx_header((10, 28, 28)) + bytes(10 * 784)))
        for _ in range(zeros_mib // 16):
            out.write(block)


MEMORY_PROBE = """
import resource, sys
from genflow.data.idx import read_idx
from genflow.errors import DataError
with open("/proc/self/statm") as statm:
    virtual = int(statm.read().split()[0]) * resource.getpagesize()
cap = virtual + (2 << 30)  # a regression fails the test instead of eating the machine
resource.setrlimit(resource.RLIMIT_AS, (cap, cap))
for path in sys.argv[1:]:
    before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    try:
        read_idx(path, 3)
        print("ACCEPTED", path)
    except DataError as exc:
        print("REFUSED", exc)
    grown = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - before
    print("GROWN_KIB", grown)
"""


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="reads /proc and ru_maxrss in KiB (Linux)")
def test_idx_gzip_bomb_and_forged_header_cost_no_memory(tmp_path):
    """A 0.5 MB .gz that inflates to 512 MiB past what its header promises, and a header that promises
    600 MB over a file holding 10 images: both refused, peak memory growing by under 64 MiB
    (the old reader inflated the whole stream: about 1 GiB for the bomb)."""
    bomb = tmp_path / "bomb-idx3-ubyte.gz"
    _gzip_bomb(bomb, 512)
    assert bomb.stat().st_size < 1 << 20
    forged = tmp_path / "forged-idx3-ubyte.gz"
    forged.write_bytes(gzip.compress(_idx_header((765_000, 28, 28)) + bytes(10 * 784)))
    proc = subprocess.run([sys.executable, "-c", MEMORY_PROBE, str(bomb), str(forged)], cwd=REPO,
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    lines = proc.stdout.splitlines()
    assert lines[0].startswith("REFUSED") and "bomb-idx3-ubyte.gz: has trailing bytes" in lines[0], lines
    assert lines[2].startswith("REFUSED") and "forged-idx3-ubyte.gz: truncated" in lines[2], lines
    for grown in (lines[1], lines[3]):
        assert int(grown.split()[1]) < 64 << 10, lines


def test_idx_promised_size_is_bounded(tmp_path):
    """Each dimension within its own bound, the product beyond MAX_SOURCE_BYTES: refused from the header alone."""
    path = tmp_path / "huge-idx3-ubyte"
    path.write_bytes(_idx_header((1_000_000, 8192, 8192)) + bytes(64))
    _refused(lambda: read_idx(path, 3), "huge-idx3-ubyte", "absurd size", str(MAX_SOURCE_BYTES))
    gz = tmp_path / "short-idx3-ubyte.gz"
    gz.write_bytes(gzip.compress(_idx_header((3, 2, 2)) + bytes(11)))
    _refused(lambda: read_idx(gz, 3), "short-idx3-ubyte.gz", "truncated", "3x2x2")
    header_only = tmp_path / "header-only.gz"
    header_only.write_bytes(gzip.compress(bytes([0, 0, 8, 3, 0, 0])))
    _refused(lambda: read_idx(header_only, 3), "header-only.gz", "truncated IDX header")


# -- CIFAR binary ----------------------------------------------------------------------------

def _cifar10(root, records: int = 2):
    root.mkdir()
    for name in [f"data_batch_{i}.bin" for i in range(1, 6)] + ["test_batch.bin"]:
        labels = RNG.integers(0, 10, size=(records, 1), dtype=np.uint8)
        pixels = RNG.integers(0, 256, size=(records, 3072), dtype=np.uint8)
        (root / name).write_bytes(np.concatenate([labels, pixels], axis=1).tobytes())
    return root


def test_cifar_more_broken_inputs(tmp_path):
    root = _cifar10(tmp_path / "cifar-10-batches-bin")
    spec = CifarData(source="cifar10", path=str(root))
    batch = root / "data_batch_4.bin"
    batch.write_bytes(batch.read_bytes() + b"\x00\x01")  # trailing bytes after the last record
    _refused(lambda: cifar_source(spec), "data_batch_4.bin", "not a whole number")
    batch.write_bytes(batch.read_bytes()[:-2])
    (root / "batches.meta.txt").write_bytes(b"airplane\n\xff\xfe\n")
    _refused(lambda: cifar_source(spec), "batches.meta.txt", "not UTF-8")
    (root / "batches.meta.txt").unlink()
    cifar_source(spec)  # whole again

    archive = tmp_path / "cifar-10-binary.tar.gz"
    archive.write_bytes(b"\x1f\x8b not really")
    _refused(lambda: cifar_source(CifarData(source="cifar10", path=str(archive))), "cifar-10-binary.tar.gz",
             "extract it")
    pickled = tmp_path / "cifar-10-batches-py"
    pickled.mkdir()
    (pickled / "data_batch_1").write_bytes(b"\x80\x04 a pickle")
    _refused(lambda: cifar_source(CifarData(source="cifar10", path=str(pickled))), "data_batch_1.bin", "pickle")


# -- every source: the splits a run needs hold rows ------------------------------------------

def _three_images(tmp_path, source: str) -> dict:
    if source == "imagefolder":
        root = _folder(tmp_path / "three", classes=("a",), per_class=3)
        return {"source": "imagefolder", "path": str(root)}
    if source == "idx":
        path = tmp_path / "three-idx3-ubyte"
        path.write_bytes(_idx_header((3, 4, 4)) + bytes(48))
        return {"source": "idx", "images": str(path)}
    if source == "parquet":
        pq.write_table(_image_table(3), tmp_path / "three.parquet")
        return {"source": "parquet", "path": str(tmp_path / "three.parquet")}
    return {"source": "cifar10", "path": str(_cifar10(tmp_path / "cifar3", records=1))}  # 5 training records


@pytest.mark.parametrize("source", ["imagefolder", "idx", "parquet", "cifar10"])
def test_a_split_left_empty_is_refused_naming_data_and_fractions(tmp_path, source):
    from genflow.data.specs import SPEC_BY_SOURCE

    entry = _three_images(tmp_path, source)
    spec = SPEC_BY_SOURCE[source](**entry, val_fraction=0.1)
    where = entry.get("path") or entry["images"]
    _refused(lambda: prepare(spec, tmp_path / "tiny", log=quiet), where, "dataset 'tiny'", "leave val empty",
             "val_fraction")
    assert not (tmp_path / "tiny").exists()
    # no validation split asked for: the same data prepares
    manifest = prepare(spec.model_copy(update={"val_fraction": 0.0}), tmp_path / "tiny", log=quiet)
    assert manifest["splits"]["train"]["rows"] > 0 and manifest["splits"]["test"]["rows"] > 0
