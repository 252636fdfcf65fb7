"""One-worker training runs as plain Ray tasks: the engine's own loop, no Train controller.

A run of one worker has nothing to all-reduce, so Ray Train's controller, placement group
and process group add only start-up time: about 10 s a run on the 2-core machine
(docs/benchmarks.md). ``ray.launcher: auto`` sends such runs here. Each seed is one Ray
task running :func:`genflow.train.worker.train_resumable`; every seed of a stage shares one
Ray session, and as many run at once as the cluster's CPUs hold (``cpus_per_worker``
each). What Ray Train gives a one-worker run is kept:

- resume: the task checkpoints into ``storage_path/<run name>/step_<N>/``, so a retried
  task or a rerun stage continues from the newest intact checkpoint, bit-identically;
- fault tolerance: a task whose worker process dies is retried up to ``ray.max_failures``
  times (an exception raised by training itself, such as divergence, is not retried); past
  that, the stage stops with one line naming ``ray.max_failures`` and the last checkpoint;
- the driver's code on every node (``init_ray`` ships genflow; each task checks its digest).

Data-parallel runs (``num_workers`` >= 2) and storage given as a URL go to Ray Train.
"""
from __future__ import annotations

from pathlib import Path
from typing import Any

import ray
import torch

from genflow.errors import GenflowError
from genflow.integrations.ray_session import init_ray, storage_path, worker_bar, worker_lost
from genflow.train.checkpoint_store import CheckpointStore
from genflow.train.worker import finish, train_resumable
from genflow.train.worker_config import WorkerConfig, check_worker_environment, run_name


def _train_seed(config: WorkerConfig, work_dir: str, use_gpu: bool, make_probe=None) -> str:
    check_worker_environment(config)
    device = torch.device("cuda") if use_gpu else None  # Ray sets CUDA_VISIBLE_DEVICES to this task's GPU
    return str(train_resumable(config, work_dir, device, bar=worker_bar(config), make_probe=make_probe))


def train_seeds_as_tasks(jobs: list[tuple[WorkerConfig, Path]], ray_spec, make_probe=None) -> None:
    """Train each (config, out) job in its own Ray task; copy each final checkpoint to its ``out``.
    ``make_probe``: the probe of ``train.eval_every`` (genflow.launch.train_probe)."""
    init_ray(ray_spec)
    task = ray.remote(num_cpus=ray_spec.cpus_per_worker, num_gpus=1 if ray_spec.use_gpu else 0,
                      max_retries=ray_spec.max_failures, retry_exceptions=False)(_train_seed)
    work_dir = storage_path(ray_spec)
    runs = {task.options(name=run_name(config)).remote(config, work_dir, ray_spec.use_gpu, make_probe): (config, out)
            for config, out in jobs}
    pending = list(runs)
    try:
        while pending:
            [done], pending = ray.wait(pending, num_returns=1)
            config, out = runs[done]
            finish(_result(done, config, work_dir, ray_spec.max_failures), out, config)
    finally:
        for ref in pending:  # a failed seed stops the stage: do not leave the others training
            ray.cancel(ref, force=True)


# how Ray reports a task whose process died, once its retries (ray.max_failures) are spent
WORKER_DEATHS = (ray.exceptions.WorkerCrashedError, ray.exceptions.OutOfMemoryError, ray.exceptions.NodeDiedError)


def _result(ref, config: WorkerConfig, work_dir: str, max_failures: int) -> str:
    try:
        return ray.get(ref)
    except ray.exceptions.RayTaskError as exc:
        if isinstance(exc.cause, GenflowError):  # divergence, bad data: its own message, no remote traceback
            raise exc.cause from None
        raise
    except WORKER_DEATHS:
        last = CheckpointStore(Path(work_dir) / run_name(config)).describe_latest()
        raise worker_lost(config.label, max_failures, last) from None
