"""A lossy image codec made of an exported VAE: `genflow compress` / `genflow decompress`.

Compressing encodes each image to its posterior mean mu (the encoder), quantizes it uniformly,
q = round(mu / step), and entropy-codes the integers with the standard library's zlib or lzma
(whichever gives the smaller file). Decompressing decodes q * step with the generator; nothing
else is stored, so the decoded images are a function of the file's bits and the export alone.

Why zlib/lzma and not an arithmetic coder with the prior N(0, I): coding each quantized
coordinate with the prior's mass over its bin costs about -log2(step * N(mu; 0, 1)) bits
whatever the encoder does; the coordinates the VAE does not use (mu ~ 0 for every image, the
"posterior collapse" that makes its KL small) would still cost ~-log2(0.4 step) bits each.
An adaptive coder learns that they are always 0 and spends almost nothing on them. Reaching
the KL rate itself would need bits-back coding with the posterior's noise; a deterministic
code of mu cannot. The codes are laid out dimension by dimension (every image's first
coordinate, then every image's second...), so an unused coordinate is one long run of zeros.

The file (little-endian):

    magic "GFVC" | version u8 | coder u8 (0 zlib, 1 lzma) | width u8 (bytes per code) | flags u8
    (bit 0: labels stored) | n u32 | z_dim u16 | C, H, W u16 | step f32 | crc32 of the payload u32 |
    model hash 16 bytes | payload: coder(labels u8[n] if any, zigzag codes (z_dim, n))

The model hash is the first 16 bytes of sha256(encoder.onnx + generator.onnx): decompressing
with another export is refused (the same codes would decode to other images).
"""
from __future__ import annotations

import hashlib
import lzma
import struct
import zlib
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from genflow.errors import DataError, GenflowError
from genflow.export.exported import ExportedModel

MAGIC, VERSION = b"GFVC", 1
HEADER = struct.Struct("<4sBBBBIHHHHfI16s")
DEFAULT_STEP = 0.25  # of mu, in units of the prior's std; docs/results/compression.md measures it
CODERS = {0: "zlib", 1: "lzma"}
LABELS_FLAG = 1
# preset 9e with a 1 MiB window (the preset's 64 MiB costs 0.15 s per call to allocate; a file of
# 60,000 images of 16 one-byte codes fits in 1 MiB); decoding needs the same filters
_LZMA = [{"id": lzma.FILTER_LZMA2, "preset": 9 | lzma.PRESET_EXTREME, "dict_size": 1 << 20}]


@dataclass
class Header:
    coder: int
    width: int
    labelled: bool
    n: int
    z_dim: int
    shape: tuple[int, int, int]
    step: float
    crc: int
    model_hash: bytes

    def pack(self) -> bytes:
        return HEADER.pack(MAGIC, VERSION, self.coder, self.width, LABELS_FLAG if self.labelled else 0, self.n,
                           self.z_dim, *self.shape, self.step, self.crc, self.model_hash)


def model_hash(model: ExportedModel) -> bytes:
    """What decoding depends on: the encoder's and the generator's ONNX files, byte for byte."""
    model.require("encoder", "compress")
    digest = hashlib.sha256()
    for network in ("encoder", "generator"):
        digest.update((model.directory / model.card["networks"][network]["files"]["onnx"]).read_bytes())
    return digest.digest()[:16]


def check_step(step: float) -> np.float32:
    step32 = np.float32(step)
    if not (np.isfinite(step32) and step32 > 0):
        raise GenflowError(f"--step must be a positive number, got {step}")
    return step32


def quantize(mu: np.ndarray, step: float) -> np.ndarray:
    """Uniform quantization of the posterior means: int64 codes round(mu / step) (half to even)."""
    return np.rint(mu.astype(np.float32) / check_step(step)).astype(np.int64)


def dequantize(codes: np.ndarray, step: float) -> np.ndarray:
    """The latents the decoder receives: codes * step in float32."""
    return codes.astype(np.float32) * check_step(step)


def _zigzag(codes: np.ndarray) -> np.ndarray:
    return ((codes << 1) ^ (codes >> 63)).astype(np.uint64)


def _unzigzag(values: np.ndarray) -> np.ndarray:
    values = values.astype(np.int64)
    return (values >> 1) ^ -(values & 1)


def _width(unsigned: np.ndarray) -> int:
    top = int(unsigned.max()) if unsigned.size else 0
    for width in (1, 2, 4):
        if top < 256 ** width:
            return width
    raise GenflowError(f"the step is too small: a code reaches {top}; use a larger --step")


def _entropy_code(raw: bytes) -> tuple[int, bytes]:
    """The smaller of zlib (level 9) and lzma (raw LZMA2, preset 9e: no container overhead)."""
    candidates = {0: zlib.compress(raw, 9), 1: lzma.compress(raw, format=lzma.FORMAT_RAW, filters=_LZMA)}
    coder = min(candidates, key=lambda k: (len(candidates[k]), k))
    return coder, candidates[coder]



def encode_codes(codes: np.ndarray, labels: np.ndarray | None, step: float, shape, digest: bytes) -> bytes:
    """The file's bytes for int codes (N, z_dim) and optional labels (N,)."""
    unsigned = _zigzag(codes).T  # dimension-major: an unused coordinate is one run of zeros
    width = _width(unsigned)
    raw = unsigned.astype(f"<u{width}").tobytes()
    if labels is not None:
        raw = labels.astype(np.uint8).tobytes() + raw
    coder, payload = _entropy_code(raw)
    header = Header(coder, width, labels is not None, len(codes), codes.shape[1], tuple(int(s) for s in shape),
                    float(check_step(step)), zlib.crc32(payload), digest)
    return header.pack() + payload


def read_header(data: bytes, where: str) -> tuple[Header, bytes]:
    if len(data) < HEADER.size or data[:4] != MAGIC:
        raise DataError(f"{where}: not a genflow compressed file (no {MAGIC.decode()} header)")
    magic, version, coder, width, flags, n, z_dim, c, h, w, step, crc, digest = HEADER.unpack_from(data)
    if version != VERSION:
        raise DataError(f"{where}: format version {version}; this genflow reads version {VERSION}")
    payload = data[HEADER.size:]
    if coder not in CODERS or width not in (1, 2, 4) or zlib.crc32(payload) != crc:
        raise DataError(f"{where}: corrupt file (its checksum or header does not match its contents)")
    return Header(coder, width, bool(flags & LABELS_FLAG), n, z_dim, (c, h, w), step, crc, digest), payload


def decode_codes(data: bytes, where: str) -> tuple[Header, np.ndarray, np.ndarray | None]:
    """(header, int codes (N, z_dim), labels or None) of a compressed file's bytes."""
    header, payload = read_header(data, where)
    try:
        raw = zlib.decompress(payload) if header.coder == 0 else lzma.decompress(payload, lzma.FORMAT_RAW,
                                                                                  filters=_LZMA)
    except (zlib.error, lzma.LZMAError) as exc:
        raise DataError(f"{where}: corrupt file ({exc})") from None
    n_labels = header.n if header.labelled else 0
    if len(raw) != n_labels + header.n * header.z_dim * header.width:
        raise DataError(f"{where}: corrupt file (its payload does not hold {header.n} codes of {header.z_dim})")
    labels = np.frombuffer(raw[:n_labels], dtype=np.uint8).astype(np.int64) if header.labelled else None
    unsigned = np.frombuffer(raw[n_labels:], dtype=f"<u{header.width}").reshape(header.z_dim, header.n)
    return header, _unzigzag(unsigned.T.copy()), labels


def compress_array(model: ExportedModel, x: np.ndarray, c: np.ndarray | None, step: float) -> bytes:
    """Images (N, C, H, W) in [-1, 1] (+ labels for a conditional model) -> the file's bytes."""
    digest = model_hash(model)
    model.check_images(x)
    mu, _ = model.encode(x, c)
    labels = np.asarray(c) if model.io["c_dim"] else None
    return encode_codes(quantize(mu, step), labels, step, x.shape[1:], digest)


def decompress_bytes(model: ExportedModel, data: bytes, where: str) -> tuple[np.ndarray, np.ndarray | None]:
    """A file's bytes -> (decoded images (N, C, H, W) in [-1, 1], float32; labels or None)."""
    header, codes, labels = decode_codes(data, where)
    if header.model_hash != model_hash(model):
        raise GenflowError(f"{where} was compressed with another model (model hash {header.model_hash.hex()}), not "
                           f"with {model.directory} ({model_hash(model).hex()}); decompress it with that export")
    if header.shape != tuple(model.io["data_shape"]) or header.z_dim != model.io["z_dim"]:
        raise DataError(f"{where}: holds {header.shape} images with {header.z_dim} latents; model "
                        f"{model.name!r} makes {tuple(model.io['data_shape'])} with {model.io['z_dim']}")
    return model.generate(dequantize(codes, header.step), labels), labels


def to_uint8(x: np.ndarray) -> np.ndarray:
    """[-1, 1] -> 0..255 as the model card says: round((x + 1) * 127.5)."""
    return np.clip(np.rint((x + 1.0) * 127.5), 0, 255).astype(np.uint8)


def psnr_uint8(a: np.ndarray, b: np.ndarray) -> float:
    """PSNR (dB) of two uint8 image sets on [0, 1] pixels, from the MSE over the whole set."""
    from genflow.metrics.compression import psnr_from_mse

    return psnr_from_mse(float(np.square((a.astype(np.float64) - b.astype(np.float64)) / 255.0).mean()))


def size_line(n_bytes: int, shape: tuple[int, ...]) -> str:
    """The real file size: bytes, bits per image, bits per pixel."""
    n, _, h, w = shape
    bits = 8 * n_bytes
    return f"{n_bytes} bytes for {n} images: {bits / n:.1f} bits per image, {bits / (n * h * w):.3f} bits per pixel"


def read_file(path: str | Path) -> bytes:
    path = Path(path)
    if not path.is_file():
        raise DataError(f"{path}: no such file")
    return path.read_bytes()
