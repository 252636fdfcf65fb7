"""Train one model from params: the per-worker function and the in-process runner.

``run_worker`` is what every Ray Train worker runs; it is plain PyTorch and
takes its reporter and resume state as arguments, so the very same function
runs in-process (``ray.num_workers: 0``), in tests, and under Ray.
"""
from __future__ import annotations

import random
import shutil
import socket
from pathlib import Path
from typing import Any

import numpy as np
import torch

from genflow import checkpoint
from genflow.checkpoint_store import CheckpointStore
from genflow.config import Params, fingerprint
from genflow.data.loader import load_split
from genflow.data.shards import manifest_hash, read_manifest
from genflow.engine import Engine, PrintReporter, distributed
from genflow.errors import ConfigError, DataError, DivergenceError
from genflow.io import atomic_dir, code_revision, package_digest, write_json
from genflow.models import registry
from genflow.models.specs import SPEC_BY_MODEL
from genflow.progress import progress_mode, run_label, terminal_bar


def seed_dir(model_dir: str | Path, seed: int) -> Path:
    return Path(model_dir) / f"seed_{seed}"


def trained_seeds(model_dir: str | Path) -> list[Path]:
    """The ``seed_<n>/`` checkpoints of a trained model, in seed order."""
    dirs = sorted(Path(model_dir).glob("seed_*"), key=lambda d: int(d.name.split("_", 1)[1]))
    if not dirs:
        raise DataError(f"{model_dir}: no seed_<n>/ checkpoints; run the train stage first")
    return dirs


def worker_config(name: str, params: Params, data_root: str | Path, seed: int | None = None) -> dict[str, Any]:
    """Everything a worker needs, as plain JSON-able data (it may run on another node)."""
    spec = params.models[name]
    seed = spec.seeds[0] if seed is None else seed
    data_dir = Path(data_root) / spec.dataset
    manifest = read_manifest(data_dir)
    check_fits_data(name, spec, manifest)
    shape = manifest["shape"]
    data_shape = [shape[2], shape[0], shape[1]] if manifest["kind"] == "image" else shape
    return {"data_shape": data_shape, "num_classes": manifest["num_classes"], "name": name,
            "spec": spec.model_dump(mode="json"), "data_dir": str(data_dir.resolve()),
            "threads": params.ray.threads_per_worker, "code_revision": code_revision(), "code_digest": package_digest(),
            "data_manifest_sha256": manifest_hash(data_dir), "seed": seed,
            "fingerprint": fingerprint({"spec": spec.model_dump(mode="json"), "seed": seed}),
            # decided here: a Ray worker's stdout is never a terminal, even when the stage's is
            "progress": progress_mode()}


def check_worker_environment(config: dict[str, Any]) -> None:
    """On a worker of another node: the same genflow code as the driver, and the data in reach."""
    if config.get("code_digest") not in (None, package_digest()):
        raise RuntimeError(f"this worker imports genflow from {Path(__file__).parent} (source digest "
                           f"{package_digest()}), not the driver's code (digest {config['code_digest']}); "
                           "attach through ray.address / RAY_ADDRESS, which ships the driver's genflow, or "
                           "install the same revision on every node")
    if not Path(config["data_dir"]).is_dir():
        raise DataError(f"{config['data_dir']}: the prepared data is not visible on node {socket.gethostname()}; "
                        "on a multi-node cluster the DVC workspace must be on storage every node mounts "
                        "(infra/README.md, 'Shared storage')")


def check_fits_data(name: str, spec, manifest: dict[str, Any]) -> None:
    """What params alone cannot tell for file sources: points vs images, number of classes."""
    if manifest["kind"] == "points" and spec.arch != "mlp":
        raise ConfigError(f"models.{name}.arch: dataset {spec.dataset!r} holds points; only 'mlp' fits it")
    height, width = manifest["shape"][:2] if manifest["kind"] == "image" else (8, 8)
    if spec.arch == "conv" and (height != width or height < 8 or height & (height - 1)):
        raise ConfigError(f"models.{name}.arch: dataset {spec.dataset!r} has {height}x{width} images; 'conv' needs "
                          "square power-of-two images of at least 8x8 (resize them when preparing)")
    scale = getattr(spec, "scale", None)  # super-resolution: the low-resolution input needs 2x2 pixels at least
    if scale is not None and min(height, width) // scale < 2:
        raise ConfigError(f"models.{name}.scale: dataset {spec.dataset!r} has {height}x{width} images; divided by "
                          f"scale {scale} that leaves less than 2x2 pixels to upscale from")
    holdout = spec.holdout_class
    if holdout is not None and not holdout < manifest["num_classes"]:
        raise ConfigError(f"models.{name}.holdout_class: dataset {spec.dataset!r} has {manifest['num_classes']} "
                          f"classes; got {holdout}")
    if spec.c_dim not in (0, manifest["num_classes"]):
        raise ConfigError(f"models.{name}.c_dim: dataset {spec.dataset!r} has {manifest['num_classes']} classes; "
                          f"set c_dim to {manifest['num_classes']} (conditional) or 0; got {spec.c_dim}")
    for key in ("domain_a", "domain_b"):  # a translation model's two classes
        label = getattr(spec, key, None)
        if label is not None and not label < manifest["num_classes"]:
            have = f"{manifest['num_classes']} classes (0..{manifest['num_classes'] - 1})" \
                if manifest["num_classes"] else "no class labels"
            raise ConfigError(f"models.{name}.{key}: dataset {spec.dataset!r} has {have}; got {label}")


def run_name(config: dict[str, Any]) -> str:
    """Stable per (model, params, seed): a rerun resumes, a changed config starts afresh."""
    return f"{config['name']}-s{config['seed']}-{config['fingerprint']}"


def build_engine(config: dict[str, Any], device: torch.device | None = None) -> tuple[Engine, Any]:
    spec = SPEC_BY_MODEL[config["spec"]["model"]].model_validate(config["spec"])
    data = load_split(config["data_dir"], "train")
    if spec.holdout_class is not None:  # anomaly detection: the model never sees this class
        data = data.without_class(spec.holdout_class)
    # identical initial weights on every rank; numpy's and Python's global RNGs too, since their
    # states are saved in every checkpoint, which must be byte-identical from run to run
    torch.manual_seed(config["seed"])
    np.random.seed(config["seed"])
    random.seed(config["seed"])
    model = registry.build(spec, data.shape, data.num_classes)
    data = model.training_split(data)
    if device is not None:
        model.to(device)
    return Engine(model, train=spec.train, seed=config["seed"], device=device), data


def checkpoint_meta(config: dict[str, Any]) -> dict[str, Any]:
    return {"name": config["name"], "model": config["spec"]["model"], "spec": config["spec"], "seed": config["seed"],
            "code_revision": config["code_revision"], "data_manifest_sha256": config["data_manifest_sha256"],
            "data_shape": config["data_shape"], "num_classes": config["num_classes"],
            "world_size": distributed()[1]}


def load_trained(model_dir: str | Path):
    """A trained model (weights-only load, sha256-checked) and its checkpoint metadata."""
    state, log, meta = checkpoint.load(model_dir)
    spec = SPEC_BY_MODEL[meta["model"]].model_validate(meta["spec"])
    model = registry.build(spec, tuple(meta["data_shape"]), meta["num_classes"])
    model.load_state_dict(state["model"])
    return model.eval(), meta, log


def run_worker(config: dict[str, Any], reporter, resume_dir: str | Path | None = None,
               device: torch.device | None = None) -> list[dict[str, Any]]:
    """Train (or resume) one model on this process; report through ``reporter``."""
    torch.set_num_threads(config["threads"])
    engine, data = build_engine(config, device)
    if resume_dir is not None:
        state, log, _ = checkpoint.load(resume_dir)
        engine.load_state_dict(state)
        engine.log = log
        reporter.progress.note(f"resumed from checkpoint at step {engine.step} of {engine.train.steps}")
    try:
        return engine.fit(data, reporter)
    finally:
        reporter.progress.close()


class DirectoryReporter(PrintReporter):
    """In-process reporter: each checkpoint goes into a :class:`CheckpointStore` (last two kept)."""

    def __init__(self, label: str, store: CheckpointStore, meta: dict[str, Any], bar=None):
        super().__init__(label, bar)
        self.store, self.meta = store, meta

    def on_checkpoint(self, step, state, log, final) -> None:
        if state is not None:
            self.store.save(state, log, self.meta)


def finish(checkpoint_dir: str | Path, out: str | Path, config: dict[str, Any]) -> None:
    """Copy a final checkpoint into the stage output, with the resolved params beside it."""
    with atomic_dir(out) as tmp:
        for item in (checkpoint.STATE_FILE, checkpoint.LOG_FILE, checkpoint.META_FILE):
            shutil.copyfile(Path(checkpoint_dir) / item, tmp / item)
        write_json(tmp / "resolved_params.json", {"name": config["name"], "seed": config["seed"], **config["spec"]})


def config_label(config: dict[str, Any]) -> str:
    """How the run's progress lines name it: model, sweep trial (if any) and seed."""
    return run_label(config["name"], config["seed"], config.get("trial"))


def train_resumable(config: dict[str, Any], work_dir: str | Path, device: torch.device | None = None,
                    bar=None) -> Path:
    """Train one seed on this process, resuming from ``work_dir``; return its final checkpoint.

    Each checkpoint goes to ``work_dir/<run name>/step_<N>/`` (the newest two kept), so a
    rerun, or a retried Ray task, continues from the newest intact one. A diverged run stops
    with its last good checkpoint kept there (every checkpoint passed the engine's
    finiteness check)."""
    store = CheckpointStore(Path(work_dir) / run_name(config))
    reporter = DirectoryReporter(config_label(config), store, checkpoint_meta(config), bar)
    try:
        run_worker(config, reporter, resume_dir=store.latest(), device=device)
    except DivergenceError as err:
        raise DivergenceError(err.step, f"{err.what}; last good checkpoint: {store.describe_latest()}") from None
    return store.latest()


def train_in_process(config: dict[str, Any], out: str | Path, work_dir: str | Path) -> None:
    """``num_workers: 0``: no Ray; resumable from ``work_dir`` like a Ray run; ``out`` is
    written only once the run is complete."""
    bar = terminal_bar() if config.get("progress") == "bar" else None
    finish(train_resumable(config, work_dir, bar=bar), out, config)


def runs_as_tasks(ray_spec) -> bool:
    """``launcher: auto`` runs a one-worker run as a Ray task (integrations/ray_tasks.py):
    there is nothing to all-reduce, and its checkpoints need a path every node can open."""
    return ray_spec.launcher == "auto" and ray_spec.num_workers == 1 and "://" not in ray_spec.storage_path


def launcher_name(ray_spec) -> str:
    if ray_spec.num_workers == 0:
        return "in-process"
    if runs_as_tasks(ray_spec):
        return "a Ray task per seed"
    return f"a Ray TorchTrainer of {ray_spec.num_workers} workers per seed"


def train_model(name: str, params: Params, data_root: str | Path, out: str | Path) -> None:
    """Train every seed of model ``name`` into ``out/seed_<s>/`` (swapped in atomically).

    The resume state of each run stays in ``ray.storage_path`` until every seed is
    done, so a stage killed anywhere resumes where it stopped when rerun."""
    spec = params.models[name]
    configs = [worker_config(name, params, data_root, seed) for seed in spec.seeds]
    with atomic_dir(out) as tmp:
        jobs = [(config, seed_dir(tmp, config["seed"])) for config in configs]
        print(f"[{name}] training seeds {spec.seeds}, {spec.train.steps} steps each ({launcher_name(params.ray)})",
              flush=True)
        if params.ray.num_workers == 0:
            for config, directory in jobs:
                train_in_process(config, directory, params.ray.storage_path)
        elif runs_as_tasks(params.ray):
            from genflow.integrations.ray_tasks import train_seeds_as_tasks

            train_seeds_as_tasks(jobs, params.ray)
        else:
            from genflow.integrations.ray_train import train_seeds_with_ray

            train_seeds_with_ray(jobs, params.ray)
    if "://" not in params.ray.storage_path:  # the artifacts are in DVC now; drop the resume state
        for config in configs:
            shutil.rmtree(Path(params.ray.storage_path) / run_name(config), ignore_errors=True)
