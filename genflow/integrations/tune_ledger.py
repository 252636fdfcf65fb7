"""genflow's own record of a sweep, written by the driver as events happen.

Tune snapshots its experiment state every few seconds and copies it to the
storage path asynchronously, so a sweep killed at the wrong moment restores
from a state that misses its last events: a trial that had finished runs
again, or one that Optuna had already proposed is forgotten. Two files are
written synchronously instead, and they are what the trials table is built from:

* the Optuna journal (``study.journal``): every proposal, in order, with its
  Tune trial id as a user attribute, and how each ended;
* ``ledger/<trial id>.jsonl``: every probe result, and ``ledger/<trial id>.done.json``
  the moment the trial finished or failed.

A trial that Tune restores as unfinished but whose ``.done.json`` exists returns
at once; the searcher stops proposing when the journal holds ``trials``
proposals. So a rerun loses no finished trial and runs none twice.
"""
from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import optuna
from optuna.storages import JournalStorage
from optuna.storages.journal import JournalFileBackend
from optuna.trial import TrialState
from ray import tune

from genflow.errors import GenflowError
from genflow.io import write_json
from genflow.sweep.trial import metric_mode

TRIAL_ID_ATTR = "tune_trial_id"


def done_path(ledger: str | Path, trial_id: str) -> Path:
    return Path(ledger) / f"{trial_id}.done.json"


def is_done(ledger: str | Path, trial_id: str) -> bool:
    return done_path(ledger, trial_id).exists()


class Ledger(tune.Callback):
    """Appends each result, marks each end, and prints one progress line per finished trial."""

    def __init__(self, name: str, metric: str, total: int, ledger: Path, log=print):
        self.name, self.metric, self.total, self.ledger, self.log = name, metric, total, Path(ledger), log

    def on_trial_result(self, iteration, trials, trial, result, **info) -> None:
        row = {key: result.get(key) for key in ("step", self.metric, "time_total_s", "reported_at")}
        with open(self.ledger / f"{trial.trial_id}.jsonl", "a") as handle:
            handle.write(json.dumps(row) + "\n")

    def _end(self, trial, status: str, reason: str = "") -> None:
        if is_done(self.ledger, trial.trial_id):  # closed again after a restore: the first end stands
            return
        result = trial.last_result or {}
        write_json(done_path(self.ledger, trial.trial_id), {"status": status, "reason": reason,
                                                            "step": result.get("step", 0)})
        value = result.get(self.metric)
        shown = f"{self.metric}={value:.5g}" if isinstance(value, float) and status == "finished" else "no score"
        done = len(list(self.ledger.glob("*.done.json")))
        self.log(f"[sweep {self.name}] trial {trial.trial_id} {status} at step {result.get('step', 0)}: {shown} "
                 f"({done}/{self.total} done){' - ' + reason if reason else ''}")

    def on_trial_complete(self, iteration, trials, trial, **info) -> None:
        self._end(trial, "finished")

    def on_trial_error(self, iteration, trials, trial, **info) -> None:
        from genflow.sweep.trial import failure_reason

        try:  # the driver's staging copy exists now; the storage copy only after Tune's next sync
            local = trial.error_file
            error = Path(local).read_text() if local and Path(local).exists() else trial.get_error()
        except Exception as exc:  # noqa: BLE001  (an unreadable error file must not stop the sweep)
            error = exc
        self._end(trial, "failed", failure_reason(error))


def replay(ledger: str | Path, trial_id: str) -> dict[str, Any] | None:
    """For a trial restored as unfinished: None if it really is unfinished; else the result to
    report again so that Tune closes it as it ended (a recorded failure is raised again)."""
    if not is_done(ledger, trial_id):
        return None
    mark = json.loads(done_path(ledger, trial_id).read_text())
    if mark["status"] == "failed":
        raise GenflowError(f"{mark['reason']} (recorded before the sweep was restored)")
    results = _results(Path(ledger), trial_id)
    return {key: value for key, value in results[-1].items() if value is not None} if results else {}


def _results(ledger: Path, trial_id: str) -> list[dict[str, Any]]:
    path = ledger / f"{trial_id}.jsonl"
    if not path.exists():
        return []
    by_step: dict[int, dict[str, Any]] = {}
    for line in path.read_text().splitlines():
        try:
            row = json.loads(line)
        except json.JSONDecodeError:  # a line cut by a kill
            continue
        by_step[int(row.get("step") or 0)] = row  # a resumed trial may report a step again: keep the last
    return [by_step[step] for step in sorted(by_step)]


def load_journal(journal: Path, study_name: str) -> list[optuna.trial.FrozenTrial]:
    storage = JournalStorage(JournalFileBackend(str(journal)))
    return optuna.load_study(study_name=study_name, storage=storage).trials


def trial_records(journal: Path, study_name: str, ledger: Path, sweep, steps: int,
                  space_keys: list[str]) -> list[dict[str, Any]]:
    """One plain record per proposal in the journal (genflow.sweep.results' input)."""
    records = []
    for trial in load_journal(journal, study_name):
        trial_id = trial.user_attrs.get(TRIAL_ID_ATTR, f"optuna-{trial.number}")
        results = _results(ledger, trial_id)
        last = results[-1] if results else {}
        reached = int(last.get("step") or 0)
        status, reason = _status(ledger, trial_id, trial.state, reached, steps)
        history = [(int(r["step"]), float(r[sweep.metric])) for r in results if r.get(sweep.metric) is not None]
        value = None if status == "failed" or not history else history[-1][1]
        pick = min if metric_mode(sweep) == "min" else max
        records.append({
            "trial_id": trial_id, "number": trial.number + 1, "status": status, "reason": reason, "steps": reached,
            "value": value, "best": pick(v for _, v in history) if history else None,
            "history_step": [s for s, _ in history], "history_value": [v for _, v in history],
            "wall_s": last.get("time_total_s"), "finished_at": last.get("reported_at") or 0.0,
            "cpus": sweep.cpus_per_trial * max(sweep.workers_per_trial, 1), "workers": sweep.workers_per_trial,
            "config": {key: trial.params.get(key) for key in space_keys},
        })
    for order, record in enumerate(sorted(records, key=lambda r: (r["finished_at"], r["number"])), 1):
        record["finished_order"] = order
    return records


def _status(ledger: Path, trial_id: str, state: TrialState, reached: int, steps: int) -> tuple[str, str]:
    done = done_path(ledger, trial_id)
    if done.exists():
        mark = json.loads(done.read_text())
        if mark["status"] == "failed":
            return "failed", mark["reason"] or "error"
    elif state == TrialState.FAIL:
        return "failed", "error"
    elif not state.is_finished():
        return "failed", "lost: the sweep was killed before Tune recorded this trial"
    if reached < steps:
        return "stopped", f"stopped by ASHA at step {reached}"
    return "complete", ""
