"""Ray tasks for evaluation: the sample draw generated and embedded in shards.

The draw is cut into fixed chunks (``model_metrics.SAMPLE_CHUNK``), each with its own
seeded stream, and every task takes a contiguous block of chunks. The driver gathers
samples and float64 features in chunk order, so the set it scores is the same for any
number of workers, and every metric is then computed once, on the driver, from exactly the
arrays an in-process evaluation would score: Fréchet statistics in float64 and the k-NN
metrics (PRDC), which need every feature anyway.
"""
from __future__ import annotations

from typing import Any

import ray
import torch

from genflow.evaluate.model_metrics import generate_chunks, num_chunks
from genflow.integrations.ray_session import init_ray


def blocks(n_chunks: int, workers: int) -> list[range]:
    """``n_chunks`` cut into at most ``workers`` contiguous, near-equal blocks."""
    workers = max(1, min(workers, n_chunks))
    bounds = [round(i * n_chunks / workers) for i in range(workers + 1)]
    return [range(a, b) for a, b in zip(bounds, bounds[1:]) if b > a]


@ray.remote
def _sample_and_embed(model, features, n: int, seed: int, chunks: list[int], threads: int):
    torch.set_num_threads(threads)
    fake = generate_chunks(model, n, seed, chunks)
    return fake, features(fake)


def sharded_samples(model, features, n: int, seed: int, spec, ray_spec) -> tuple[torch.Tensor, torch.Tensor]:
    """Samples and their features, computed by ``spec.num_workers`` Ray tasks."""
    init_ray(ray_spec)
    model_ref, features_ref = ray.put(model), ray.put(features)  # shipped once, shared by the tasks
    threads = max(1, int(spec.cpus_per_worker))
    task = _sample_and_embed.options(num_cpus=spec.cpus_per_worker)
    refs = [task.remote(model_ref, features_ref, n, seed, list(block), threads)
            for block in blocks(num_chunks(n), spec.num_workers)]
    parts: list[Any] = ray.get(refs)
    return torch.cat([fake for fake, _ in parts]), torch.cat([f for _, f in parts])
