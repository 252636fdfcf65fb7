"""What the compression benches measure (shared by compression_roster.py and compression_rd.py):
a trained VAE seed's rate / distortion / bits per dimension (the evaluate stage's functions), the
real size and PSNR of `genflow compress` on its export, and PNG / JPEG (Pillow) on the same images.

The images are the evaluate stage's reference rows (test split, evaluate.n_real, evaluate.seed),
as uint8 pixels. PSNR everywhere: 10 log10(1 / MSE) of the whole set's MSE on [0, 1] pixels, of
the uint8 images a user gets back (the evaluate metric `recon_psnr` uses the decoder's float output).

Two ways to count the baselines' and the codec's size, because headers dominate at 8x8:
* ``set``: the whole set in one file (the codec: one .gfc file; PNG / JPEG: one mosaic of all
  images, each image on its own 8x8 tile, which is exactly one JPEG DCT block);
* ``single``: one file per image, the mean size.
"""
from __future__ import annotations

import io
import math
import os
import tempfile
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from genflow.data.loader import load_split
from genflow.evaluate.model_metrics import likelihood_metrics
from genflow.evaluate.protocol import sample_rows
from genflow.export import codec
from genflow.export.exported import ExportedModel
from genflow.export.write import export_model
from genflow.metrics.compression import compression_metrics
from genflow.report.stats import summarize
from genflow.train.worker import load_trained

JPEG_QUALITIES = tuple(range(1, 101))


def reference(data_dir: Path, evaluate_spec) -> tuple[torch.Tensor, torch.Tensor | None]:
    """The evaluate stage's reference rows: x in [-1, 1] and labels."""
    return sample_rows(load_split(data_dir, evaluate_spec.reference_split), evaluate_spec.n_real, evaluate_spec.seed)


def model_metrics(seed_dir: Path, x: torch.Tensor, c: torch.Tensor | None, evaluate_spec) -> dict[str, float]:
    """rate_bits, distortion_mse, recon_psnr, bpd_iwae (+ nll_iwae) as evaluate computes them."""
    model, _, _ = load_trained(seed_dir)
    base = likelihood_metrics(model, x, c, evaluate_spec.seed, evaluate_spec.iwae_samples)
    return {**compression_metrics(model, x, c, base["nll_iwae"]), "nll_iwae": base["nll_iwae"]}


def export_seed(seed_dir: Path, out: Path) -> Path:
    """Export one seed (export_model exports a model folder's first seed: give it this one alone)."""
    with tempfile.TemporaryDirectory() as tmp:
        os.symlink(Path(seed_dir).resolve(), Path(tmp) / Path(seed_dir).name)
        export_model(tmp, out, log=lambda *a: None)
    return out


def codec_figures(export_dir: Path, pixels: np.ndarray, labels: np.ndarray | None, step: float) -> dict[str, float]:
    """The real codec on the set (one file, decoded back for its PSNR) and on each image alone
    (its file from the same codes: the encoder reads each image on its own)."""
    model = ExportedModel(export_dir)
    x = pixels.astype(np.float32) / 127.5 - 1.0
    data = codec.compress_array(model, x, labels, step)
    decoded, _ = codec.decompress_bytes(model, data, "bench")
    codes, digest = codec.decode_codes(data, "bench")[1], codec.model_hash(model)
    singles = [len(codec.encode_codes(codes[i:i + 1], None if labels is None else labels[i:i + 1], step,
                                      pixels.shape[1:], digest)) for i in range(len(x))]
    n, pixels_per_image = len(x), pixels.shape[2] * pixels.shape[3]
    return {"step": step, "prior_coded_bits_per_image": prior_code_bits(codes, step), "set_bytes": len(data), "set_bits_per_image": 8 * len(data) / n,
            "set_bits_per_pixel": 8 * len(data) / (n * pixels_per_image),
            "single_bits_per_image": 8 * float(np.mean(singles)), "header_bytes": codec.HEADER.size,
            "psnr": codec.psnr_uint8(codec.to_uint8(decoded), pixels)}


def prior_code_bits(codes: np.ndarray, step: float) -> float:
    """What an ideal arithmetic coder with the prior N(0, I) would spend per image on the same
    codes: -log2 of the prior's mass over each coordinate's bin [(q - 1/2) step, (q + 1/2) step]
    (the alternative genflow.export.codec's docstring argues against; no header counted)."""
    from scipy.stats import norm

    upper, lower = (np.abs(codes) + 0.5) * step, (np.abs(codes) - 0.5) * step  # the symmetric tail: precise
    mass = norm.sf(lower) - norm.sf(upper)
    return float(-np.log2(np.maximum(mass, 1e-300)).sum(1).mean())


def mosaic(pixels: np.ndarray) -> tuple[np.ndarray, int]:
    """All images (N, 1, H, W) on one grid, row-major, black tiles after the last; and its columns."""
    n, _, h, w = pixels.shape
    cols = math.ceil(math.sqrt(n))
    rows = math.ceil(n / cols)
    canvas = np.zeros((rows * h, cols * w), np.uint8)
    for i, image in enumerate(pixels[:, 0]):
        canvas[(i // cols) * h:(i // cols + 1) * h, (i % cols) * w:(i % cols + 1) * w] = image
    return canvas, cols


def unmosaic(canvas: np.ndarray, n: int, cols: int, h: int, w: int) -> np.ndarray:
    return np.stack([canvas[(i // cols) * h:(i // cols + 1) * h, (i % cols) * w:(i % cols + 1) * w]
                     for i in range(n)])[:, None]


def _encoded(image: np.ndarray, **options) -> bytes:
    buffer = io.BytesIO()
    Image.fromarray(image).save(buffer, **options)
    return buffer.getvalue()


def _decoded(data: bytes) -> np.ndarray:
    return np.asarray(Image.open(io.BytesIO(data)).convert("L"))


PNG = {"format": "PNG", "optimize": True}


def png_figures(pixels: np.ndarray) -> dict[str, float]:
    """Lossless PNG (Pillow, optimize=True, grayscale): the set as one mosaic, and one file per image."""
    canvas, _ = mosaic(pixels)
    n = len(pixels)
    singles = [len(_encoded(image[0], **PNG)) for image in pixels]
    return {"set_bits_per_image": 8 * len(_encoded(canvas, **PNG)) / n,
            "single_bits_per_image": 8 * float(np.mean(singles)), "psnr": None, "lossless": True}


def jpeg_curve(pixels: np.ndarray) -> list[dict[str, float]]:
    """Baseline JPEG (Pillow, grayscale) at every quality: bits per image and PSNR, set and single."""
    canvas, cols = mosaic(pixels)
    n, _, h, w = pixels.shape
    curve = []
    for quality in JPEG_QUALITIES:
        options = {"format": "JPEG", "quality": quality, "optimize": True}
        data = _encoded(canvas, **options)
        back = unmosaic(_decoded(data), n, cols, h, w)
        singles = [_encoded(image[0], **options) for image in pixels]
        single_back = np.stack([_decoded(s) for s in singles])[:, None]
        curve.append({"quality": quality, "set_bits_per_image": 8 * len(data) / n,
                      "set_psnr": codec.psnr_uint8(back, pixels),
                      "single_bits_per_image": 8 * float(np.mean([len(s) for s in singles])),
                      "single_psnr": codec.psnr_uint8(single_back, pixels)})
    return curve


def jpeg_at_psnr(curve: list[dict[str, float]], target: float, kind: str = "set") -> dict[str, float] | None:
    """The lowest JPEG quality whose PSNR reaches ``target`` (None if quality 100 does not)."""
    for point in curve:
        if point[f"{kind}_psnr"] >= target:
            return {"quality": point["quality"], "bits_per_image": point[f"{kind}_bits_per_image"],
                    "psnr": point[f"{kind}_psnr"]}
    return None


def mean_image_psnr(data_dir: Path, pixels: np.ndarray) -> float:
    """PSNR of sending nothing: every image replaced by the training split's mean image (0 bits)."""
    train = load_split(data_dir, "train").x.numpy().astype(np.float64)
    mean = np.rint(train.mean(axis=0, keepdims=True)).astype(np.uint8)
    return codec.psnr_uint8(np.broadcast_to(mean, pixels.shape), pixels)


def summary(values: list[float]) -> dict[str, float | None]:
    """mean ± 95 % CI half-width (Student t over seeds) and the values."""
    s = summarize(values)
    return {"mean": s.mean, "ci95": s.ci, "n": s.n, "values": list(s.values)}


def summaries(per_seed: dict[str, dict[str, float]]) -> dict[str, dict]:
    keys = next(iter(per_seed.values())).keys()
    return {key: summary([m[key] for m in per_seed.values()]) for key in keys}


def pm(s: dict, digits: int = 2) -> str:
    ci = "" if s["ci95"] is None else f" ± {s['ci95']:.{digits}f}"
    return f"{s['mean']:.{digits}f}{ci}"
