"""genflow's own record of a sweep: what a killed sweep resumes from, instead of Ray Tune's state.

Ray Tune can restore a killed experiment (``Tuner.restore``), but from pickles it wrote into
the storage path (``tuner.pkl``, ``experiment_state-*.json`` with cloudpickled fields, the
searcher's and callbacks' ``*.pkl``): a file anyone who can write that often shared path can
forge, and restoring would run it. Its snapshot also lags (it is taken every few seconds),
so a proposal Optuna had made just before a kill was unknown to the restored experiment and
came back as a lost trial. So genflow never restores Tune. Each run of the sweep stage is a
fresh Tune experiment in a private temporary directory, fed from this record, which lives in
``ray.storage_path/sweep-<name>-<fingerprint>/`` and holds no pickle:

* ``study.journal``: the Optuna study (JSON lines): every proposal with its trial number and
  values, each probe score, how each trial ended;
* ``ledger/trial_<n>.jsonl``: each probe result, appended by the trial itself *before* the
  checkpoint of that step is written, so the ledger is never behind a checkpoint;
* ``ledger/trial_<n>/step_<N>/``: a trial's checkpoints (``workers_per_trial: 0``);
  ``train/<run>-trial_<n>/``: Ray Train's (otherwise). Loaded weights-only and checked
  (genflow.train.checkpoint_store.resume);
* ``ledger/trial_<n>.done.json``: written by the driver the moment the trial ended;
* ``ledger/trial_<n>.starts.jsonl``: one line each time the trial starts (an audit of
  "none run twice").

On a rerun (``reconcile``), a proposal whose trial ended is kept as it ended; every other
proposal runs again under the same number and values, resuming from its newest usable
checkpoint and re-reporting its recorded scores first (so ASHA decides as it did); new
proposals are asked for until the journal holds ``trials``. Nothing is lost, nothing that
ended runs again.
"""
from __future__ import annotations

import json
import os
import socket
import time
from pathlib import Path
from typing import Any, Callable, NamedTuple

import numpy as np
import optuna
from optuna.distributions import CategoricalDistribution, FloatDistribution, IntDistribution
from optuna.storages import BaseStorage, JournalStorage
from optuna.storages.journal import JournalFileBackend
from optuna.trial import TrialState
from ray import tune
from ray.tune.search import Searcher

from genflow.io import owner_tag, pid_alive, write_json
from genflow.sweep.pbt import history_table_rows, read_history
from genflow.sweep.space import Dimension, SweepSpec
from genflow.sweep.trial import failure_reason, metric_mode

JOURNAL, LEDGER = "study.journal", "ledger"
TRIAL_KEY = "genflow_trial"  # the Optuna trial number, carried in each Tune trial's config


def trial_key(number: int) -> str:
    """``trial_0003``: the name of Optuna trial number 2 in the ledger (numbered from 1, as the table)."""
    return f"trial_{number + 1:04d}"


def done_path(ledger: str | Path, key: str) -> Path:
    return Path(ledger) / f"{key}.done.json"


def done_mark(ledger: str | Path, key: str) -> dict[str, Any] | None:
    path = done_path(ledger, key)
    try:
        mark = json.loads(path.read_text())
    except (FileNotFoundError, ValueError, UnicodeDecodeError):  # none, or damaged (a kill cannot cut it:
        return None                                                # write_json renames it into place)
    return mark if isinstance(mark, dict) and mark.get("status") in ("finished", "failed") else None


def _append_line(path: Path, row: dict[str, Any]) -> None:
    with open(path, "ab+") as handle:
        cut = handle.tell() > 0 and handle.seek(-1, os.SEEK_END) is not None and handle.read(1) != b"\n"
        # after a line a kill cut short, start a new one: the cut line alone is lost, not this one
        handle.write((b"\n" if cut else b"") + json.dumps(row).encode() + b"\n")
        handle.flush()


def append_result(ledger: str | Path, key: str, row: dict[str, Any]) -> None:
    """Called by the trial, before it checkpoints that step."""
    _append_line(Path(ledger) / f"{key}.jsonl", row)


def record_start(ledger: str | Path, key: str, attempt: int) -> None:
    _append_line(Path(ledger) / f"{key}.starts.jsonl", {"attempt": attempt, "at": time.time()})


def starts(ledger: str | Path, key: str) -> list[dict[str, Any]]:
    return _json_lines(Path(ledger) / f"{key}.starts.jsonl")


def _json_lines(path: Path) -> list[dict[str, Any]]:
    if not path.exists():
        return []
    rows = []
    for line in path.read_text().splitlines():
        try:
            row = json.loads(line)
        except json.JSONDecodeError:  # a line cut by a kill
            continue
        if isinstance(row, dict):
            rows.append(row)
    return rows


def results(ledger: str | Path, key: str) -> list[dict[str, Any]]:
    """The trial's probe results in step order; a step reported again (recomputed after a kill:
    training is deterministic, so the same value) counts once."""
    by_step: dict[int, dict[str, Any]] = {}
    for row in _json_lines(Path(ledger) / f"{key}.jsonl"):
        if isinstance(row.get("step"), int):
            by_step[row["step"]] = row
    return [by_step[step] for step in sorted(by_step)]


class LedgerReplay:
    """Re-reports a resumed trial's recorded results, up to the step it resumes from, before its
    first new one (or at its end, when it resumed at its last step and trains no more): ASHA
    and the searcher then see the same results in the same order as if it had never stopped."""

    def __init__(self, ledger: str | Path, key: str, report: Callable[[dict[str, Any]], None]):
        self.recorded, self.report, self.done = results(ledger, key), report, False

    def before(self, step: float) -> None:
        if self.done:
            return
        self.done = True
        for row in self.recorded:
            if row["step"] < step:
                self.report({k: v for k, v in row.items() if v is not None})

    def finish(self) -> None:
        self.before(float("inf"))


# -- the Optuna side: a deterministic sampler and a searcher driven by the journal ----------------

def _sampler(kind: str, seed: int) -> optuna.samplers.BaseSampler:
    return optuna.samplers.TPESampler(seed=seed) if kind == "tpe" else optuna.samplers.RandomSampler(seed=seed)


class SeededPerTrial(optuna.samplers.BaseSampler):
    """A sampler seeded afresh for each trial number from the sweep's seed.

    A sampler seeded once draws one sequence; rebuilt by a rerun it would start that sequence
    over and propose trial 0's values again. Seeded per number, trial n draws the same values
    in whichever run asks for it (TPE also reads the finished trials, so with several trials
    at once its proposals depend on their order, as they always did)."""

    def __init__(self, kind: str, seed: int):
        self.kind, self.seed = kind, seed
        self._made: dict[int, optuna.samplers.BaseSampler] = {}

    def _for(self, trial) -> optuna.samplers.BaseSampler:
        if trial.number not in self._made:
            seed = int(np.random.SeedSequence([self.seed, trial.number]).generate_state(1)[0])
            self._made[trial.number] = _sampler(self.kind, seed)
        return self._made[trial.number]

    def infer_relative_search_space(self, study, trial):
        return self._for(trial).infer_relative_search_space(study, trial)

    def sample_relative(self, study, trial, search_space):
        return self._for(trial).sample_relative(study, trial, search_space)

    def sample_independent(self, study, trial, param_name, param_distribution):
        return self._for(trial).sample_independent(study, trial, param_name, param_distribution)

    def before_trial(self, study, trial) -> None:
        self._for(trial).before_trial(study, trial)

    def after_trial(self, study, trial, state, values) -> None:
        self._for(trial).after_trial(study, trial, state, values)


def distribution(dim: Dimension) -> optuna.distributions.BaseDistribution:
    if dim.kind == "loguniform":
        return FloatDistribution(*map(float, dim.loguniform), log=True)
    if dim.kind == "uniform":
        return FloatDistribution(*map(float, dim.uniform))
    if dim.kind == "int":
        return IntDistribution(*dim.int)  # both ends included
    return CategoricalDistribution(list(dim.choice))


class JournalLock:
    """The journal's write lock: Optuna's JournalFileOpenLock (an O_EXCL file, safe on NFSv3+),
    except that the file names its holder. A sweep killed while it held the lock (it does for
    each write) left the file behind; Optuna's lock waits out a 30 s grace period for it on every
    rerun, this one removes it at once when its holder was a process of this host that is gone.
    A holder on another host is waited for, up to the same grace period."""

    GRACE_S = 30.0

    def __init__(self, journal: str | Path):
        self.path, self.holder = Path(f"{journal}.lock"), owner_tag()

    def acquire(self) -> bool:
        since = time.monotonic()
        while True:
            try:
                handle = os.open(self.path, os.O_CREAT | os.O_EXCL | os.O_WRONLY)
            except FileExistsError:
                if self._stale(since):
                    self.path.unlink(missing_ok=True)
                else:
                    time.sleep(0.005)
                continue
            with os.fdopen(handle, "w") as lock_file:
                lock_file.write(self.holder)
            return True

    def release(self) -> None:
        self.path.unlink(missing_ok=True)

    def _stale(self, since: float) -> bool:
        try:
            holder = self.path.read_text()
        except (OSError, UnicodeDecodeError):
            return False
        host, _, pid = holder.rpartition("-")
        if host == socket.gethostname() and pid.isdigit():
            return not pid_alive(int(pid))
        return time.monotonic() - since > self.GRACE_S  # another host's, or being written


def journal_storage(journal: str | Path) -> JournalStorage:
    return JournalStorage(JournalFileBackend(str(journal), lock_obj=JournalLock(journal)))


class OpenStudy(NamedTuple):
    """The sweep's Optuna study and the storage genflow opened it on. The storage is kept here
    because ``Study`` has no public accessor for it, and a proposal of an earlier run of the
    sweep is reopened through it (``reopen``) rather than through Optuna's private attributes."""

    study: optuna.Study
    storage: BaseStorage

    def reopen(self, number: int) -> optuna.trial.Trial:
        """Trial ``number`` (still RUNNING in the journal) as a Trial that results are reported to."""
        study_id = self.storage.get_study_id_from_name(self.study.study_name)
        return optuna.trial.Trial(self.study, self.storage.get_trial_id_from_study_id_trial_number(study_id, number))


def open_study(journal: Path, name: str, sweep: SweepSpec) -> OpenStudy:
    storage = journal_storage(journal)
    study = optuna.create_study(study_name=name, storage=storage, load_if_exists=True,
                                direction="minimize" if metric_mode(sweep) == "min" else "maximize",
                                sampler=SeededPerTrial(sweep.search, sweep.seed))
    return OpenStudy(study, storage)


def end_state(result: dict[str, Any] | None, failed: bool, sweep: SweepSpec, full_steps: int):
    """How Optuna is told a trial ended. ASHA-stopped (short of ``full_steps``) is PRUNED with
    ``asha_stopped: pruned``: Ray's OptunaSearch says COMPLETE with the partial score, and TPE
    would learn from early, noisy numbers as if final. A failed trial is FAIL, which TPE
    ignores, even if it reported scores before failing."""
    value = (result or {}).get(sweep.metric)
    if failed or value is None:
        return TrialState.FAIL, None
    if (result or {}).get("step", 0) < full_steps and sweep.asha_stopped == "pruned":
        return TrialState.PRUNED, None  # Optuna keeps its last intermediate value
    return TrialState.COMPLETE, float(value)


def tell_ended(study: optuna.Study, number: int, result: dict[str, Any] | None, failed: bool,
               sweep: SweepSpec, full_steps: int) -> None:
    if study.trials[number].state.is_finished():  # told already (by an earlier run of the sweep)
        return
    state, value = end_state(result, failed, sweep, full_steps)
    study.tell(number, value, state=state)


def suggest_all(trial: optuna.trial.Trial, distributions: dict[str, optuna.distributions.BaseDistribution]) -> None:
    """Every dimension of a reopened proposal through Optuna's public suggest calls: a value the
    journal holds comes back as it is; one it lacks is drawn now. ``study.ask`` writes a new
    trial, then its values one by one, so a sweep killed in between left a proposal with some or
    none of them, which would otherwise run (and be recorded) with the model's own settings."""
    for name, dist in distributions.items():
        if isinstance(dist, FloatDistribution):
            trial.suggest_float(name, dist.low, dist.high, log=dist.log, step=dist.step)
        elif isinstance(dist, IntDistribution):
            trial.suggest_int(name, dist.low, dist.high, log=dist.log, step=dist.step)
        else:
            trial.suggest_categorical(name, dist.choices)


class JournalSearcher(Searcher):
    """Tune's searcher over genflow's Optuna study: first the proposals of the journal that did
    not end (same number, same values), then new ones until the journal holds ``trials``."""

    def __init__(self, opened: OpenStudy, space: dict[str, Dimension], sweep: SweepSpec, full_steps: int,
                 rerun: list[int]):
        super().__init__(metric=sweep.metric, mode=metric_mode(sweep))
        self.opened, self.study, self.sweep, self.full_steps = opened, opened.study, sweep, full_steps
        self.distributions = {key: distribution(dim) for key, dim in space.items()}
        self.rerun, self.numbers = list(rerun), {}
        self.live: dict[int, optuna.trial.Trial] = {}  # by number: what results are reported to
        self.reported: dict[int, set[int]] = {}  # steps in the journal already (a resumed trial replays them)

    def set_search_properties(self, metric, mode, config, **spec) -> bool:
        return True  # the space is the sweep's, given at construction

    def save(self, checkpoint_path: str) -> None:
        """Writes nothing: the journal is this searcher's state, and Tune's copy is never restored."""

    def suggest(self, trial_id: str):
        if self.rerun:
            trial = self.opened.reopen(self.rerun.pop(0))
            suggest_all(trial, self.distributions)  # values a kill kept out of the journal
        elif len(self.study.trials) >= self.sweep.trials:
            return Searcher.FINISHED
        else:
            trial = self.study.ask(self.distributions)
        self.numbers[trial_id], self.live[trial.number] = trial.number, trial
        self.reported[trial.number] = set(self.study.trials[trial.number].intermediate_values)
        return {**trial.params, TRIAL_KEY: trial.number}

    def on_trial_result(self, trial_id: str, result: dict) -> None:
        number, value, step = self.numbers.get(trial_id), result.get(self.sweep.metric), result.get("step")
        if number is None or value is None or step is None:
            return
        if int(step) not in self.reported[number]:
            self.live[number].report(float(value), int(step))
            self.reported[number].add(int(step))

    def on_trial_complete(self, trial_id: str, result: dict | None = None, error: bool = False) -> None:
        if trial_id not in self.numbers:
            return
        if result is not None:
            # the result ASHA stopped the trial on (at a rung, or at the last step) reaches the
            # searcher here only, never through on_trial_result: the journal's intermediate
            # values would lack every rung decision, and a pruned trial the score it was pruned on
            self.on_trial_result(trial_id, result)
        number = self.numbers.pop(trial_id)
        self.live.pop(number, None), self.reported.pop(number, None)
        tell_ended(self.study, number, result, error, self.sweep, self.full_steps)


def report_recorded(opened: OpenStudy, trial: optuna.trial.FrozenTrial, recorded: list[dict[str, Any]],
                    metric: str) -> None:
    """Report to Optuna the ledger's scores of ``trial`` that its journal lacks."""
    missing = [r for r in recorded if r.get(metric) is not None and r["step"] not in trial.intermediate_values]
    if missing:
        live = opened.reopen(trial.number)
        for row in missing:
            live.report(float(row[metric]), int(row["step"]))


def reconcile(opened: OpenStudy, ledger: Path, sweep: SweepSpec, full_steps: int) -> list[int]:
    """Make the journal and the ledger agree on which trials ended (a kill can fall between the
    two writes) and return the numbers of those that did not: they run again."""
    rerun, study = [], opened.study
    for trial in study.trials:
        key = trial_key(trial.number)
        mark = done_mark(ledger, key)
        if mark is not None:
            recorded = results(ledger, key)
            if not trial.state.is_finished():  # ended, Optuna not told: first the scores it missed
                report_recorded(opened, trial, recorded, sweep.metric)
            tell_ended(study, trial.number, recorded[-1] if recorded else None, mark["status"] == "failed",
                       sweep, full_steps)
        elif trial.state.is_finished():
            failed = trial.state == TrialState.FAIL
            write_json(done_path(ledger, key), {"status": "failed" if failed else "finished",
                                                "reason": "error" if failed else "", "attempt": None})
        else:
            rerun.append(trial.number)
    return rerun


# -- the driver's callback: marks each end the moment Tune sees it ------------------------------

class Ledger(tune.Callback):
    """Writes each trial's end mark and prints one progress line per ended trial."""

    def __init__(self, name: str, metric: str, total: int, ledger: Path, attempt: int, log=print):
        self.name, self.metric, self.total, self.ledger, self.log = name, metric, total, Path(ledger), log
        self.attempt = attempt

    def __getstate__(self) -> dict[str, Any]:
        # Tune pickles its callbacks into tuner.pkl (which genflow never reads); ``log`` may be
        # print, which Ray's tqdm_ray replaces in the driver, and pickle refuses a replaced builtin
        return {**self.__dict__, "log": None}

    def _end(self, trial, status: str, reason: str = "") -> None:
        key = trial_key(trial.config[TRIAL_KEY])
        result = trial.last_result or {}
        write_json(done_path(self.ledger, key), {"status": status, "reason": reason, "step": result.get("step", 0),
                                                 "attempt": self.attempt})
        value = result.get(self.metric)
        shown = f"{self.metric}={value:.5g}" if isinstance(value, float) and status == "finished" else "no score"
        done = len(list(self.ledger.glob("*.done.json")))
        (self.log or print)(f"[sweep {self.name}] trial {key} {status} at step {result.get('step', 0)}: {shown} "
                 f"({done}/{self.total} done){' - ' + reason if reason else ''}")

    def on_trial_complete(self, iteration, trials, trial, **info) -> None:
        self._end(trial, "finished")

    def on_trial_error(self, iteration, trials, trial, **info) -> None:
        self._end(trial, "failed", failure_reason(_error_text(trial)))


def _error_text(trial) -> str:
    """The trial's error as Tune's *text* file has it (never ``error.pkl``: no unpickling)."""
    try:  # the driver's staging copy exists now; the storage copy only after Tune's next sync
        local = trial.error_file
        return Path(local).read_text() if local and Path(local).exists() else (trial.get_error() or "")
    except Exception as exc:  # noqa: BLE001  (an unreadable error file must not stop the sweep)
        return str(exc)


# -- the trials table ---------------------------------------------------------------------------

def load_journal(journal: Path, study_name: str) -> list[optuna.trial.FrozenTrial]:
    return optuna.load_study(study_name=study_name, storage=journal_storage(journal)).trials


def trial_records(journal: Path, study_name: str, ledger: Path, sweep, steps: int,
                  space_keys: list[str]) -> list[dict[str, Any]]:
    """One plain record per proposal in the journal (genflow.sweep.results' input)."""
    records = []
    for trial in load_journal(journal, study_name):
        key = trial_key(trial.number)
        rows = results(ledger, key)
        last = rows[-1] if rows else {}
        reached = int(last.get("step") or 0)
        status, reason = _status(ledger, key, trial.state, reached, steps)
        history = [(int(r["step"]), float(r[sweep.metric])) for r in rows if r.get(sweep.metric) is not None]
        value = None if status == "failed" or not history else history[-1][1]
        pick = min if metric_mode(sweep) == "min" else max
        records.append({
            "trial_id": key, "number": trial.number + 1, "status": status, "reason": reason, "steps": reached,
            "value": value, "best": pick(v for _, v in history) if history else None,
            "history_step": [s for s, _ in history], "history_value": [v for _, v in history],
            "wall_s": last.get("wall_s"), "finished_order": 0, "finished_at": last.get("reported_at") or 0.0,
            "cpus": sweep.cpus_per_trial * max(sweep.workers_per_trial, 1), "workers": sweep.workers_per_trial,
            "config": {k: trial.params.get(k) for k in space_keys},
            "runs": [run["attempt"] for run in starts(ledger, key) if isinstance(run.get("attempt"), int)],
        })
        if sweep.scheduler == "pbt":  # the values it ended with, and how it came by them
            history = read_history(ledger, key)
            records[-1]["pbt_history"] = history_table_rows(history, space_keys)
            records[-1]["history_state_sha256"] = [r.get("state_sha256") for r in rows if r.get(sweep.metric) is not None]
            if history:
                records[-1]["config"] = {k: history[-1]["values"].get(k) for k in space_keys}
    for order, record in enumerate(sorted(records, key=lambda r: (r["finished_at"], r["number"])), 1):
        record["finished_order"] = order
    return records


def _status(ledger: Path, key: str, state: TrialState, reached: int, steps: int) -> tuple[str, str]:
    mark = done_mark(ledger, key)
    if mark is not None and mark["status"] == "failed":
        return "failed", mark.get("reason") or "error"
    if mark is None and state == TrialState.FAIL:
        return "failed", "error"
    if mark is None and not state.is_finished():  # cannot happen after a completed run: reconcile reruns it
        return "failed", "unfinished"
    if reached < steps:
        return "stopped", f"stopped by ASHA at step {reached}"
    return "complete", ""
