"""Evaluation throughput: the evaluate stage's sample draw (generate + embed in the feature
space) in the stage's process vs sharded over 1 and 2 Ray tasks, and the whole seed scoring.

The repository's trained models/gan_digits/seed_0 (DCGAN-style conv generator, digits feature
network) if present, else a freshly initialised one of the same architecture (throughput does
not depend on the weights). 10,240 samples (10 chunks). One Ray instance started before timing
(its start-up is in bench/ray_overhead.py); best of 3. Also checks that every metric of the
three ways agrees within 1e-6. Writes bench/results/eval_sharding.json.
    .venv/bin/python bench/eval_sharding.py
"""
from __future__ import annotations

import json
import math
import os
import platform
import sys
import time
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")

from genflow import config, launch  # noqa: E402
from genflow.evaluate import protocol as evaluate  # noqa: E402
from genflow.io import code_revision  # noqa: E402
from genflow.models import registry  # noqa: E402

N = 10_240


def model_and_ref(params):
    spec = params.models["gan_digits"]
    data_dir, features_dir = ROOT / "data/prepared/digits", ROOT / "models/featurenet/digits"
    trained = ROOT / "models/gan_digits/seed_0"
    if trained.exists():
        from genflow.train.worker import load_trained
        model, _, _ = load_trained(trained)
    else:
        model = registry.build(spec, (1, 8, 8), 10).eval()
    return model, evaluate.Reference.load(data_dir, features_dir, params.evaluate), trained.exists()


def timed(fn, repeat: int = 3) -> tuple[float, object]:
    best, out = math.inf, None
    for _ in range(repeat):
        start = time.perf_counter()
        out = fn()
        best = min(best, time.perf_counter() - start)
    return best, out


def main() -> None:
    from genflow.integrations.ray_session import init_ray

    base = config.load(ROOT / "params.yaml")
    init_ray(base.ray)
    torch.set_num_threads(os.cpu_count() or 1)
    results, scores = {}, {}
    for workers in (0, 1, 2):
        raw = base.model_dump(mode="json")
        raw["evaluate"].update(n_samples=N, num_workers=workers, cpus_per_worker=1.0)
        params = config.validate(raw)
        model, ref, trained = model_and_ref(params)
        draw, _ = timed(lambda: evaluate.samples_and_features(model, ref, launch.sample_draw(params)))
        whole, (scores[workers], _) = timed(lambda: evaluate.seed_metrics(model, ref, launch.sample_draw(params)), repeat=1)
        label = "in-process" if workers == 0 else f"{workers} Ray task{'s' * (workers > 1)}"
        results[label] = {"sample_and_embed_s": round(draw, 3), "samples_per_s": round(N / draw),
                          "whole_seed_scoring_s": round(whole, 2)}
        print(f"[bench] {label}: {results[label]}")
    worst = max(abs(scores[w][k] - v) / max(abs(v), 1e-12) for w in (1, 2) for k, v in scores[0].items())
    out = {"n_samples": N, "model": "gan_digits (trained)" if trained else "gan_digits (initialised)",
           "threads_in_process": os.cpu_count(), "threads_per_task": 1, "results": results,
           "max_relative_metric_difference_vs_in_process": worst,
           "machine": f"{platform.machine()}, {os.cpu_count()} cores, torch {torch.__version__}",
           "code_revision": code_revision(), "date": time.strftime("%Y-%m-%d"),
           "command": ".venv/bin/python bench/eval_sharding.py"}
    path = ROOT / "bench/results/eval_sharding.json"
    path.write_text(json.dumps(out, indent=2) + "\n")
    print(json.dumps(out, indent=2))


if __name__ == "__main__":
    main()
