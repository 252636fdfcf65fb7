"""The one Ray session of a stage: connect to a cluster, or start a local instance.

Kept apart from ``ray_train`` so that the modules Ray workers import for plain tasks
(training seeds, evaluation shards, image decoding) do not pull in Ray Train: a worker
process imports the module of the function it runs, and ``ray.train.torch`` costs about
a second of CPU per worker on the 2-core machine.
"""
from __future__ import annotations

import os
import socket
from pathlib import Path

import ray

import genflow
from genflow.errors import ConfigError

# Ray must not wait on a phone-home connection that this network refuses.
os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")
# The Train controller polls its workers every 2 s by default, so every run (and every
# seed) idled up to 2 s after its last report; 0.5 s cuts ~4 s off a stage (docs/benchmarks.md).
RAY_ENV = {"RAY_TRAIN_HEALTH_CHECK_INTERVAL_S": os.environ.get("RAY_TRAIN_HEALTH_CHECK_INTERVAL_S", "0.5")}


def init_ray(ray_spec) -> None:
    """Connect to ``ray.address`` / RAY_ADDRESS, or start a local instance sized for the run;
    first refuse what would make Ray wait forever (check_before_ray)."""
    if ray.is_initialized():
        return
    address = ray_spec.address or os.environ.get("RAY_ADDRESS")
    check_before_ray(ray_spec, address)
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


CONNECT_TIMEOUT_S = 10.0
LOOPBACK = ("127.0.0.1", "localhost", "::1")


def check_before_ray(ray_spec, address: str | None) -> None:
    """Settings that Ray accepts and then waits on forever, refused with the key named:

    - ``ray.use_gpu`` on this machine without CUDA, when the cluster is a local one (started
      here, by infra/local/with-ray.sh or cluster.sh): it cannot gain a GPU the machine lacks,
      and Ray would keep every GPU task pending. A remote cluster may autoscale GPU nodes
      (infra/ray/aws-gpu.yaml starts them at 0), so there the request is left to Ray;
    - an address nobody answers: ``ray.init`` retries for more than 10 minutes."""
    host, port = _host_port(address)
    if ray_spec.use_gpu and (address is None or address == "auto" or host in LOOPBACK):
        import torch

        if not torch.cuda.is_available():
            raise ConfigError("ray.use_gpu: true, but this machine has no CUDA GPU (torch.cuda.is_available() is "
                              "False) and the Ray cluster runs on it; set ray.use_gpu: false, or point "
                              "ray.address / RAY_ADDRESS at a cluster with GPU nodes")
    if port is not None:
        try:
            socket.create_connection((host, port), timeout=CONNECT_TIMEOUT_S).close()
        except OSError as exc:
            raise ConfigError(f"ray.address / RAY_ADDRESS: no Ray cluster answers at {address} within "
                              f"{CONNECT_TIMEOUT_S:g} s ({exc.strerror or type(exc).__name__}); start one "
                              "(infra/local/cluster.sh start) or unset it to run on a local instance") from None


def _host_port(address: str | None) -> tuple[str | None, int | None]:
    """``host:port`` or ``ray://host:port`` -> (host, port); (None, None) for none or "auto"."""
    if not address or address == "auto":
        return None, None
    host, _, port = address.removeprefix("ray://").rpartition(":")
    return (host.strip("[]"), int(port)) if host and port.isdigit() else (address, None)


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
