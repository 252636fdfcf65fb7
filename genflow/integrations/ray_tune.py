"""Ray Tune integration: with tune_ledger.py, the only place a sweep imports Ray Tune and Optuna.

A sweep is a ``Tuner`` over a *function* trainable (the Train V2 pattern;
``Tuner(TorchTrainer)`` no longer works). Each trial either trains inside its
own process (``workers_per_trial: 0``, no per-trial Ray Train start-up, which
is what fits a 2-core machine) or launches a ``TorchTrainer`` with
``workers_per_trial`` DDP workers whose rank-0 reports reach Tune through
``TuneReportCallback``. Optuna proposes (seeded TPE or random sampler) and ASHA
stops weak trials early.

The experiment lives in ``ray.storage_path/sweep-<name>-<fingerprint>``, outside
DVC's outputs, so a killed sweep rerun with the same params is restored
(``Tuner.restore``): finished trials are kept, unfinished ones resume from their
last checkpoint, none is run twice. The fingerprint covers the sweep, the base
model and the data, so changed params start a fresh experiment.
"""
from __future__ import annotations

import logging
import os
import tempfile
from pathlib import Path
from typing import Any

import optuna
import ray
import ray.train
from optuna.storages import JournalStorage
from optuna.storages.journal import JournalFileBackend
from optuna.trial import TrialState
from ray import tune
from ray.train import ScalingConfig
from ray.train.torch import TorchTrainer
from ray.tune.schedulers import ASHAScheduler, FIFOScheduler
from ray.tune.search import Searcher
from ray.tune.search.optuna import OptunaSearch

from genflow.config import fingerprint
from genflow.errors import ConfigError
from genflow.integrations.ray_session import init_ray, storage_path, worker_bar
from genflow.integrations.ray_train import run_from
from genflow.integrations.tune_ledger import TRIAL_ID_ATTR, Ledger, replay
from genflow.sweep.space import Dimension, SweepSpec, resolved_space
from genflow.sweep.trial import Probe, ProbeReporter, metric_mode, trial_config
from genflow.train import checkpoint
from genflow.train.checkpoint_store import CheckpointStore
from genflow.train.worker import checkpoint_meta, run_worker
from genflow.train.worker_config import WorkerConfig

JOURNAL = "study.journal"
# Tune's own CSV/JSON/TensorBoard loggers: genflow keeps its own ledger (tune_ledger.py), and
# tensorboardX is not installed; set before Tune reads it
os.environ.setdefault("TUNE_DISABLE_AUTO_CALLBACK_LOGGERS", "1")
# Tune snapshots its experiment state every 10 s by default; a kill loses what happened since
# (tune_ledger.py keeps the rest). Every second is cheap at sweep sizes.
os.environ.setdefault("TUNE_GLOBAL_CHECKPOINT_S", "1")


class GenflowOptunaSearch(OptunaSearch):
    """OptunaSearch that tells Optuna the truth about ASHA-stopped and failed trials.

    Ray's OptunaSearch tells a trial that ASHA stopped as COMPLETE with its partial
    score, so TPE learns from early, noisy numbers as if they were final ones, and it
    tells a trial that crashed after reporting as COMPLETE too. Here a trial that
    stopped before ``full_steps`` is PRUNED (``asha_stopped: pruned``; Optuna keeps
    its last intermediate value, and TPE ranks pruned trials after complete ones, by
    how far they got), and an errored trial is FAIL, which TPE ignores."""

    def __init__(self, *args, full_steps: int, asha_stopped: str, max_trials: int, **kwargs):
        super().__init__(*args, **kwargs)
        self.full_steps, self.asha_stopped, self.max_trials = full_steps, asha_stopped, max_trials

    def on_trial_complete(self, trial_id: str, result: dict | None = None, error: bool = False) -> None:
        if trial_id in self._completed_trials or trial_id not in self._ot_trials:
            return
        value = (result or {}).get(self.metric)
        reached = (result or {}).get("step", 0)
        if self._finished_in_study(trial_id):  # told before a kill; the restored searcher forgot
            return
        if error or value is None:
            state, value = TrialState.FAIL, None
        elif reached < self.full_steps and self.asha_stopped == "pruned":
            state, value = TrialState.PRUNED, None
        else:
            state = TrialState.COMPLETE
        self._ot_study.tell(self._ot_trials[trial_id], value, state=state)
        self._completed_trials.add(trial_id)

    def suggest(self, trial_id: str):
        """Stop at ``max_trials`` proposals *in the journal*: after a restore, Tune's count may
        miss proposals made after its last snapshot."""
        if trial_id not in self._ot_trials and len(self._ot_study.trials) >= self.max_trials:
            return Searcher.FINISHED
        config = super().suggest(trial_id)
        self._ot_study._storage.set_trial_user_attr(self._ot_trials[trial_id]._trial_id, TRIAL_ID_ATTR, trial_id)
        return config

    def on_trial_result(self, trial_id: str, result: dict) -> None:
        if trial_id in self._ot_trials and not self._finished_in_study(trial_id):
            super().on_trial_result(trial_id, result)

    def _finished_in_study(self, trial_id: str) -> bool:
        """A restored sweep's searcher is the one pickled at Tune's last snapshot, but the
        journal holds everything told since: trust the journal."""
        number = self._ot_trials[trial_id].number
        if self._ot_study.trials[number].state.is_finished():
            self._completed_trials.add(trial_id)
            return True
        return False


def trial_dirname(trial) -> str:
    """``trial_0007_<id>``: the number is the order Optuna proposed it in (Tune's counter)."""
    return f"trial_{int(trial.experiment_tag.split('_', 1)[0]):04d}_{trial.trial_id}"


def _domain(dim: Dimension):
    if dim.kind == "loguniform":
        return tune.loguniform(*dim.loguniform)
    if dim.kind == "uniform":
        return tune.uniform(*dim.uniform)
    if dim.kind == "int":
        return tune.randint(dim.int[0], dim.int[1] + 1)  # randint's upper bound is exclusive
    return tune.choice(list(dim.choice))


def _already_finished(ledger: str) -> bool:
    """Finished before a kill that Tune's last snapshot did not see (tune_ledger explains):
    report its last result again, so Tune (and ASHA) close it as it ended, and do not train."""
    last = replay(ledger, tune.get_context().get_trial_id())
    if last is None:
        return False
    tune.report(last)
    return True


def _trial_in_process(params: dict[str, Any], *, base: dict, sweep: dict, featurenet_dir: str,
                      ledger: str) -> None:
    """A trial that trains in its own (Tune actor) process.

    Its checkpoint lives in ``ledger/<trial id>/`` (swapped in whole at every probe), not in
    Tune's checkpoint store: a restored Tune snapshot may name a checkpoint that a later one
    already replaced, while this directory always holds the latest."""
    if _already_finished(ledger):
        return
    spec = SweepSpec.model_validate(sweep)
    config = trial_config(WorkerConfig.from_dict(base), params, spec).replace(trial=tune.get_context().get_trial_id())
    meta = checkpoint_meta(config)
    own = CheckpointStore(Path(ledger) / tune.get_context().get_trial_id())

    def emit(metrics, state, log):
        own.save(state, log, meta)
        tune.report(metrics)

    reporter = ProbeReporter(config, Probe(config.data_dir, featurenet_dir, spec), emit, bar=worker_bar(config))
    run_worker(config, reporter, resume_dir=own.latest())


def _train_worker_loop(loop_config: dict[str, Any]) -> None:
    """What each TorchTrainer worker of a trial runs; rank 0 probes and checkpoints."""
    config = WorkerConfig.from_dict(loop_config["config"])
    spec = SweepSpec.model_validate(loop_config["sweep"])
    rank = ray.train.get_context().get_world_rank()
    meta = checkpoint_meta(config)

    def emit(metrics, state, log):
        if state is None:  # a report is a barrier: every rank reports, only rank 0 a checkpoint
            ray.train.report(metrics, checkpoint=None)
            return
        with tempfile.TemporaryDirectory(prefix="genflow-trial-") as tmp:
            checkpoint.save(tmp, state, log, meta)
            ray.train.report(metrics, checkpoint=ray.train.Checkpoint.from_directory(tmp))

    probe = Probe(config.data_dir, loop_config["featurenet_dir"], spec) if rank == 0 else None
    reporter = ProbeReporter(config, probe, emit, rank=rank, bar=worker_bar(config))
    run_from(ray.train.get_checkpoint(), config, reporter)


def _trial_with_train(params: dict[str, Any], *, base: dict, sweep: dict, featurenet_dir: str, ledger: str,
                      ray_spec: dict, run: str) -> None:
    """A trial that launches its own TorchTrainer (the Ray Train V2 + Tune pattern)."""
    if _already_finished(ledger):
        return
    from ray.tune.integration.ray_train import TuneReportCallback

    spec = SweepSpec.model_validate(sweep)
    config = trial_config(WorkerConfig.from_dict(base), params, spec).replace(trial=tune.get_context().get_trial_id())
    trainer = TorchTrainer(
        _train_worker_loop,
        train_loop_config={"config": config.to_dict(), "sweep": sweep, "featurenet_dir": featurenet_dir},
        scaling_config=ScalingConfig(num_workers=spec.workers_per_trial, use_gpu=ray_spec["use_gpu"],
                                     resources_per_worker={"CPU": spec.cpus_per_trial},
                                     placement_strategy=ray_spec["placement_strategy"]),
        run_config=ray.train.RunConfig(
            # stable per trial: a restored sweep's trial resumes its Train run's checkpoint
            name=f"{run}-{tune.get_context().get_trial_id()}", storage_path=ray_spec["storage"],
            callbacks=[TuneReportCallback()],
            failure_config=ray.train.FailureConfig(max_failures=ray_spec["max_failures"], controller_failure_limit=3),
            checkpoint_config=ray.train.CheckpointConfig(num_to_keep=1)),
    )
    trainer.fit()


def concurrency(sweep: SweepSpec) -> int:
    if sweep.max_concurrent:
        return sweep.max_concurrent
    per_trial = sweep.cpus_per_trial * max(sweep.workers_per_trial, 1)
    cpus = ray.cluster_resources().get("CPU", 1.0)
    if len(ray.nodes()) == 1:  # one machine: a local instance counts a CPU for the driver too
        cpus = min(cpus, os.cpu_count() or 1)
    return max(1, min(sweep.trials, int(cpus // per_trial)))


def experiment_name(name: str, sweep: SweepSpec, base: WorkerConfig) -> str:
    key = {"sweep": sweep.model_dump(mode="json"), "spec": base.spec, "data": base.data_manifest_sha256}
    return f"sweep-{name}-{fingerprint(key)}"


def _searcher(name: str, sweep: SweepSpec, steps: int, journal: Path) -> GenflowOptunaSearch:
    # Optuna ignores OptunaSearch(seed=...) when given a sampler: seed the sampler itself
    sampler = (optuna.samplers.TPESampler(seed=sweep.seed) if sweep.search == "tpe"
               else optuna.samplers.RandomSampler(seed=sweep.seed))
    return GenflowOptunaSearch(metric=sweep.metric, mode=metric_mode(sweep), sampler=sampler,
                               study_name=study_name(name), storage=JournalStorage(JournalFileBackend(str(journal))),
                               full_steps=steps, asha_stopped=sweep.asha_stopped, max_trials=sweep.trials)


def study_name(name: str) -> str:
    return f"genflow-{name}"


def _scheduler(sweep: SweepSpec, steps: int):
    if sweep.scheduler == "fifo":
        return FIFOScheduler()
    return ASHAScheduler(time_attr="step", metric=sweep.metric, mode=metric_mode(sweep), max_t=steps,
                         grace_period=sweep.grace_steps, reduction_factor=sweep.reduction_factor)


def run_sweep(name: str, sweep: SweepSpec, base: WorkerConfig, featurenet_dir: str | Path, ray_spec,
              log=print) -> Path:
    """Run (or resume) the sweep to its end; return the experiment directory (journal + ledger)."""
    init_ray(ray_spec)
    storage = storage_path(ray_spec)
    if "://" in storage:
        raise ConfigError(f"ray.storage_path: a sweep needs a filesystem path (local, or NFS shared by the "
                          f"nodes) for its Optuna journal and trial markers; got {storage!r}")
    run = experiment_name(name, sweep, base)
    experiment = Path(storage) / run
    steps = sweep.steps or base.steps
    ledger = experiment / "ledger"
    ledger.mkdir(parents=True, exist_ok=True)
    fixed = {"base": base.to_dict(), "sweep": sweep.model_dump(mode="json"), "ledger": str(ledger),
             "featurenet_dir": str(Path(featurenet_dir).resolve())}
    if sweep.workers_per_trial == 0:
        trainable = tune.with_resources(tune.with_parameters(_trial_in_process, **fixed), {"cpu": sweep.cpus_per_trial})
    else:
        # the trials' Train runs live inside the experiment, so they go when it goes
        ray_args = {"use_gpu": ray_spec.use_gpu, "storage": str(experiment / "train"),
                    "max_failures": ray_spec.max_failures, "placement_strategy": ray_spec.placement_strategy}
        # the trial function only drives its TorchTrainer, whose workers hold the CPUs (Tune
        # refuses an empty request, hence a token share)
        trainable = tune.with_resources(tune.with_parameters(_trial_with_train, ray_spec=ray_args, run=run, **fixed),
                                        {"cpu": 0.001})
    if tune.Tuner.can_restore(str(experiment)):
        log(f"[sweep {name}] resuming {experiment}")
        tuner = tune.Tuner.restore(str(experiment), trainable=trainable, resume_unfinished=True,
                                   resume_errored=False, restart_errored=False)
    else:
        space = {key: _domain(dim) for key, dim in resolved_space(sweep, base.spec).items()}
        width = concurrency(sweep)
        log(f"[sweep {name}] {sweep.trials} trials of {sweep.model}, {width} at a time, "
            f"{sweep.search} + {sweep.scheduler}, metric {sweep.metric} ({metric_mode(sweep)})")
        tuner = tune.Tuner(
            trainable, param_space=space,
            tune_config=tune.TuneConfig(search_alg=_searcher(name, sweep, steps, experiment / JOURNAL),
                                        scheduler=_scheduler(sweep, steps), num_samples=sweep.trials,
                                        max_concurrent_trials=width, reuse_actors=sweep.workers_per_trial == 0,
                                        trial_dirname_creator=trial_dirname),
            run_config=tune.RunConfig(name=run, storage_path=storage, verbose=0,
                                      callbacks=[Ledger(name, sweep.metric, sweep.trials, ledger, log)],
                                      failure_config=tune.FailureConfig(max_failures=0)))
    # genflow builds its table from the ledger; Tune's result files are not written, so its
    # end-of-run "Failed to fetch metrics" warning would only alarm
    logging.getLogger("ray.tune.analysis.experiment_analysis").setLevel(logging.ERROR)
    tuner.fit()
    return experiment

