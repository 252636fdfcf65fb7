"""Population Based Training on Ray Tune (``scheduler: pbt``): the scheduler, the population, the trial.

Ray Tune's ``PopulationBasedTraining`` decides; genflow's checkpoints carry what it moves. A
trial reports a full genflow checkpoint (weights, optimisers, EMA, RNG, step: it resumes bit
for bit) with every probe score. When PBT makes a weak trial exploit a strong one, Tune
restarts the weak trial with the strong one's newest checkpoint and config, perturbed; the
trial then loads that checkpoint into an engine built from its new config (so n_critic and
r1_gamma take effect there) and sets the optimisers' lr and betas (``Engine.apply_settings``),
which loading would otherwise restore to the donor's. Each change is a line of the trial's
history (genflow.sweep.pbt): the step, the donor, the sha256 of the donor's checkpoint, the
values.

Synchronous PBT (``synch=True``): a round waits until every trial reached it, so a donor's
checkpoint is always from the round's step (every trial trains exactly ``steps`` steps: the
sweep's compute is trials x steps) and each round decides on the same scores whatever order
they arrived in. Ray's PBT draws its choices (donor, perturbation) from Python's ``random``;
GenflowPBT gives those draws a stream of their own, seeded with the sweep's seed.

The population is drawn by the sweep's seeded Optuna sampler (one proposal per trial, all
before any score exists) and kept in the journal; Ray's PBT refuses a searcher, so Tune gets
the proposals as fixed points. A killed PBT sweep is not resumed (genflow.integrations.ray_tune
refuses it, docs/sweeps.md says why).
"""
from __future__ import annotations

import random
import tempfile
import time
from typing import Any

import torch
from ray import tune
from ray.tune.schedulers import PopulationBasedTraining
from ray.tune.search.basic_variant import BasicVariantGenerator

from genflow.integrations.tune_ledger import TRIAL_KEY, append_result, distribution, record_start, results, trial_key
from genflow.sweep.pbt import ClipToRange, mutation, record_config, read_history
from genflow.sweep.space import SweepSpec, explored_keys
from genflow.sweep.trial import Probe, ProbeReporter, metric_mode, trial_config
from genflow.train import checkpoint
from genflow.train.checkpoint_store import restore_into
from genflow.train.worker import build_engine, checkpoint_meta
from genflow.train.worker_config import WorkerConfig


class GenflowPBT(PopulationBasedTraining):
    """Ray's synchronous PBT with two changes: a trial that exploits keeps its own genflow trial
    number (Ray's explore copies the donor's whole config, genflow's number included), and no
    round is held at a trial's last step (it ends there: an exploit would copy weights that are
    never trained or scored)."""

    def __init__(self, *, steps: int, seed: int, **options):
        super().__init__(**options)
        self.steps = steps
        # Ray's PBT draws donors and perturbations from Python's global ``random``, which other
        # code of the driver (Tune, Ray) also draws from, in an order that varies from run to
        # run; PBT's draws get a stream of their own, seeded, swapped in around each decision
        self._random_state = random.Random(seed).getstate()

    def _get_new_config(self, trial, trial_to_clone):
        # Ray's own hook (pbt.py) for the donor's config, perturbed; the recipient stays itself
        config, operations = super()._get_new_config(trial, trial_to_clone)
        return {**config, TRIAL_KEY: trial.config[TRIAL_KEY]}, operations

    def on_trial_result(self, tune_controller, trial, result: dict) -> str:
        if result.get("step", 0) >= self.steps:
            return self.CONTINUE
        outside = random.getstate()
        random.setstate(self._random_state)
        try:
            return super().on_trial_result(tune_controller, trial, result)
        finally:
            self._random_state = random.getstate()
            random.setstate(outside)


def scheduler(sweep: SweepSpec, space: dict, steps: int) -> GenflowPBT:
    explored = {key: space[key] for key in explored_keys(space)}
    return GenflowPBT(steps=steps, seed=sweep.seed, time_attr="step", metric=sweep.metric, mode=metric_mode(sweep),
                      perturbation_interval=sweep.interval, quantile_fraction=sweep.quantile_fraction,
                      resample_probability=sweep.resample_probability,
                      hyperparam_mutations={key: mutation(dim) for key, dim in explored.items()},
                      custom_explore_fn=ClipToRange(explored), synch=True, log_config=False)


def population(opened, space: dict, size: int) -> tuple[BasicVariantGenerator, dict[str, Any]]:
    """The initial population: ``size`` proposals of the seeded sampler (asked now, kept in the
    journal), handed to Tune as fixed configs (with a param space naming their keys, which Tune
    requires of fixed configs). All of them at once: a generator's limit would hold members
    back until others *finished*, and PBT pauses and rotates members itself when the CPUs
    (``cpus_per_trial``) hold fewer than the population."""
    distributions = {key: distribution(dim) for key, dim in space.items()}
    for _ in range(size - len(opened.study.trials)):
        opened.study.ask(distributions)
    points = [{**trial.params, TRIAL_KEY: trial.number} for trial in opened.study.trials[:size]]
    return BasicVariantGenerator(points_to_evaluate=points), dict.fromkeys(points[0])


class PbtRecord:
    """What a PBT trial writes: each probe result in the ledger (with the sha256 of the checkpoint
    reported with it), its wall time summed over its restarts (PBT stops and restarts trials)."""

    def __init__(self, ledger: str, key: str):
        self.ledger, self.key, self.started = ledger, key, time.perf_counter()
        earlier = [r.get("wall_s") or 0.0 for r in results(ledger, key)]
        self.before = max(earlier) if earlier else 0.0

    def row(self, metrics: dict[str, Any], state_sha256: str) -> dict[str, Any]:
        row = {**metrics, "state_sha256": state_sha256, "wall_s": self.before + time.perf_counter() - self.started}
        append_result(self.ledger, self.key, row)
        return row


def applied(engine) -> dict[str, Any]:
    """What the running engine trains with, read back from it (the optimisers' param_groups, the
    phases, the loss's spec): the history records it beside the values asked for."""
    groups = [optimizer.param_groups[0] for optimizer in engine.optimizers]
    return {"phases": [phase.name for phase in engine.phases], "lr": [g["lr"] for g in groups],
            "betas": [list(g["betas"]) for g in groups], "repeats": [phase.repeats for phase in engine.phases],
            "r1_gamma": getattr(engine.model.spec, "r1_gamma", None)}


def _start(config: WorkerConfig, key: str, ledger: str, values: dict[str, Any]):
    """The trial's engine: fresh, or from the checkpoint Tune hands it (its own after a pause,
    a donor's after an exploit), then set to this config's optimiser settings."""
    engine, data = build_engine(config)
    given = tune.get_checkpoint()
    if given is None:
        record_config(ledger, key, 0, values, applied=applied(engine))
        return engine, data
    with given.as_directory() as directory:
        state, log, meta = checkpoint.load(directory)
    restore_into(engine, state, log)
    engine.apply_settings()
    donor = meta.get("trial")
    if donor != key:  # an exploit: the donor's weights, optimisers, EMA, RNG and step, under new values
        record_config(ledger, key, engine.step, values, donor=donor, donor_state_sha256=meta["state_sha256"],
                      applied=applied(engine))
    return engine, data


def pbt_trial(params: dict[str, Any], *, base: dict, sweep: dict, featurenet_dir: str, ledger: str,
              attempt: int) -> None:
    """One member of the population, trained in its (Tune actor) process; restarted by Tune
    at every pause and exploit, each time from the checkpoint Tune gives it."""
    key, overrides = trial_key(params[TRIAL_KEY]), {k: v for k, v in params.items() if k != TRIAL_KEY}
    spec = SweepSpec.model_validate(sweep)
    config = trial_config(WorkerConfig.from_dict(base), overrides, spec).replace(trial=key)
    if not read_history(ledger, key):
        record_start(ledger, key, attempt)
    torch.set_num_threads(config.threads)
    engine, data = _start(config, key, ledger, overrides)
    meta, record = {**checkpoint_meta(config), "trial": key}, PbtRecord(ledger, key)

    def emit(metrics, state, log):
        with tempfile.TemporaryDirectory(prefix="genflow-pbt-") as tmp:
            checkpoint.save(tmp, state, log, meta)
            row = record.row(metrics, checkpoint.verify(tmp)["state_sha256"])
            tune.report(row, checkpoint=tune.Checkpoint.from_directory(tmp))

    reporter = ProbeReporter(config, Probe(config.data_dir, featurenet_dir, spec), emit)
    try:
        engine.fit(data, reporter)
    finally:
        reporter.progress.close()


def trainable(sweep: SweepSpec, fixed: dict[str, Any]):
    return tune.with_resources(tune.with_parameters(pbt_trial, **fixed), {"cpu": sweep.cpus_per_trial})


def checkpoint_config():
    # a donor's newest checkpoint must outlive the round that copies it (Ray warns below 3)
    return tune.CheckpointConfig(num_to_keep=3)
