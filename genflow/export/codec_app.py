"""`genflow compress` / `genflow decompress`: files in, files out, around genflow.export.codec.

Images come as a folder of PNG / JPEG files (or one image), a Parquet file in genflow's schema,
or an ``.npz`` with ``x``: uint8 images (N, C, H, W) or (N, H, W, C), and for a conditional
model ``c``: int class labels (a Parquet file's labels serve too). Decompressed images go to an
``.npz`` (``x`` uint8 (N, C, H, W), ``decoded`` the decoder's float32 output in [-1, 1], ``c``
if the model is conditional) or to a folder of PNG files.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from genflow.errors import DataError, GenflowError
from genflow.export import codec
from genflow.export.exported import ExportedModel
from genflow.io import atomic_dir, atomic_path


@dataclass
class Images:
    names: list[str]
    pixels: np.ndarray  # uint8 (N, C, H, W)
    labels: np.ndarray | None

    @property
    def x(self) -> np.ndarray:
        """float32 in [-1, 1], what the networks take."""
        return self.pixels.astype(np.float32) / 127.5 - 1.0


def load_npz(path: Path, model: ExportedModel) -> Images:
    try:
        with np.load(path, allow_pickle=False) as arrays:
            found = {key: arrays[key] for key in arrays.files}
    except (OSError, ValueError) as exc:
        raise DataError(f"{path}: not a readable .npz ({exc})") from None
    if "x" not in found:
        raise DataError(f"{path}: no 'x' array (uint8 images); it holds {', '.join(found) or 'nothing'}")
    x, shape = found["x"], tuple(model.io["data_shape"])
    if x.dtype != np.uint8:
        raise DataError(f"{path}: 'x' is {x.dtype}; give uint8 pixels 0..255")
    if x.ndim == 4 and x.shape[1:] != shape and x.shape[1:] == (*shape[1:], shape[0]):
        x = x.transpose(0, 3, 1, 2)  # (N, H, W, C)
    if x.ndim != 4 or x.shape[1:] != shape:
        raise DataError(f"{path}: 'x' holds images of shape {x.shape[1:]}; model {model.name!r} takes {shape} "
                        f"(C, H, W) or {(*shape[1:], shape[0])} (H, W, C)")
    labels = found.get("c")
    return Images([f"{path.name}#{i}" for i in range(len(x))], np.ascontiguousarray(x), labels)


def load(path: str | Path, model: ExportedModel) -> Images:
    """Images (and labels, where the file has them) for a codec model; a conditional model
    needs labels."""
    from genflow.export.apps import load_images

    path = Path(path)
    if path.suffix == ".npz":
        if not path.is_file():
            raise DataError(f"{path}: no such file")
        images = load_npz(path, model)
    else:
        names, x = load_images(path, model)
        images = Images(names, codec.to_uint8(x), _parquet_labels(path))
    return _checked_labels(images, model, path)


def _parquet_labels(path: Path) -> np.ndarray | None:
    if not (path.suffix == ".parquet" or (path.is_dir() and any(path.glob("*.parquet")))):
        return None
    from genflow.data.parquet_source import parquet_source
    from genflow.data.specs import ParquetData

    return parquet_source(ParquetData(source="parquet", path=str(path))).labels


def _checked_labels(images: Images, model: ExportedModel, path: Path) -> Images:
    c_dim = model.io["c_dim"]
    if not c_dim:
        return Images(images.names, images.pixels, None)
    if images.labels is None:
        raise DataError(f"{path}: model {model.name!r} is conditional and needs each image's class: give an "
                        ".npz with a 'c' array or a Parquet file with labels")
    labels = np.asarray(images.labels)
    if labels.shape != (len(images.pixels),) or not np.issubdtype(labels.dtype, np.integer):
        raise DataError(f"{path}: 'c' must hold one integer class per image ({len(images.pixels)}), "
                        f"got {labels.dtype} of shape {labels.shape}")
    if c_dim > 256:
        raise GenflowError(f"model {model.name!r} has {c_dim} classes; the codec stores labels in one byte (256)")
    return Images(images.names, images.pixels, model.labels(labels, len(labels)))


@dataclass
class Result:
    n_bytes: int
    shape: tuple[int, ...]
    psnr: float | None

    def line(self) -> str:
        psnr = "" if self.psnr is None else f"; PSNR {self.psnr:.2f} dB (pixels on [0, 1])"
        return codec.size_line(self.n_bytes, self.shape) + psnr


def compress(model: ExportedModel, images: str | Path, out: str | Path, step: float | None = None) -> Result:
    """Write the compressed file; the PSNR is that of what decompress will give (decoded here).
    ``step``: the quantization step (None: codec.DEFAULT_STEP)."""
    model.require("encoder", "compress")
    step = codec.DEFAULT_STEP if step is None else step
    codec.check_step(step)
    found = load(images, model)
    data = codec.compress_array(model, found.x, found.labels, step)
    decoded, _ = codec.decompress_bytes(model, data, str(out))
    with atomic_path(out) as tmp:
        tmp.write_bytes(data)
    return Result(len(data), found.pixels.shape, codec.psnr_uint8(codec.to_uint8(decoded), found.pixels))


def decompress(model: ExportedModel, compressed: str | Path, out: str | Path,
               originals: str | Path | None = None) -> Result:
    model.require("encoder", "decompress")
    data = codec.read_file(compressed)
    decoded, labels = codec.decompress_bytes(model, data, str(compressed))
    pixels = codec.to_uint8(decoded)
    psnr = None
    if originals is not None:
        reference = load(originals, model).pixels
        if reference.shape != pixels.shape:
            raise DataError(f"{originals}: {len(reference)} images of {reference.shape[1:]}; {compressed} holds "
                            f"{len(pixels)} of {pixels.shape[1:]}")
        psnr = codec.psnr_uint8(pixels, reference)
    write_images(out, pixels, decoded, labels)
    return Result(len(data), pixels.shape, psnr)


def write_images(out: str | Path, pixels: np.ndarray, decoded: np.ndarray, labels: np.ndarray | None) -> None:
    out = Path(out)
    if out.suffix == ".npz":
        arrays = {"x": pixels, "decoded": decoded, **({} if labels is None else {"c": labels})}
        with atomic_path(out) as tmp, open(tmp, "wb") as handle:
            np.savez(handle, **arrays)
        return
    if out.suffix:
        raise GenflowError(f"--out {out}: give a .npz file or a folder (no suffix) for the PNG files")
    from PIL import Image

    with atomic_dir(out) as tmp:
        for i, image in enumerate(pixels.transpose(0, 2, 3, 1)):
            Image.fromarray(image[..., 0] if image.shape[-1] == 1 else image).save(tmp / f"{i:05d}.png")
