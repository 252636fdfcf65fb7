"""Data path throughput: IDX -> Parquet (prepare), Parquet -> tensors, batches per second.

An MNIST-sized IDX pair (60,000 training + 10,000 test 28x28 images, gzipped like the
official files) is synthesised from scikit-learn's digits upsampled to 28x28 with random
shifts and noise, so it compresses like MNIST rather than like random bytes. Then:

* prepare: ``genflow.data.prepare.prepare`` on the IDX files (read + gunzip + parse +
  split + Parquet/zstd + sha256 + manifest), wall time for the 60,000 training images
  alone and for the official train + test pair;
* load: ``load_split`` (Parquet read, sha256 check, uint8 (N, C, H, W) tensor);
* batches: ``BatchPlan.indices`` + ``Split.batch`` (gather + scale to [-1, 1]) at batch 128,
  the loop every worker runs, pinned to one core with one torch thread;
* the embedded generators (sprites, stacked_digits) for reference.

Writes bench/results/data_throughput.json.   .venv/bin/python bench/data_throughput.py
"""
from __future__ import annotations

import gzip
import json
import os
import platform
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from genflow.data.embedded import digits  # noqa: E402
from genflow.data.images import upsample  # noqa: E402
from genflow.data.loader import BatchPlan, load_split  # noqa: E402
from genflow.data.prepare import prepare  # noqa: E402
from genflow.data.specs import IdxData, SpritesData, StackedDigitsData  # noqa: E402
from genflow.io import code_revision  # noqa: E402


def mnist_like(n: int, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    base = digits()
    big = upsample(base.x, 20)[..., 0]
    picks = rng.integers(len(big), size=n)
    images = np.zeros((n, 28, 28), dtype=np.uint8)
    shifts = rng.integers(0, 9, size=(n, 2))
    for i, (dy, dx) in enumerate(shifts):
        images[i, dy:dy + 20, dx:dx + 20] = big[picks[i]]
    noisy = images.astype(np.int16) + rng.integers(-8, 9, size=images.shape) * (images > 0)
    return noisy.clip(0, 255).astype(np.uint8), base.labels[picks]


def write_idx_gz(path: Path, array: np.ndarray) -> None:
    header = bytes([0, 0, 0x08, array.ndim]) + np.asarray(array.shape, dtype=">u4").tobytes()
    path.write_bytes(gzip.compress(header + array.tobytes(), compresslevel=6))


def timed(fn, repeat: int = 3) -> float:
    best = float("inf")
    for _ in range(repeat):
        start = time.perf_counter()
        fn()
        best = min(best, time.perf_counter() - start)
    return best


def batches_per_second(split, batch_size: int = 128, steps: int = 2000) -> float:
    plan = BatchPlan(len(split), batch_size, seed=0)
    start = time.perf_counter()
    for step in range(steps):
        x, y = split.batch(plan.indices(step))
    return steps * batch_size / (time.perf_counter() - start)


def main() -> None:
    os.sched_setaffinity(0, {0})  # one core, as the acceptance asks
    torch.set_num_threads(1)
    quiet = lambda *a, **k: None  # noqa: E731
    rng = np.random.default_rng(0)
    results: dict = {"machine": f"{platform.machine()}, {os.cpu_count()} cores (pinned to 1)",
                     "date": time.strftime("%Y-%m-%d"), "code_revision": code_revision(ROOT)}
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        for name, n in (("train", 60_000), ("test", 10_000)):
            x, y = mnist_like(n, rng)
            write_idx_gz(tmp / f"{name}-images.gz", x)
            write_idx_gz(tmp / f"{name}-labels.gz", y.astype(np.uint8))
        results["idx_gz_mb"] = round(sum(p.stat().st_size for p in tmp.glob("*.gz")) / 1e6, 1)
        train_only = IdxData(source="idx", images=str(tmp / "train-images.gz"), labels=str(tmp / "train-labels.gz"))
        pair = IdxData(source="idx", images=str(tmp / "train-images.gz"), labels=str(tmp / "train-labels.gz"),
                       test_images=str(tmp / "test-images.gz"), test_labels=str(tmp / "test-labels.gz"))
        results["prepare_idx_60k_s"] = round(timed(lambda: prepare(train_only, tmp / "p60", log=quiet)), 3)
        results["prepare_idx_60k_plus_10k_test_s"] = round(timed(lambda: prepare(pair, tmp / "p70", log=quiet)), 3)
        results["load_split_60k_s"] = round(timed(lambda: load_split(tmp / "p70", "train")), 3)
        results["load_split_images_per_s"] = round(54_000 / results["load_split_60k_s"])
        split = load_split(tmp / "p70", "train")
        results["batches_images_per_s_28x28_b128"] = round(max(batches_per_second(split) for _ in range(3)))
        sprites = SpritesData(source="sprites", n_samples=20_000)
        results["prepare_sprites_20k_32px_s"] = round(timed(lambda: prepare(sprites, tmp / "sp", log=quiet), 1), 2)
        stacked = StackedDigitsData(source="stacked_digits", n_samples=25_000)
        results["prepare_stacked_digits_25k_16px_s"] = round(
            timed(lambda: prepare(stacked, tmp / "sd", log=quiet), 1), 2)
    out = ROOT / "bench" / "results" / "data_throughput.json"
    out.write_text(json.dumps(results, indent=2) + "\n")
    print(json.dumps(results, indent=2))


if __name__ == "__main__":
    main()
