"""`genflow fid`: score images genflow did not necessarily make under genflow's protocol.

The images (a folder of PNG / JPEG files, an ``.npz``, or an export folder, which is sampled)
are compared with a prepared dataset's split exactly as `evaluate` compares a model's samples:
the same :class:`~genflow.evaluate.protocol.Reference` (reference rows, feature space, floors)
and the same ``Reference.sample_metrics``, so scoring the rows the floor uses gives the floor.

What an ``.npz`` may hold (the array named ``images``, else ``arr_0``, else its only array):

* uint8 (N, H, W, C), 0..255: images as files hold them;
* float (N, C, H, W) in [-1, 1]: genflow's sample convention (a generator's output).
"""
from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import torch

from genflow.data.shards import read_manifest
from genflow.errors import DataError
from genflow.evaluate.protocol import Reference, sample_protocol
from genflow.io import write_json
from genflow.metrics import catalog

NPZ_KEYS = ("images", "arr_0")
SHOWN = ("fid", "kid", "precision", "recall", "density", "coverage", "modes", "reverse_kl")  # (stacked digits: modes)


def load_images(path: Path, shape: tuple[int, int, int], n_samples: int, seed: int,
                sample_export=None) -> tuple[torch.Tensor, dict]:
    """float32 (N, C, H, W) images in [-1, 1] from ``path``, and what they were (the protocol's
    ``source``); ``shape`` is the dataset's (C, H, W). An export folder is sampled by
    ``sample_export(path, shape, n_samples, seed) -> (images, source)`` (genflow.export.apps.fid_samples:
    the export layer sits above this one, so the command passes it in)."""
    if not path.exists():
        raise DataError(f"{path}: no such file or folder")
    if path.is_dir() and (path / "model_card.json").exists():
        if sample_export is None:
            raise DataError(f"{path}: an export folder; sampling it needs genflow.export (the `genflow fid` command)")
        images, source = sample_export(path, shape, n_samples, seed)
        return torch.from_numpy(images), source
    if path.suffix == ".npz":
        return _read_npz(path, shape)
    return _read_image_files(path, shape)


def _as_model_input(pixels: np.ndarray) -> torch.Tensor:
    """uint8 (N, H, W, C) -> float32 (N, C, H, W) in [-1, 1], as the data loader converts rows."""
    return torch.from_numpy(np.ascontiguousarray(pixels.transpose(0, 3, 1, 2))).float().div_(127.5).sub_(1.0)


def _read_image_files(path: Path, shape: tuple[int, int, int]) -> tuple[torch.Tensor, dict]:
    from genflow.data.imagefolder import decode, list_images

    files = [path] if path.is_file() else list_images(path, "none")[0]
    c, h, w = shape
    pixels = []
    for file in files:
        channels = _file_channels(file)
        if channels != c:
            raise DataError(f"{file}: {channels}-channel image; the dataset's images have {c} "
                            f"({'grayscale' if c == 1 else 'RGB'})")
        image = decode(file, grayscale=c == 1, size=None, crop="none")
        if image.shape[:2] != (h, w):
            raise DataError(f"{file}: image is {image.shape[1]}x{image.shape[0]}, the dataset's are {w}x{h} "
                            "(resize them first)")
        pixels.append(image)
    return _as_model_input(np.stack(pixels)), {"kind": "image files", "path": str(path), "n_files": len(files)}


def _file_channels(file: Path) -> int:
    """Colour channels of an image file, alpha not counted (a palette image is RGB)."""
    from PIL import Image, UnidentifiedImageError

    try:
        with Image.open(file) as image:
            bands = image.getbands()
    except (UnidentifiedImageError, OSError) as exc:
        raise DataError(f"{file}: unreadable image ({type(exc).__name__}: {exc})") from None
    return 3 if bands == ("P",) else len([band for band in bands if band != "A"])


def _read_npz(path: Path, shape: tuple[int, int, int]) -> tuple[torch.Tensor, dict]:
    try:
        with np.load(path, allow_pickle=False) as archive:
            arrays = {name: archive[name] for name in archive.files}
    except (OSError, ValueError) as exc:
        raise DataError(f"{path}: not a readable .npz ({exc})") from None
    key = next((k for k in NPZ_KEYS if k in arrays), next(iter(arrays)) if len(arrays) == 1 else None)
    if key is None or arrays[key].ndim != 4:
        found = ", ".join(f"{k} {v.dtype} {v.shape}" for k, v in arrays.items()) or "nothing"
        raise DataError(f"{path}: no image array (an array named {' or '.join(NPZ_KEYS)}, or the only array, "
                        f"uint8 (N, H, W, C) or float (N, C, H, W)); it holds {found}")
    return _npz_images(path, key, arrays[key], shape), {"kind": "npz", "path": str(path), "array": key}


def _npz_images(path: Path, key: str, array: np.ndarray, shape: tuple[int, int, int]) -> torch.Tensor:
    c, h, w = shape
    if array.dtype == np.uint8:
        if array.shape[1:] != (h, w, c):
            raise DataError(f"{path}: array {key!r} is uint8 {array.shape}; uint8 images are (N, H, W, C) and the "
                            f"dataset's are (N, {h}, {w}, {c})")
        return _as_model_input(array)
    if not np.issubdtype(array.dtype, np.floating):
        raise DataError(f"{path}: array {key!r} is {array.dtype}; images are uint8 (N, H, W, C) 0..255 or float "
                        f"(N, C, H, W) in [-1, 1]")
    if array.shape[1:] != (c, h, w):
        raise DataError(f"{path}: array {key!r} is float {array.shape}; float images are (N, C, H, W) and the "
                        f"dataset's are (N, {c}, {h}, {w})")
    if not np.isfinite(array).all() or array.min() < -1.0 - 1e-6 or array.max() > 1.0 + 1e-6:
        raise DataError(f"{path}: array {key!r} has values outside [-1, 1] (min {np.nanmin(array):.4g}, max "
                        f"{np.nanmax(array):.4g}); float images are in [-1, 1] (uint8 / 127.5 - 1)")
    return torch.from_numpy(array.astype(np.float32))


def score_images(images: str | Path, data_dir: str | Path, featurenet_dir: str | Path, spec, split: str,
                 out_json: str | Path | None = None, log=print, sample_export=None) -> dict[str, Any]:
    """Every sample metric of ``images`` against ``split`` of the prepared dataset, with its floor
    and the protocol; ``spec``: params' evaluate section (counts, seed, Inception);
    ``sample_export``: how an export folder is sampled (load_images)."""
    data_dir = Path(data_dir)
    manifest = read_manifest(data_dir)
    if manifest["kind"] != "image":
        raise DataError(f"{data_dir}: dataset {data_dir.name!r} holds 2-D points; genflow fid scores images")
    if not manifest["splits"].get(split, {}).get("rows"):
        raise DataError(f"{data_dir}: dataset {data_dir.name!r} has no {split!r} rows to compare with")
    h, w, c = manifest["shape"]
    spec = spec.model_copy(update={"reference_split": split})
    x, source = load_images(Path(images), (c, h, w), spec.n_samples, spec.seed, sample_export)
    smallest = max(spec.k_precision_recall, spec.k_density_coverage) + 1
    if len(x) < smallest:
        raise DataError(f"{images}: {len(x)} images; the k-nearest-neighbour metrics need at least {smallest}")
    ref = Reference.load(data_dir, Path(featurenet_dir), spec)
    metrics = ref.sample_metrics(x, ref.features(x))
    result = {**{k: _clean(v) for k, v in metrics.items()},
              **{k: _clean(v) for k, v in ref.floors(conditional=False).items()},
              "protocol": {**sample_protocol(ref, len(x)), "source": source}}
    if out_json is not None:
        write_json(out_json, result)
    log(f"[fid] {images}: {len(x)} images against {len(ref.real)} {split} rows of {data_dir.name} "
        f"({ref.features.kind} features)\n{table(result)}")
    return result


def _clean(value) -> float | None:
    return None if value is None or not np.isfinite(value) else float(value)


def _number(value: float | None) -> str:
    return "" if value is None else f"{value:.6g}"


def table(result: dict[str, Any]) -> str:
    """metric, value, real-vs-real floor: the sample metrics in the catalog's order."""
    rows = [("metric", "value", "floor")]
    for name in [m.name for m in catalog.METRICS if m.name in SHOWN and m.name in result]:
        rows.append((catalog.BY_NAME[name].label, _number(result[name]), _number(result.get(f"{name}_floor"))))
    widths = [max(len(row[i]) for row in rows) for i in range(3)]
    return "\n".join("  " + "  ".join(cell.ljust(width) for cell, width in zip(row, widths)).rstrip() for row in rows)
