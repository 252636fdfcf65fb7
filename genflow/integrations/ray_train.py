"""Ray Train (V2 API) integration: data-parallel training runs (``ray.num_workers`` >= 2), and
every run under ``ray.launcher: trainer`` (one-worker runs are otherwise Ray tasks: ray_tasks.py).

One ``TorchTrainer`` per seed. Its run name is ``<model>-s<seed>-<params fingerprint>``
and its ``storage_path`` lies outside DVC outputs, so rerunning the stage after
an interruption resumes from Ray's latest checkpoint (V2 resumes when the same
``RunConfig(name, storage_path)`` is reused), while changed hyperparameters
start a fresh run instead of resuming a stale one.

A run that fails ends in the same one-line errors as a run in a Ray task, not in Ray's
``TrainingFailedError``: a worker's divergence (with the run's last good checkpoint), a worker's
own GenflowError (data it cannot see), or a worker process that died (``ray.max_failures``).
"""
from __future__ import annotations

import posixpath
import shutil
import tempfile
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import pyarrow.fs
import ray
import ray.train
import torch
from ray.train import CheckpointConfig, FailureConfig, RunConfig, ScalingConfig
from ray.train.torch import TorchTrainer
from ray.train.v2._internal.exceptions import WorkerHealthCheckFailedError
from ray.train.v2.api.exceptions import TrainingFailedError

from genflow.errors import DataError, DivergenceError, GenflowError
from genflow.integrations.ray_session import init_ray, storage_path, worker_bar, worker_lost
from genflow.train import checkpoint
from genflow.train.engine import PrintReporter
from genflow.train.worker import checkpoint_meta, finish, run_worker
from genflow.train.worker_config import WorkerConfig, check_worker_environment, run_name


class RayReporter(PrintReporter):
    """Rank 0 prints progress and hands checkpoints to Ray; every rank reports equally often."""

    def __init__(self, label: str, meta: dict[str, Any], bar=None):
        super().__init__(label, bar)
        self.rank = ray.train.get_context().get_world_rank()
        self.meta = meta

    def on_log(self, step, row) -> None:
        if self.rank == 0:
            super().on_log(step, row)

    def on_checkpoint(self, step, state, log, final) -> None:
        metrics = {"step": step, **{k: v for k, v in (log[-1] if log else {}).items() if k != "step"}}
        if state is None:  # ray.train.report is a barrier: other ranks report without a checkpoint
            ray.train.report(metrics, checkpoint=None)
            return
        with tempfile.TemporaryDirectory(prefix="genflow-ckpt-") as tmp:
            checkpoint.save(tmp, state, log, self.meta)
            ray.train.report(metrics, checkpoint=ray.train.Checkpoint.from_directory(tmp))


def train_loop_per_worker(loop_config: dict[str, Any]) -> None:
    """What each TorchTrainer worker runs (Ray Train passes its config as a dict)."""
    config = WorkerConfig.from_dict(loop_config["worker"])
    context = ray.train.get_context()
    device = None
    if loop_config["use_gpu"]:
        device = torch.device("cuda", context.get_local_rank())
        torch.cuda.set_device(device)
    reporter = RayReporter(config.label, checkpoint_meta(config), worker_bar(config))
    run_from(ray.train.get_checkpoint(), config, reporter, device, loop_config.get("make_probe"))


def run_from(resume, config: WorkerConfig, reporter, device: torch.device | None = None, make_probe=None) -> None:
    """``run_worker``, resumed from a Ray checkpoint (copied locally first) when there is one.

    A registered checkpoint that is unusable (checkpoint_store.resume: corrupt, forged, not
    this model's) is skipped for the previous one in the same run
    (``CheckpointConfig(num_to_keep=2)`` keeps it)."""
    check_worker_environment(config)
    local = Path(tempfile.mkdtemp(prefix="genflow-resume-"))
    try:
        copies = ((c.path, _local_copy(c, local / str(i))) for i, c in enumerate(_candidates(resume)))
        run_worker(config, reporter, resume_dir=copies, device=device, make_probe=make_probe)
    finally:
        shutil.rmtree(local, ignore_errors=True)


def _candidates(resume) -> list:
    """The checkpoint Ray hands back, then the run's older checkpoints, newest first."""
    if resume is None:
        return []
    parent, name = posixpath.split(resume.path.rstrip("/"))
    older = [path for path in _checkpoint_paths(resume.filesystem, parent) if posixpath.basename(path) < name]
    return [resume] + [ray.train.Checkpoint(path, filesystem=resume.filesystem) for path in older]


def _checkpoint_paths(filesystem, run_dir: str) -> list[str]:
    """The ``checkpoint_<time>`` directories of a run, newest first (Ray names them by time)."""
    infos = filesystem.get_file_info(pyarrow.fs.FileSelector(run_dir, allow_not_found=True))
    return sorted((info.path for info in infos if info.type == pyarrow.fs.FileType.Directory
                   and info.base_name.startswith("checkpoint_")), reverse=True)


def last_good_checkpoint(ray_spec, name: str) -> str:
    """The newest intact checkpoint of Ray run ``name``: ``<dir> (step N)``, the way
    ``CheckpointStore.describe_latest`` names a task run's."""
    root = storage_path(ray_spec)
    scheme = root.split("://", 1)[0] + "://" if "://" in root else ""
    filesystem, base = pyarrow.fs.FileSystem.from_uri(root) if scheme else (pyarrow.fs.LocalFileSystem(), root)
    for path in _checkpoint_paths(filesystem, posixpath.join(base, name)):
        try:
            with ray.train.Checkpoint(path, filesystem=filesystem).as_directory() as directory:
                step = checkpoint.verify(directory)["step"]
        except DataError:  # cut short or corrupt: every checkpoint before it passed the same checks
            continue
        return f"{scheme}{path} (step {step})"
    return "none (no checkpoint was written yet)"


def _local_copy(candidate, local: Path) -> Path:
    with candidate.as_directory() as directory:
        shutil.copytree(directory, local, dirs_exist_ok=True)
    return local


def concurrent_runs(ray_spec, n_runs: int) -> int:
    """How many seeds' TorchTrainers fit on the cluster at once (each seed is its own run)."""
    per_run = ray_spec.num_workers * ray_spec.cpus_per_worker
    cpus = ray.cluster_resources().get("CPU", 1.0)
    return max(1, min(n_runs, int(cpus // per_run)))


def train_seeds_with_ray(jobs: list[tuple[WorkerConfig, Path]], ray_spec, make_probe=None) -> None:
    """Train independent seeds as concurrent Ray Train runs, as many as the cluster holds
    (``make_probe``: the probe of ``train.eval_every``, genflow.launch.train_probe)."""
    init_ray(ray_spec)
    width = concurrent_runs(ray_spec, len(jobs))
    if width == 1:
        for config, out in jobs:
            train_with_ray(config, out, ray_spec, make_probe)
        return
    with ThreadPoolExecutor(max_workers=width, thread_name_prefix="genflow-seed") as pool:
        futures = [pool.submit(train_with_ray, config, out, ray_spec, make_probe) for config, out in jobs]
        for future in futures:
            future.result()  # re-raises the first failure


def train_with_ray(config: WorkerConfig, out: str | Path, ray_spec, make_probe=None) -> None:
    """Fit one model with a TorchTrainer and copy its final checkpoint into ``out``."""
    init_ray(ray_spec)
    name = run_name(config)
    trainer = TorchTrainer(
        train_loop_per_worker,
        train_loop_config={"worker": config.to_dict(), "use_gpu": ray_spec.use_gpu, "make_probe": make_probe},
        scaling_config=ScalingConfig(num_workers=ray_spec.num_workers, use_gpu=ray_spec.use_gpu,
                                     resources_per_worker={"CPU": ray_spec.cpus_per_worker},
                                     placement_strategy=ray_spec.placement_strategy),
        run_config=RunConfig(name=name, storage_path=storage_path(ray_spec),
                             failure_config=FailureConfig(max_failures=ray_spec.max_failures,
                                                          controller_failure_limit=3),
                             checkpoint_config=CheckpointConfig(num_to_keep=2)),
    )
    try:
        result = trainer.fit()
    except TrainingFailedError as error:
        explained = explain_failure(error, config, ray_spec)
        if explained is None:
            raise
        raise explained from None
    if result.checkpoint is None:
        raise RuntimeError(f"Ray run {name} finished without a checkpoint")
    with result.checkpoint.as_directory() as directory:
        finish(directory, out, config)


def explain_failure(error: TrainingFailedError, config: WorkerConfig, ray_spec) -> GenflowError | None:
    """Ray Train's failure as genflow's one-line error, the same as a Ray task run's; None when
    it is none of these (Ray's traceback then tells more than a line could).

    Under DDP one rank's failure makes the others fail too (a broken collective, the group torn
    down), so a divergence, then a dead worker, wins over what the other ranks report."""
    failures = [failure for _, failure in sorted(getattr(error, "worker_failures", {}).items())]
    diverged = sorted((f for f in failures if isinstance(f, DivergenceError)), key=lambda f: f.step)
    if diverged:
        last = last_good_checkpoint(ray_spec, run_name(config))
        return DivergenceError(diverged[0].step, f"{diverged[0].what}; last good checkpoint: {last}")
    if any(_worker_died(f) for f in failures):
        return worker_lost(config.label, ray_spec.max_failures, last_good_checkpoint(ray_spec, run_name(config)))
    return next((f for f in failures if isinstance(f, GenflowError)), None)


def _worker_died(failure: Exception) -> bool:
    """Ray Train reports a worker whose process died as a failed health check of its actor."""
    if isinstance(failure, WorkerHealthCheckFailedError):
        failure = failure.health_check_failure
    return isinstance(failure, (ray.exceptions.RayActorError, ray.exceptions.WorkerCrashedError,
                                ray.exceptions.NodeDiedError, ray.exceptions.OutOfMemoryError))
