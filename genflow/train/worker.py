"""Train one seed: what every worker runs, whoever started it (genflow.launch decides).

``run_worker`` is what every Ray Train worker runs; it is plain PyTorch and
takes its reporter and resume state as arguments, so the very same function
runs in-process (``ray.num_workers: 0``), in a Ray task, in tests, and under Ray Train.
"""
from __future__ import annotations

import random
import shutil
from pathlib import Path
from typing import Any, Callable

import numpy as np
import torch

from genflow.data.loader import load_split
from genflow.errors import ConfigError, DataError, DivergenceError
from genflow.io import atomic_dir, write_json
from genflow.models import registry
from genflow.models.plugins import provenance as plugin_provenance
from genflow.models.plugins import validate_spec
from genflow.train import checkpoint, init_from
from genflow.train.checkpoint_store import Candidates, CheckpointStore, resume
from genflow.train.engine import Engine, PrintReporter, distributed
from genflow.train.monitor import Monitor, selected_weights, summary
from genflow.train.progress import terminal_bar
from genflow.train.worker_config import WorkerConfig, run_name


def seed_dir(model_dir: str | Path, seed: int) -> Path:
    return Path(model_dir) / f"seed_{seed}"


def trained_seeds(model_dir: str | Path) -> list[Path]:
    """The ``seed_<n>/`` checkpoints of a trained model, in seed order."""
    dirs = sorted(Path(model_dir).glob("seed_*"), key=lambda d: int(d.name.split("_", 1)[1]))
    if not dirs:
        raise DataError(f"{model_dir}: no seed_<n>/ checkpoints; run the train stage first")
    return dirs


def build_engine(config: WorkerConfig, device: torch.device | None = None) -> tuple[Engine, Any]:
    spec = validate_spec(config.spec)
    data = load_split(config.data_dir, "train")
    if spec.holdout_class is not None:  # anomaly detection: the model never sees this class
        data = data.without_class(spec.holdout_class)
    # identical initial weights on every rank; numpy's and Python's global RNGs too, since their
    # states are saved in every checkpoint, which must be byte-identical from run to run
    torch.manual_seed(config.seed)
    np.random.seed(config.seed)
    random.seed(config.seed)
    model = registry.build(spec, data.shape, data.num_classes)
    init_from.apply(model, config.name, config.init_from)  # train.init_from's weights (a resume then loads over them)
    data = model.training_split(data)
    if device is not None:
        model.to(device)
    return Engine(model, train=spec.train, seed=config.seed, device=device), data


def checkpoint_meta(config: WorkerConfig) -> dict[str, Any]:
    return {"name": config.name, "model": config.spec["model"], "spec": config.spec, "seed": config.seed,
            "code_revision": config.code_revision, "data_manifest_sha256": config.data_manifest_sha256,
            "data_shape": config.data_shape, "num_classes": config.num_classes,
            "world_size": distributed()[1], **({"init_from": config.init_from} if config.init_from else {}),
            **plugin_provenance(config.spec["model"])}


def load_trained(model_dir: str | Path):
    """A trained model (weights-only load, sha256-checked) and its checkpoint metadata.

    The weights are those ``train.select`` picks (the last step's, or the best probe's); in a
    run probed during training ``meta["selected"]`` says which, ``meta["monitor"]`` what the
    probes found (best step, early stop, collapse), for the protocol and the report."""
    state, log, meta = checkpoint.load(model_dir)
    spec = validate_spec(meta["spec"])
    model = registry.build(spec, tuple(meta["data_shape"]), meta["num_classes"])
    weights, selected = selected_weights(state, spec.train)
    if "monitor" in state:  # a run without probes: its metadata exactly as it always was
        meta.update(selected=selected, monitor=summary(state))
    model.load_state_dict(weights)
    return model.eval(), meta, log


# GAN losses whose D loss reaches 0 only when D separates everything (genflow.train.monitor)
D_FLOOR_LOSSES = ("ns", "minimax", "lsgan", "hinge")
ProbeFactory = Callable[[WorkerConfig], Any]


def with_monitor(built: tuple[Engine, Any], config: WorkerConfig, probe) -> tuple[Engine, Any]:
    """Attach the monitor of ``train.eval_every`` to a freshly built engine (``probe``: None on
    ranks other than 0, which only follow rank 0's early stop)."""
    engine, data = built
    if engine.train.eval_every:
        engine.monitor = Monitor(engine.train, probe, watch_d=config.spec.get("loss") in D_FLOOR_LOSSES)
    return engine, data


def make_train_probe(config: WorkerConfig, make_probe: ProbeFactory | None):
    """The probe of ``train.eval_every`` on rank 0, built once (not per resume candidate)."""
    if not config.spec["train"].get("eval_every") or distributed()[0] != 0:
        return None
    if make_probe is None:
        raise ConfigError(f"models.{config.name}.train.eval_every: probes during training need the feature "
                          "network; run the train stage through genflow.launch, which passes the probe")
    return make_probe(config)


def run_worker(config: WorkerConfig, reporter, resume_dir: Candidates = None,
               device: torch.device | None = None, make_probe: ProbeFactory | None = None) -> list[dict[str, Any]]:
    """Train (or resume) one model on this process; report through ``reporter``.

    ``resume_dir``: a checkpoint directory, or several, newest first; the first usable one is
    resumed from (checkpoint_store.resume says why it skips any other). ``make_probe``: the
    probe of ``train.eval_every`` (genflow.evaluate.probe.training_probe, bound by genflow.launch)."""
    torch.set_num_threads(config.threads)
    probe = make_train_probe(config, make_probe)
    engine, data, resumed = resume(lambda: with_monitor(build_engine(config, device), config, probe), resume_dir)
    if resumed is not None:
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


def finish(checkpoint_dir: str | Path, out: str | Path, config: WorkerConfig) -> None:
    """Copy a final checkpoint into the stage output, with the resolved params beside it."""
    with atomic_dir(out) as tmp:
        for item in (checkpoint.STATE_FILE, checkpoint.LOG_FILE, checkpoint.META_FILE):
            shutil.copyfile(Path(checkpoint_dir) / item, tmp / item)
        write_json(tmp / "resolved_params.json", {"name": config.name, "seed": config.seed, **config.spec})


def train_resumable(config: WorkerConfig, work_dir: str | Path, device: torch.device | None = None,
                    bar=None, make_probe: ProbeFactory | None = None) -> Path:
    """Train one seed on this process, resuming from ``work_dir``; return its final checkpoint.

    Each checkpoint goes to ``work_dir/<run name>/step_<N>/`` (the newest two kept), so a
    rerun, or a retried Ray task, continues from the newest intact one. A diverged run stops
    with its last good checkpoint kept there (every checkpoint passed the engine's
    finiteness check)."""
    store = CheckpointStore(Path(work_dir) / run_name(config))
    reporter = DirectoryReporter(config.label, store, checkpoint_meta(config), bar)
    try:
        run_worker(config, reporter, resume_dir=store.checkpoints(), device=device, make_probe=make_probe)
    except DivergenceError as err:
        raise DivergenceError(err.step, f"{err.what}; last good checkpoint: {store.describe_latest()}") from None
    return store.latest()


def train_in_process(config: WorkerConfig, out: str | Path, work_dir: str | Path,
                     make_probe: ProbeFactory | None = None) -> None:
    """``num_workers: 0``: no Ray; resumable from ``work_dir`` like a Ray run; ``out`` is
    written only once the run is complete."""
    bar = terminal_bar() if config.progress == "bar" else None
    finish(train_resumable(config, work_dir, bar=bar, make_probe=make_probe), out, config)
