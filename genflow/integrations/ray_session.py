"""The one Ray session of a stage: connect to a cluster, or start a local instance.

Kept apart from ``ray_train`` so that the modules Ray workers import for plain tasks
(training seeds, evaluation shards, image decoding) do not pull in Ray Train: a worker
process imports the module of the function it runs, and ``ray.train.torch`` costs about
a second of CPU per worker on the 2-core machine.
"""
from __future__ import annotations

import os
from pathlib import Path

import ray

import genflow

# Ray must not wait on a phone-home connection that this network refuses.
os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")
# The Train controller polls its workers every 2 s by default, so every run (and every
# seed) idled up to 2 s after its last report; 0.5 s cuts ~4 s off a stage (docs/benchmarks.md).
RAY_ENV = {"RAY_TRAIN_HEALTH_CHECK_INTERVAL_S": os.environ.get("RAY_TRAIN_HEALTH_CHECK_INTERVAL_S", "0.5")}


def init_ray(ray_spec) -> None:
    """Connect to ``ray.address`` / RAY_ADDRESS, or start a local instance sized for the run."""
    if ray.is_initialized():
        return
    address = ray_spec.address or os.environ.get("RAY_ADDRESS")
    if address:
        # The cluster's workers run this driver's genflow, not whatever their image holds:
        # Ray uploads the package (content-addressed, so once per code revision) and puts it
        # first on the workers' path. check_worker_environment verifies it on every worker.
        context = ray.init(address=address, log_to_driver=True,
                           runtime_env={"env_vars": RAY_ENV, "py_modules": [str(Path(genflow.__file__).parent)]})
        _announce(f"attached to the Ray cluster at {address}", context)
        return
    os.environ.update(RAY_ENV)  # a local instance's processes inherit the driver's environment
    cpus = max(os.cpu_count() or 1, int(ray_spec.num_workers * ray_spec.cpus_per_worker) + 1)
    context = ray.init(num_cpus=cpus, object_store_memory=256 << 20, include_dashboard=True,
                       dashboard_host=ray_spec.dashboard_host, log_to_driver=True)
    _announce(f"started a local Ray instance ({cpus} CPUs) for this stage", context)


def _announce(what: str, context) -> None:
    """One line a person can act on: where the stage runs and where to watch it."""
    url = getattr(context, "dashboard_url", None)
    if url and "://" not in url:
        url = f"http://{url}"
    print(f"[ray] {what}; dashboard {url or 'not running'}", flush=True)


def worker_bar(config):
    """Live bars on a Ray worker when the driver is in a terminal (``config.progress``, a
    WorkerConfig's): Ray's tqdm_ray, which the driver draws, one bar per run; otherwise None."""
    if config.progress != "bar":
        return None
    from ray.experimental.tqdm_ray import tqdm

    return lambda desc, total: tqdm(desc=desc, total=total, unit="step")


def storage_path(ray_spec) -> str:
    path = ray_spec.storage_path
    return path if "://" in path else str(Path(path).resolve())
