"""Ray Tune integration: with tune_ledger.py, the only place a sweep imports Ray Tune and Optuna.

A sweep is a ``Tuner`` over a *function* trainable (the Train V2 pattern;
``Tuner(TorchTrainer)`` no longer works). Each trial either trains inside its
own process (``workers_per_trial: 0``, no per-trial Ray Train start-up, which
is what fits a 2-core machine) or launches a ``TorchTrainer`` with
``workers_per_trial`` DDP workers whose rank-0 reports reach Tune through
``TuneReportCallback``. Optuna proposes (seeded TPE or random sampler, through
genflow's journal: tune_ledger.JournalSearcher) and ASHA stops weak trials early.

genflow's record of the sweep lives in ``ray.storage_path/sweep-<name>-<fingerprint>``,
outside DVC's outputs; the fingerprint covers the sweep, the base model and the data, so
changed params start afresh. A killed sweep rerun with the same params resumes from that
record (tune_ledger.py), never from Ray Tune's own saved state: Tune's experiment directory,
where Tune writes its pickles, is a private temporary directory of the driver's machine,
made anew by each run and removed after it, so nothing Tune pickled ever sits in the
(often shared) storage path to be forged, and nothing is unpickled from there.
"""
from __future__ import annotations

import contextlib
import json
import logging
import os
import shutil
import socket
import sys
import tempfile
import time
from pathlib import Path
from types import SimpleNamespace
from typing import Any, Iterator

import ray
import ray.train
from ray import tune
from ray.train import ScalingConfig
from ray.train.torch import TorchTrainer
from ray.tune.schedulers import ASHAScheduler, FIFOScheduler

from genflow.config import fingerprint
from genflow.errors import ConfigError
from genflow.integrations import ray_pbt
from genflow.integrations.ray_session import init_ray, storage_path, worker_bar
from genflow.integrations.ray_train import run_from
# JOURNAL: genflow.launch imports it from here
from genflow.integrations.tune_ledger import (JOURNAL, LEDGER, TRIAL_KEY, JournalSearcher, Ledger, LedgerReplay,
                                              append_result, open_study, reconcile, record_start, results, trial_key)
from genflow.io import remove_stale_temporaries, write_json
from genflow.sweep.space import SweepSpec, resolved_space
from genflow.sweep.trial import Probe, ProbeReporter, metric_mode, trial_config
from genflow.train import checkpoint
from genflow.train.checkpoint_store import CheckpointStore
from genflow.train.worker import checkpoint_meta, run_worker
from genflow.train.worker_config import WorkerConfig

# Tune's own CSV/JSON/TensorBoard loggers: genflow keeps its own ledger (tune_ledger.py), and
# tensorboardX is not installed; set before Tune reads it
os.environ.setdefault("TUNE_DISABLE_AUTO_CALLBACK_LOGGERS", "1")
# Tune's periodic snapshot of its state is never read back (genflow resumes from its ledger)
os.environ.setdefault("TUNE_GLOBAL_CHECKPOINT_S", "600")
# what Ray Tune saves to restore an experiment from (tuner.pkl, searcher-state-*.pkl,
# callback-states-*.pkl, error.pkl; experiment_state-*.json embeds cloudpickled trial fields,
# search_gen_state-*.json and basic-variant-state-*.json are cloudpickles under a .json name)
RAY_STATE_FILES = ("*.pkl", "experiment_state-*.json", "search_gen_state-*.json", "basic-variant-state-*.json")


def trial_dirname(trial) -> str:
    """Tune's directory of a trial: ``trial_0007_<Tune's id>``, named after its Optuna number."""
    return f"{trial_key(trial.config[TRIAL_KEY])}_{trial.trial_id}"


def _trial_of(params: dict[str, Any]) -> tuple[str, dict[str, Any]]:
    """The trial's ledger key, and its searched values (the config less genflow's own key)."""
    overrides = dict(params)
    return trial_key(overrides.pop(TRIAL_KEY)), overrides


class TrialRecord:
    """What a trial writes to the ledger: each result, before its checkpoint; the results it had
    recorded before a kill, reported again first (tune_ledger.LedgerReplay); its wall time
    summed over its runs."""

    def __init__(self, ledger: str, key: str, report):
        self.ledger, self.key = ledger, key
        self.replay = LedgerReplay(ledger, key, report)
        self.started = time.perf_counter()

    def row(self, metrics: dict[str, Any]) -> dict[str, Any]:
        """Replays what came before ``metrics``, then returns them stamped and recorded."""
        self.replay.before(metrics["step"])
        earlier = [r.get("wall_s") or 0.0 for r in self.replay.recorded if r["step"] < metrics["step"]]
        row = {**metrics, "wall_s": (max(earlier) if earlier else 0.0) + time.perf_counter() - self.started}
        append_result(self.ledger, self.key, row)
        return row


def _trial_in_process(params: dict[str, Any], *, base: dict, sweep: dict, featurenet_dir: str,
                      ledger: str, attempt: int) -> None:
    """A trial that trains in its own (Tune actor) process.

    Its checkpoints live in ``ledger/<trial>/``, the newest two, each swapped in whole: a rerun
    of the sweep resumes it from the newest usable one."""
    key, overrides = _trial_of(params)
    record_start(ledger, key, attempt)
    spec = SweepSpec.model_validate(sweep)
    config = trial_config(WorkerConfig.from_dict(base), overrides, spec).replace(trial=key)
    meta, own = checkpoint_meta(config), CheckpointStore(Path(ledger) / key)
    record = TrialRecord(ledger, key, tune.report)

    def emit(metrics, state, log):
        row = record.row(metrics)  # the ledger first: it is never behind a checkpoint
        own.save(state, log, meta)
        tune.report(row)

    reporter = ProbeReporter(config, Probe(config.data_dir, featurenet_dir, spec), emit, bar=worker_bar(config))
    run_worker(config, reporter, resume_dir=own.checkpoints())
    record.replay.finish()  # resumed at its last step: its final result, reported again


def _train_worker_loop(loop_config: dict[str, Any]) -> None:
    """What each TorchTrainer worker of a trial runs; rank 0 probes, records and checkpoints."""
    config = WorkerConfig.from_dict(loop_config["config"])
    spec = SweepSpec.model_validate(loop_config["sweep"])
    rank = ray.train.get_context().get_world_rank()
    meta = checkpoint_meta(config)
    # every rank replays: a report is a barrier, so all ranks report equally often
    record = TrialRecord(loop_config["ledger"], loop_config["key"], lambda row: ray.train.report(row, checkpoint=None))

    def emit(metrics, state, log):
        if state is None:  # only rank 0 has the state and the score
            record.replay.before(metrics["step"])
            ray.train.report(metrics, checkpoint=None)
            return
        row = record.row(metrics)
        with tempfile.TemporaryDirectory(prefix="genflow-trial-") as tmp:
            checkpoint.save(tmp, state, log, meta)
            ray.train.report(row, checkpoint=ray.train.Checkpoint.from_directory(tmp))

    probe = Probe(config.data_dir, loop_config["featurenet_dir"], spec) if rank == 0 else None
    reporter = ProbeReporter(config, probe, emit, rank=rank, bar=worker_bar(config))
    run_from(ray.train.get_checkpoint(), config, reporter)
    record.replay.finish()


def _trial_with_train(params: dict[str, Any], *, base: dict, sweep: dict, featurenet_dir: str, ledger: str,
                      attempt: int, ray_spec: dict, run: str) -> None:
    """A trial that launches its own TorchTrainer (the Ray Train V2 + Tune pattern)."""
    from ray.tune.integration.ray_train import TuneReportCallback

    key, overrides = _trial_of(params)
    record_start(ledger, key, attempt)
    spec = SweepSpec.model_validate(sweep)
    config = trial_config(WorkerConfig.from_dict(base), overrides, spec).replace(trial=key)
    trainer = TorchTrainer(
        _train_worker_loop,
        train_loop_config={"config": config.to_dict(), "sweep": sweep, "featurenet_dir": featurenet_dir,
                           "ledger": ledger, "key": key},
        scaling_config=ScalingConfig(num_workers=spec.workers_per_trial, use_gpu=ray_spec["use_gpu"],
                                     resources_per_worker={"CPU": spec.cpus_per_trial},
                                     placement_strategy=ray_spec["placement_strategy"]),
        run_config=ray.train.RunConfig(
            # stable per trial: a rerun of the sweep resumes its Train run's checkpoint
            name=f"{run}-{key}", storage_path=ray_spec["storage"],
            callbacks=[TuneReportCallback()],
            failure_config=ray.train.FailureConfig(max_failures=ray_spec["max_failures"], controller_failure_limit=3),
            checkpoint_config=ray.train.CheckpointConfig(num_to_keep=2)),
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
    # "record": the layout of genflow's record (tune_ledger.py); an older one is not resumed
    key = {"sweep": sweep.model_dump(mode="json"), "spec": base.spec, "data": base.data_manifest_sha256, "record": 2}
    return f"sweep-{name}-{fingerprint(key)}"


def study_name(name: str) -> str:
    return f"genflow-{name}"


class LedgerASHA(ASHAScheduler):
    """ASHA that also knows the scores of the trials that ended in an earlier run of a killed
    sweep, so that its rungs' cutoffs are what they were (a resumed trial replays its own)."""

    def __init__(self, *, time_attr: str, **options):
        super().__init__(time_attr=time_attr, **options)
        self.time_attr = time_attr  # ASHA keeps it in a private attribute

    def remember(self, histories: dict[str, list[tuple[int, float]]]) -> None:
        """Feed each ended trial's results through the scheduler's public hooks, as Tune fed them
        while it ran: added, every result in order, completed with its last one (which is how a
        result at ``max_t`` reaches the rungs)."""
        for key, history in histories.items():
            if not history:
                continue
            ended = SimpleNamespace(trial_id=f"ended-{key}")  # ASHA only reads the trial's id
            self.on_trial_add(None, ended)
            for step, value in history:
                self.on_trial_result(None, ended, {self.time_attr: step, self.metric: value})
            step, value = history[-1]
            self.on_trial_complete(None, ended, {self.time_attr: step, self.metric: value})


def _scheduler(sweep: SweepSpec, steps: int, ledger: Path, ended: list[str]):
    if sweep.scheduler == "fifo":
        return FIFOScheduler()
    asha = LedgerASHA(time_attr="step", metric=sweep.metric, mode=metric_mode(sweep), max_t=steps,
                      grace_period=sweep.grace_steps, reduction_factor=sweep.reduction_factor)
    asha.remember({key: [(r["step"], r[sweep.metric]) for r in results(ledger, key) if r.get(sweep.metric) is not None]
                   for key in ended})
    return asha


def _trainable(sweep: SweepSpec, fixed: dict[str, Any], ray_spec, experiment: Path, run: str):
    if sweep.workers_per_trial == 0:
        return tune.with_resources(tune.with_parameters(_trial_in_process, **fixed), {"cpu": sweep.cpus_per_trial})
    # the trials' Train runs live inside the experiment, so they go when it goes
    ray_args = {"use_gpu": ray_spec.use_gpu, "storage": str(experiment / "train"),
                "max_failures": ray_spec.max_failures, "placement_strategy": ray_spec.placement_strategy}
    # the trial function only drives its TorchTrainer, whose workers hold the CPUs (Tune
    # refuses an empty request, hence a token share)
    return tune.with_resources(tune.with_parameters(_trial_with_train, ray_spec=ray_args, run=run, **fixed),
                               {"cpu": 0.001})


def report_foreign_ray_state(name: str, experiment: Path) -> None:
    """Say so, once, when the experiment holds files of Ray Tune's saved state: genflow never
    writes them there (and never reads them), so they were put there by someone else, or left
    by a genflow from before resuming was genflow's own. They are left alone and ignored."""
    found = sorted(str(path.relative_to(experiment)) for pattern in RAY_STATE_FILES for path in experiment.rglob(pattern))
    if found:
        shown = ", ".join(found[:5]) + (f" and {len(found) - 5} more" if len(found) > 5 else "")
        sys.stderr.write(f"[genflow] sweep {name}: ignoring {len(found)} file(s) of Ray Tune's saved state in "
                         f"{experiment} ({shown}): never unpickled; the sweep resumes from genflow's own journal "
                         f"and ledger\n")
        sys.stderr.flush()


def next_attempt(experiment: Path) -> int:
    """1 for the first run of the sweep, then 2, 3... (the ledger tells the runs apart)."""
    try:
        previous = json.loads((experiment / "attempt.json").read_text()).get("attempt")
    except (OSError, ValueError, AttributeError):  # none yet (or damaged: the count only labels runs)
        previous = 0
    attempt = (previous if isinstance(previous, int) else 0) + 1
    write_json(experiment / "attempt.json", {"attempt": attempt})
    return attempt


@contextlib.contextmanager
def private_tune_dir(run: str) -> Iterator[Path]:
    """Where Tune keeps this run's experiment (its pickles): a directory only this user can open
    (mkdtemp), named so that the next run on this host removes it if this one is killed."""
    base = Path(tempfile.gettempdir()) / f"genflow-tune-{run}"
    remove_stale_temporaries(base)
    path = Path(tempfile.mkdtemp(prefix=f".{base.name}.{socket.gethostname()}-{os.getpid()}.", suffix=".tmp",
                                 dir=base.parent))
    try:
        yield path
    finally:
        shutil.rmtree(path, ignore_errors=True)


def _tuner(name: str, sweep: SweepSpec, base: WorkerConfig, featurenet_dir: str | Path, ray_spec, experiment: Path,
           plan: dict[str, Any], tune_dir: Path, log) -> tune.Tuner:
    steps, ledger = sweep.steps or base.steps, experiment / LEDGER
    fixed = {"base": base.to_dict(), "sweep": sweep.model_dump(mode="json"), "ledger": str(ledger),
             "featurenet_dir": str(Path(featurenet_dir).resolve()), "attempt": plan["attempt"]}
    space = resolved_space(sweep, base.spec)
    if sweep.scheduler == "pbt":  # Ray's PBT takes no searcher: the population is drawn up front
        searcher, param_space = ray_pbt.population(plan["study"], space, sweep.trials)
        trainable, scheduler, kept = ray_pbt.trainable(sweep, fixed), ray_pbt.scheduler(sweep, space, steps), \
            ray_pbt.checkpoint_config()
        width = None  # the CPUs bound it (Tune ignores a limit with a fixed-config generator)
    else:
        trainable, param_space = _trainable(sweep, fixed, ray_spec, experiment, experiment.name), {}
        searcher = JournalSearcher(plan["study"], space, sweep, steps, plan["rerun"])
        scheduler, kept, width = _scheduler(sweep, steps, ledger, plan["ended"]), None, plan["width"]
    return tune.Tuner(
        trainable, param_space=param_space,
        tune_config=tune.TuneConfig(search_alg=searcher, scheduler=scheduler,
                                    num_samples=len(plan["rerun"]) + plan["new"], max_concurrent_trials=width,
                                    reuse_actors=sweep.workers_per_trial == 0, trial_dirname_creator=trial_dirname),
        run_config=tune.RunConfig(name="tune", storage_path=str(tune_dir), verbose=0, checkpoint_config=kept,
                                  callbacks=[Ledger(name, sweep.metric, sweep.trials, ledger, plan["attempt"], log)],
                                  failure_config=tune.FailureConfig(max_failures=0)))


def _plan(name: str, sweep: SweepSpec, experiment: Path, steps: int, log) -> dict[str, Any]:
    """This run of the sweep, from genflow's record: what ended, what runs again, how many to propose."""
    report_foreign_ray_state(name, experiment)
    attempt = next_attempt(experiment)
    opened = open_study(experiment / JOURNAL, study_name(name), sweep)
    study = opened.study
    rerun = reconcile(opened, experiment / LEDGER, sweep, steps)
    if sweep.scheduler == "pbt" and rerun:
        refuse_pbt_resume(name, experiment, len(study.trials) - len(rerun), len(rerun))
    plan = {"attempt": attempt, "study": opened, "rerun": rerun, "width": concurrency(sweep),
            "ended": [trial_key(t.number) for t in study.trials if t.number not in rerun],
            "new": max(0, sweep.trials - len(study.trials))}
    log(f"[sweep {name}] {sweep.trials} trials of {sweep.model}, {plan['width']} at a time, "
        f"{sweep.search} + {sweep.scheduler}, metric {sweep.metric} ({metric_mode(sweep)})")
    if study.trials:
        log(f"[sweep {name}] resuming {experiment}: {len(plan['ended'])} trial(s) ended, {len(rerun)} to run again "
            f"(each from its newest usable checkpoint), {plan['new']} to propose")
    return plan


def run_sweep(name: str, sweep: SweepSpec, base: WorkerConfig, featurenet_dir: str | Path, ray_spec,
              log=print) -> Path:
    """Run (or resume) the sweep to its end; return the experiment directory (journal + ledger)."""
    init_ray(ray_spec)
    storage = storage_path(ray_spec)
    if "://" in storage:
        raise ConfigError(f"ray.storage_path: a sweep needs a filesystem path (local, or NFS shared by the "
                          f"nodes) for its Optuna journal and trial markers; got {storage!r}")
    experiment = Path(storage) / experiment_name(name, sweep, base)
    (experiment / LEDGER).mkdir(parents=True, exist_ok=True)
    plan = _plan(name, sweep, experiment, sweep.steps or base.steps, log)
    if not plan["rerun"] and not plan["new"]:  # killed after its last trial ended: only the outputs are left
        return experiment
    with private_tune_dir(experiment.name) as tune_dir:
        tuner = _tuner(name, sweep, base, featurenet_dir, ray_spec, experiment, plan, tune_dir, log)
        # genflow builds its table from the ledger; Tune's result files are not written, so its
        # end-of-run "Failed to fetch metrics" warning would only alarm
        logging.getLogger("ray.tune.analysis.experiment_analysis").setLevel(logging.ERROR)
        tuner.fit()
    if sweep.scheduler == "pbt":  # no searcher told Optuna how each member ended: the ledger does
        reconcile(plan["study"], experiment / LEDGER, sweep, sweep.steps or base.steps)
    return experiment


def refuse_pbt_resume(name: str, experiment: Path, ended: int, unfinished: int) -> None:
    """A killed PBT sweep is not resumed: its members' exploits were decided on the scores of the
    whole population at each round, by a scheduler whose state only Ray's pickles hold (which
    genflow never restores); resuming each member alone would continue a population that PBT
    never decided on. Nothing is deleted: the record stays for inspection."""
    raise ConfigError(f"sweeps.{name}: a PBT sweep was interrupted here ({ended} trial(s) ended, {unfinished} "
                      f"unfinished; record in {experiment}). A PBT population cannot be resumed: its exploit "
                      f"decisions depend on every member's scores at each round and on Ray's scheduler state, "
                      f"which genflow never restores. Delete {experiment} to run the sweep afresh "
                      f"(docs/sweeps.md, 'Population Based Training')")
