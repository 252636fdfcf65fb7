"""What people do with an exported generative model (the seeds' applications):
generate, interpolate in latent space, reconstruct, score anomalies, complete images;
and what people do with a translation model (CycleGAN): translate images between its domains.

Everything runs on an :class:`~genflow.export.exported.ExportedModel` (ONNX Runtime and the
model card), never on training code. Images come from a folder of PNG / JPEG files
or a Parquet file in genflow's schema and must have the model's shape.
"""
from __future__ import annotations

import csv
from pathlib import Path

import numpy as np

from genflow.errors import DataError, GenflowError
from genflow.evaluate.model_metrics import slerp_paths
from genflow.evaluate.pictures import save_image_grid, save_points
from genflow.export.exported import ExportedModel
from genflow.io import atomic_path

MASKS = ("left", "right", "top", "bottom", "center")


def load_images(path: str | Path, model: ExportedModel,
                shapes: list[tuple[int, int, int]] | None = None) -> tuple[list[str], np.ndarray]:
    """Names and float32 (N, C, H, W) images in [-1, 1] from an image folder / file or Parquet.

    ``shapes``: the (C, H, W) shapes accepted (default: the model's data_shape; an upscaler also
    takes its low-resolution input shape); all images must share one of them."""
    path = Path(path)
    if not path.exists():
        raise DataError(f"{path}: no such file or folder")
    if not model.is_image:
        return _load_points(path, model)
    shapes = [tuple(shape) for shape in shapes or [model.io["data_shape"]]]
    c, sizes = shapes[0][0], [shape[1:] for shape in shapes]
    if path.suffix == ".parquet" or (path.is_dir() and any(path.glob("*.parquet"))):
        from genflow.data.parquet_source import parquet_source
        from genflow.data.specs import ParquetData

        raw = parquet_source(ParquetData(source="parquet", path=str(path)))
        if raw.kind != "image":
            raise DataError(f"{path}: holds 2-D points; model {model.name!r} takes images")
        names, pixels = [f"{path.name}#{i}" for i in range(len(raw.x))], raw.x
    else:
        from genflow.data.imagefolder import decode, list_images

        files = [path] if path.is_file() else list_images(path, "none")[0]
        names = [str(f) for f in files]
        decoded = [_decoded(f, decode, c, sizes) for f in files]
        if len({image.shape for image in decoded}) > 1:
            raise DataError(f"{path}: images of different sizes ({', '.join(sorted({_wxh(i) for i in decoded}))}); "
                            "give one size at a time")
        pixels = np.stack(decoded)
    accepted = [(h, w, channels) for channels, h, w in shapes]
    if pixels.shape[1:] not in accepted:
        raise DataError(f"{path}: images are {pixels.shape[1:]} (H, W, C); model {model.name!r} takes "
                        f"{' or '.join(map(str, accepted))}")
    return names, pixels.transpose(0, 3, 1, 2).astype(np.float32) / 127.5 - 1.0


def _load_points(path: Path, model: ExportedModel) -> tuple[list[str], np.ndarray]:
    from genflow.data.parquet_source import parquet_source
    from genflow.data.specs import ParquetData

    raw = parquet_source(ParquetData(source="parquet", path=str(path)))
    if raw.kind != "points" or raw.x.shape[1:] != tuple(model.io["data_shape"]):
        raise DataError(f"{path}: model {model.name!r} takes points of shape {tuple(model.io['data_shape'])} "
                        f"(an 'x' column); this file holds {raw.kind} of shape {raw.x.shape[1:]}")
    return [f"{path.name}#{i}" for i in range(len(raw.x))], raw.x.astype(np.float32)


def _wxh(pixels: np.ndarray) -> str:
    return f"{pixels.shape[1]}x{pixels.shape[0]}"


def _decoded(file: Path, decode, channels: int, sizes: list[tuple[int, int]]) -> np.ndarray:
    pixels = decode(file, grayscale=channels == 1, size=None, crop="none")
    if pixels.shape[:2] not in sizes:
        raise DataError(f"{file}: image is {_wxh(pixels)}, the model takes "
                        f"{' or '.join(f'{w}x{h}' for h, w in sizes)} (resize it first)")
    return pixels


def _save(images: np.ndarray, out: str | Path, cols: int | None = None) -> None:
    with atomic_path(out) as tmp:
        save_image_grid(images, tmp, cols=cols)


def sample(model: ExportedModel, n: int, seed: int, out: str | Path, label: int | None = None) -> np.ndarray:
    model.require("generator", "sample")  # before reading the latent size a translator's card lacks
    z = np.random.default_rng(seed).standard_normal((n, model.io["z_dim"]))
    x = model.generate(z, None if label is None else np.full(n, label))
    if model.is_image:
        _save(x, out)
    else:
        with atomic_path(out) as tmp:
            save_points(x, None, tmp, title=f"{model.name}: {n} samples")
    return x


def interpolate(model: ExportedModel, pairs: int, steps: int, seed: int, out: str | Path,
                label: int | None = None) -> np.ndarray:
    """One row per pair of random latents: ``steps`` images along the slerp path between them."""
    model.require("generator", "interpolate")
    if not model.is_image:
        raise GenflowError(f"interpolate: model {model.name!r} generates 2-D points, not images")
    z = slerp_paths(model.io["z_dim"], pairs, steps, seed).numpy()
    x = model.generate(z, None if label is None else np.full(len(z), label))
    _save(x, out, cols=steps)
    return x


def reconstruct(model: ExportedModel, images: str | Path, out: str | Path, limit: int = 64) -> float:
    """Originals above their reconstructions (posterior mean); returns the mean squared error."""
    model.require("encoder", "reconstruct")
    _, x = load_images(images, model)
    x = x[:limit]
    mu, _ = model.encode(x)
    recon = model.generate(mu)
    _save(np.concatenate([x, recon]), out, cols=len(x))
    return float(np.square(recon - x).mean())


def score(model: ExportedModel, images: str | Path, out: str | Path, seed: int = 0) -> np.ndarray:
    """Anomaly score per image (higher = less like the training data) -> CSV of name, score."""
    model.require("scorer", "score")
    names, x = load_images(images, model)
    scores = np.concatenate([model.score(x[i:i + 256], seed + i) for i in range(0, len(x), 256)])
    with atomic_path(out) as tmp, open(tmp, "w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(["image", "anomaly_score"])
        writer.writerows((name, f"{value:.6g}") for name, value in zip(names, scores))
    return scores


def region(mask: str, h: int, w: int) -> np.ndarray:
    """1 where pixels are known, 0 in the region to complete."""
    known = np.ones((h, w), dtype=np.float32)
    spans = {"left": (slice(None), slice(0, w // 2)), "right": (slice(None), slice(w // 2, None)),
             "top": (slice(0, h // 2), slice(None)), "bottom": (slice(h // 2, None), slice(None)),
             "center": (slice(h // 4, h - h // 4), slice(w // 4, w - w // 4))}
    if mask not in spans:
        raise GenflowError(f"unknown mask {mask!r}; allowed: {', '.join(MASKS)}")
    known[spans[mask]] = 0.0
    return known


def complete(model: ExportedModel, x: np.ndarray, known: np.ndarray, iterations: int) -> np.ndarray:
    """Fill the pixels where ``known`` is 0: encode, decode, keep the known pixels, repeat."""
    current = x * known  # unknown pixels start at 0, mid-grey
    for _ in range(iterations):
        mu, _ = model.encode(current)
        current = known * x + (1 - known) * model.generate(mu)
    return current


def inpaint(model: ExportedModel, images: str | Path, mask: str, out: str | Path, iterations: int = 20,
            limit: int = 16) -> float:
    """Complete a masked region with a VAE: encode, decode, paste the known pixels back, repeat.
    Rows: masked input, completion, original. Returns the MSE inside the region."""
    model.require("encoder", "inpaint")
    _, x = load_images(images, model)
    x = x[:limit]
    known = region(mask, *x.shape[2:])[None, None]
    current = complete(model, x, known, iterations)
    _save(np.concatenate([x * known - (1 - known), current, x]), out, cols=len(x))
    return float(np.square(current - x).sum() / max(1.0, (1 - known).sum() * len(x) * x.shape[1]))


def translate(model: ExportedModel, images: str | Path, out: str | Path, direction: str = "ab",
              limit: int = 16) -> float:
    """Translate images A -> B (``ab``) or B -> A (``ba``). Rows: input, translation, and the
    translation translated back (cycle). Returns the cycle's mean squared error per pixel."""
    back = {"ab": "ba", "ba": "ab"}.get(direction)
    if back is None:
        raise GenflowError(f"unknown direction {direction!r}; allowed: ab, ba")
    model.require(f"translate_{direction}", "translate")
    _, x = load_images(images, model)
    x = x[:limit]
    y = model.translate(x, direction)
    cycled = model.translate(y, back)
    _save(np.concatenate([x, y, cycled]), out, cols=len(x))
    return float(np.square(cycled - x).mean())


def fid_samples(directory: str | Path, shape: tuple[int, int, int], n: int, seed: int) -> tuple[np.ndarray, dict]:
    """``n`` float32 (N, C, H, W) samples of an exported generator for `genflow fid`: Gaussian
    latents from ``seed`` (`genflow sample`'s draw), balanced labels i mod c_dim for a conditional
    model; and the protocol's note of where they came from."""
    model = ExportedModel(directory)
    model.require("generator", "fid")
    if tuple(model.io["data_shape"]) != tuple(shape):
        raise DataError(f"{directory}: model {model.name!r} makes {tuple(model.io['data_shape'])} images, the "
                        f"dataset's are {tuple(shape)}")
    z = np.random.default_rng(seed).standard_normal((n, model.io["z_dim"]))
    labels = np.arange(n) % model.io["c_dim"] if model.io["c_dim"] else None
    x = np.concatenate([model.generate(z[i:i + 1024], None if labels is None else labels[i:i + 1024])
                        for i in range(0, n, 1024)])
    return x.astype(np.float32), {"kind": "export", "path": str(directory), "model": model.name, "n_samples": n,
                                  "seed": seed}
