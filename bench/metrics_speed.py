"""Evaluation cost: FID + KID + PRDC for 10,000 real vs 10,000 generated feature vectors.

Feature dimension 64 (genflow's feature networks) and 2048 (Inception-v3's pool3, for
scale). KID uses 100 subsets of 1000 (the clean-fid protocol); PRDC computes k = 3
(precision / recall) and k = 5 (density / coverage) from shared distances, as the
evaluate stage does. Both torch threads of the 2-core machine, best of 3.
Writes bench/results/metrics_speed.json.   .venv/bin/python bench/metrics_speed.py
"""
from __future__ import annotations

import json
import os
import platform
import sys
import time
from pathlib import Path

import numpy as np
import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from genflow.io import code_revision  # noqa: E402
from genflow.metrics import frechet_distance, kid  # noqa: E402
from genflow.metrics.manifolds import prdc_many  # noqa: E402


def best_of(fn, repeat: int = 3) -> float:
    times = []
    for _ in range(repeat):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return round(min(times), 3)


def main() -> None:
    torch.set_num_threads(os.cpu_count() or 1)
    rng = np.random.default_rng(0)
    results: dict = {"machine": f"{platform.machine()}, {os.cpu_count()} cores", "date": time.strftime("%Y-%m-%d"),
                     "code_revision": code_revision(ROOT), "n_real": 10_000, "n_fake": 10_000}
    for dim in (64, 2048):
        real = rng.normal(size=(10_000, dim)).astype(np.float32)
        fake = rng.normal(0.1, size=(10_000, dim)).astype(np.float32)
        row = {"fid_s": best_of(lambda: frechet_distance(real, fake)),
               "kid_s": best_of(lambda: kid(real, fake)),
               "prdc_k3_k5_s": best_of(lambda: prdc_many(real, fake, (3, 5)))}
        row["total_s"] = round(sum(row.values()), 2)
        results[f"dim_{dim}"] = row
        print(dim, row, flush=True)
    out = ROOT / "bench" / "results" / "metrics_speed.json"
    out.write_text(json.dumps(results, indent=2) + "\n")
    print(json.dumps(results, indent=2))


if __name__ == "__main__":
    main()
