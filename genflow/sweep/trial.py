"""One sweep trial, Ray-free: its config, the probe metric, and a reporter that probes.

A trial is an ordinary training run of the sweep's base model with some keys
replaced. Every ``report_every`` steps rank 0 scores the current weights (EMA
generator where there is one) on the *validation* split, never the test split
that the evaluate stage reports: the sweep must not select on the numbers it
is later judged by. That score is what ASHA compares and Optuna learns from.
"""
from __future__ import annotations

import math
import time
from typing import Any, Callable

from pydantic import ValidationError

from genflow.config import fingerprint
from genflow.errors import ConfigError, DivergenceError
from genflow.evaluate.probe import Probe  # noqa: F401  (re-exported: sweeps and tests import it from here)
from genflow.models import registry
from genflow.models.plugins import validate_spec
from genflow.sweep.space import METRIC_MODES, SweepSpec, set_dotted
from genflow.train.engine import PrintReporter
from genflow.train.worker_config import WorkerConfig


def trial_config(base: WorkerConfig, overrides: dict[str, Any], sweep: SweepSpec) -> WorkerConfig:
    """The worker config of one trial: the base model's with ``overrides`` (dotted keys) applied,
    checked as the model's params entry is (its own schema, then against its data)."""
    spec = base.spec
    for key, value in sorted(overrides.items()):
        spec = set_dotted(spec, key, value)
    steps = sweep.steps or spec["train"]["steps"]
    spec = set_dotted(spec, "train.steps", steps)
    spec = set_dotted(spec, "train.checkpoint_every", sweep.report_every)
    spec = set_dotted(spec, "train.log_every", min(spec["train"]["log_every"], sweep.report_every))
    spec = set_dotted(spec, "seeds", [sweep.seed])
    # a trial is probed by its reporter at report_every; no probes, selection or stop of its own
    for key, value in (("eval_every", 0), ("select", "last"), ("patience", 0)):
        spec = set_dotted(spec, f"train.{key}", value)
    try:
        checked = validate_spec(spec)
    except ValidationError as exc:
        raise ConfigError(f"trial config {overrides} is invalid: {exc.errors()[0]['msg']}") from None
    problems = checked.check_data(base.name, base.data_facts)
    if problems:
        raise ConfigError(f"trial config {overrides} is invalid: {'; '.join(problems)}")
    spec = checked.model_dump(mode="json")
    # as worker_config names a run: a changed train.init_from source never resumes a stale trial
    source = {"init_sha256": base.init_from["sha256"]} if base.init_from else {}
    return base.replace(spec=spec, seed=sweep.seed, threads=sweep.threads_per_trial,
                        fingerprint=fingerprint({"spec": spec, "seed": sweep.seed, **source}))


class ProbeReporter(PrintReporter):
    """Scores every checkpoint on rank 0, then hands metrics (+ state) to ``emit``.

    ``emit(metrics, state, log)`` is the Ray side: ``ray.tune.report`` for a trial that
    trains in its own process, ``ray.train.report`` on TorchTrainer workers. Every rank
    emits at the same steps (a Train report is a barrier); only rank 0 has the state."""

    def __init__(self, config: WorkerConfig, probe: Probe, emit: Callable, rank: int = 0, bar=None):
        super().__init__(config.label, bar if rank == 0 else None)
        self.total = config.steps
        self.probe, self.emit, self.rank = probe, emit, rank
        spec = validate_spec(config.spec)
        self.model = registry.build(spec, tuple(config.data_shape), config.num_classes) if rank == 0 else None
        self.metric = probe.metric if probe is not None else None

    def on_log(self, step, row) -> None:
        if self.rank == 0:
            super().on_log(step, row)

    def on_checkpoint(self, step, state, log, final) -> None:
        # reported_at orders the trials by when they finished (best-so-far plots)
        metrics: dict[str, Any] = {"step": step, "reported_at": time.time()}
        if state is not None:
            self.model.load_state_dict(state["model"])
            value = self.probe(self.model)
            if not math.isfinite(value):
                raise DivergenceError(step, f"probe {self.metric} is {value}")
            metrics[self.metric] = value
            if not self.progress.live:  # a bar shows the losses; the probe goes to lines only
                self.progress.note(f"step {step}/{self.total} probe {self.metric}={value:.5g}")
        self.emit(metrics, state, log)


def metric_mode(sweep: SweepSpec) -> str:
    return METRIC_MODES[sweep.metric]


def failure_reason(error: BaseException | str | None) -> str:
    """One line for the trials table: the genflow error if there is one, else the last line."""
    text = str(error or "").strip()
    for line in reversed(text.splitlines()):
        for marker in ("DivergenceError: ", "ConfigError: ", "DataError: ", "GenflowError: "):
            if marker in line:
                return line.split(marker, 1)[1].strip()
    return text.splitlines()[-1].strip() if text else "unknown"
