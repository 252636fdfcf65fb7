"""Resume safety (issue #32): an unusable newest checkpoint, whatever made it unusable, is skipped
for the previous one with one warning naming it, on the in-process path and on the Ray Train
path; nothing in a forged checkpoint runs; with no usable checkpoint left, training restarts
from step 0 and says so. The sweep's own resume (kills, forged Ray Tune state) is below."""
from __future__ import annotations

import json
import os
import pickle
import random
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from types import SimpleNamespace

import pyarrow.parquet as pq
import pytest
import torch
import yaml

from genflow import config, launch
from genflow.io import sha256_file, write_json
from genflow.train import checkpoint
from genflow.train import worker as training
from genflow.train.checkpoint_store import CheckpointStore
from genflow.train.engine import PrintReporter
from genflow.train.worker_config import run_name, worker_config

from conftest import REPO, interrupted_after_step_15, tiny_params_dict


class TouchesAFile:
    """What a forger would pickle: unpickling it calls ``Path.touch(marker)``."""

    def __init__(self, marker: Path):
        self.marker = marker

    def __reduce__(self):
        return (Path.touch, (self.marker,))


# -- forgeries: each rewrites meta.json to match, as anyone who can write the file can ------------

def _rewrite(directory: Path, state=None, raw: bytes | None = None, **meta_changes) -> None:
    if raw is not None:
        (directory / "state.pt").write_bytes(raw)
    elif state is not None:
        torch.save(state, directory / "state.pt")
    meta = json.loads((directory / "meta.json").read_text())
    meta.update(meta_changes)
    write_json(directory / "meta.json", {**meta, "state_sha256": sha256_file(directory / "state.pt")})


def _state(directory: Path) -> dict:
    return torch.load(directory / "state.pt", weights_only=True)


def _first_weight(state: dict) -> str:
    return next(key for key, value in state["model"].items() if value.is_floating_point())


def pickled_callable(directory: Path, marker: Path) -> None:
    _rewrite(directory, {**_state(directory), "evil": TouchesAFile(marker)})


def wrong_shapes(directory: Path, marker: Path) -> None:
    state = _state(directory)
    key = _first_weight(state)
    state["model"][key] = torch.zeros(state["model"][key].shape[0] + 1, *state["model"][key].shape[1:])
    _rewrite(directory, state)


def missing_keys(directory: Path, marker: Path) -> None:
    state = _state(directory)
    del state["model"][_first_weight(state)]
    _rewrite(directory, state)


def metadata_of_wrong_types(directory: Path, marker: Path) -> None:
    _rewrite(directory, step="15", spec=["gan"])


def non_finite_weights(directory: Path, marker: Path) -> None:
    state = _state(directory)
    state["model"][_first_weight(state)].view(-1)[0] = float("nan")
    _rewrite(directory, state)


def not_a_state(directory: Path, marker: Path) -> None:
    _rewrite(directory, [torch.zeros(3)])


def step_out_of_range(directory: Path, marker: Path) -> None:
    _rewrite(directory, {**_state(directory), "step": 10**6}, step=10**6)


def optimizer_moment_of_wrong_shape(directory: Path, marker: Path) -> None:
    state = _state(directory)
    moments = state["optimizers"][0]["state"][0]
    moments["exp_avg"] = torch.zeros(7, 7)
    _rewrite(directory, state)


def garbage_with_a_matching_hash(directory: Path, marker: Path) -> None:
    _rewrite(directory, raw=b"PK\x03\x04 not really a zip archive" * 10)


FORGERIES = {
    pickled_callable: "refused by the weights-only unpickler",
    wrong_shapes: "does not fit this model (Error(s) in loading state_dict",
    missing_keys: "does not fit this model (Error(s) in loading state_dict",
    metadata_of_wrong_types: "not metadata genflow writes (step is str, not int)",
    non_finite_weights: "is not finite",
    not_a_state: "holds a list, not a training state mapping",
    step_out_of_range: "step 1000000 is outside this run's 0..20",
    optimizer_moment_of_wrong_shape: "optimizer 0's exp_avg has shape (7, 7)",
    garbage_with_a_matching_hash: "unreadable state",
}
KINDS = pytest.mark.parametrize("forge", list(FORGERIES), ids=lambda f: f.__name__.replace("_", "-"))


def _params(tmp_path: Path) -> config.Params:
    raw = tiny_params_dict()
    raw["ray"]["storage_path"] = str(tmp_path / "work")
    raw["models"]["gan_ring8"]["train"].update(checkpoint_every=5)
    return config.validate(raw)


def _same_weights(a: dict, b: dict) -> None:
    assert a.keys() == b.keys()
    for key in a:
        assert torch.equal(a[key], b[key]), key


# -- the in-process path (train stage, Ray tasks, sweep trials that train in their process) --------

@KINDS
def test_a_forged_newest_checkpoint_falls_back_to_the_previous(prepared_dir, trained_dir, tmp_path, monkeypatch,
                                                               capfd, forge):
    params = _params(tmp_path)
    work = interrupted_after_step_15(params, prepared_dir, tmp_path / "model", monkeypatch)
    newest, marker = work / "step_000000015", tmp_path / "pwned"
    forge(newest, marker)
    capfd.readouterr()
    launch.train("gan_ring8", params, prepared_dir, tmp_path / "model")
    captured = capfd.readouterr()
    warnings = [line for line in captured.err.splitlines() if "skipping checkpoint" in line]
    assert len(warnings) == 1 and warnings[0].startswith(f"[genflow] skipping checkpoint {newest}: "), captured.err
    assert FORGERIES[forge] in warnings[0], warnings[0]
    assert "Traceback" not in captured.err and "resumed from checkpoint at step 10" in captured.out
    assert not marker.exists()
    resumed, log, _ = checkpoint.load(tmp_path / "model" / "seed_0")
    straight, straight_log, _ = checkpoint.load(trained_dir / "gan_ring8" / "seed_0")
    _same_weights(straight["model"], resumed["model"])
    assert log == straight_log


def test_with_no_usable_checkpoint_left_training_restarts_from_step_0(prepared_dir, trained_dir, tmp_path,
                                                                     monkeypatch, capfd):
    params = _params(tmp_path)
    work = interrupted_after_step_15(params, prepared_dir, tmp_path / "model", monkeypatch)
    marker = tmp_path / "pwned"
    pickled_callable(work / "step_000000015", marker)
    wrong_shapes(work / "step_000000010", marker)
    capfd.readouterr()
    launch.train("gan_ring8", params, prepared_dir, tmp_path / "model")
    captured = capfd.readouterr()
    assert f"skipping checkpoint {work / 'step_000000015'}: " in captured.err
    assert f"skipping checkpoint {work / 'step_000000010'}: " in captured.err
    assert f"no usable checkpoint left in {work} (2 skipped): training starts from step 0" in captured.err
    assert "resumed from checkpoint" not in captured.out and not marker.exists()
    resumed, log, _ = checkpoint.load(tmp_path / "model" / "seed_0")
    straight, straight_log, _ = checkpoint.load(trained_dir / "gan_ring8" / "seed_0")
    _same_weights(straight["model"], resumed["model"])
    assert log == straight_log


# -- the Ray Train path (run_from over ray.train.Checkpoint objects laid out as Ray Train V2 does) ---

@KINDS
def test_ray_resume_skips_a_forged_checkpoint_for_the_previous_one(prepared_dir, trained_dir, tmp_path, capfd,
                                                                   forge):
    import ray.train

    from genflow.integrations.ray_train import run_from

    params = _params(tmp_path)
    config_ = worker_config("gan_ring8", params, prepared_dir)
    reporter = PrintReporter("gan_ring8")
    training.run_worker(config_, reporter)
    run_dir = tmp_path / "storage" / run_name(config_)
    meta = training.checkpoint_meta(config_)
    for step, state in reporter.checkpoints[1:3]:  # steps 10 and 15, named like Ray's checkpoints
        checkpoint.save(run_dir / f"checkpoint_2026-11-22_10-00-{step:02d}.000000", state, [], meta)
    newest, marker = run_dir / "checkpoint_2026-11-22_10-00-15.000000", tmp_path / "pwned"
    forge(newest, marker)

    capfd.readouterr()
    resumed = PrintReporter("gan_ring8")
    run_from(ray.train.Checkpoint(str(newest)), config_, resumed)
    captured = capfd.readouterr()
    warnings = [line for line in captured.err.splitlines() if "skipping checkpoint" in line]
    assert len(warnings) == 1 and warnings[0].startswith(f"[genflow] skipping checkpoint {newest}: "), captured.err
    assert FORGERIES[forge] in warnings[0], warnings[0]
    assert "resumed from checkpoint at step 10" in captured.out and not marker.exists()
    straight, _, _ = checkpoint.load(trained_dir / "gan_ring8" / "seed_0")
    _same_weights(straight["model"], resumed.checkpoints[-1][1]["model"])


# -- a sweep killed at random moments, and forged Ray Tune state in its storage path ---------------

KILLED_SWEEP = {"model": "gan_ring8", "dataset": "ring8", "preset": "narrow", "search": "random", "scheduler": "fifo",
                "trials": 6, "steps": 2000, "report_every": 250, "grace_steps": 250, "max_concurrent": 2,
                "probe_samples": 200, "probe_real": 200, "space": {"width": {"choice": [8, 16]}}}


class Touches:
    """A pickle that, once loaded, creates ``marker``: what a forger would leave for Ray to load."""

    def __init__(self, marker: Path):
        self.marker = marker

    def __reduce__(self):
        return (Path.touch, (self.marker,))


class Stage:
    """``stages/sweep.py`` in its own process group (as `dvc repro` runs it), attached to the
    test session's Ray; its stdout and stderr go to files, read while it runs."""

    def __init__(self, params_path: Path, prepared: Path, models_root: Path, out: Path, address: str, logs: Path):
        # RAY_DEDUP_LOGS=0: Ray would fold the trials' lines that differ only in numbers
        env = {**os.environ, "RAY_ADDRESS": address, "RAY_AUTH_MODE": "token", "PYTHONUNBUFFERED": "1",
               "PYTHONPATH": str(REPO), "RAY_DEDUP_LOGS": "0"}
        self.stdout, self.stderr = logs.with_suffix(".out"), logs.with_suffix(".err")
        cmd = [sys.executable, str(REPO / "stages" / "sweep.py"), "--sweep", "gan_ring8", "--params",
               str(params_path), "--data-root", str(prepared), "--models-root", str(models_root), "--out", str(out)]
        with open(self.stdout, "w") as out_file, open(self.stderr, "w") as err_file:
            self.process = subprocess.Popen(cmd, cwd=REPO, env=env, stdout=out_file, stderr=err_file,
                                            start_new_session=True)

    def output(self) -> str:
        return self.stdout.read_text() + self.stderr.read_text()

    def wait_until(self, ready, timeout: float = 300) -> None:
        deadline = time.monotonic() + timeout
        while not ready():
            assert self.process.poll() is None, f"the stage ended before the moment to kill it:\n{self.output()[-4000:]}"
            assert time.monotonic() < deadline, f"no moment to kill it came:\n{self.output()[-4000:]}"
            time.sleep(0.1)

    def kill(self) -> None:
        assert self.process.poll() is None, f"the stage ended before it could be killed:\n{self.output()[-4000:]}"
        os.killpg(self.process.pid, signal.SIGKILL)  # the whole group, as a killed `dvc repro` would be
        self.process.wait(timeout=60)


def _ledger_now(storage: Path) -> dict:
    """What the sweep's record says at this moment: its run number, the trials that ended, and
    each trial's starts (by run) and recorded results."""
    from genflow.integrations import tune_ledger

    experiment = next(storage.glob("sweep-gan_ring8-*"), None)
    if experiment is None or not (experiment / "attempt.json").exists():
        return {"run": 0, "ended": set(), "starts": {}, "results": 0, "experiment": experiment}
    ledger = experiment / "ledger"
    keys = sorted({p.name.split(".")[0] for p in ledger.glob("trial_*.*")})
    return {"run": json.loads((experiment / "attempt.json").read_text())["attempt"], "experiment": experiment,
            "ended": {k for k in keys if tune_ledger.done_mark(ledger, k)},
            "starts": {k: [s["attempt"] for s in tune_ledger.starts(ledger, k)] for k in keys},
            "results": sum(len(tune_ledger.results(ledger, k)) for k in keys)}


def _most_checkpoints(state: dict) -> int:
    """The most checkpoints any unfinished trial has on disk."""
    unfinished = set(state["starts"]) - state["ended"]
    return max((len(CheckpointStore(state["experiment"] / "ledger" / key).checkpoints()) for key in unfinished),
               default=0)


def _started_in(state: dict, run: int) -> int:
    return sum(runs.count(run) for runs in state["starts"].values())


def _plant_forged_ray_state(experiment: Path, marker: Path) -> list[Path]:
    """Where Ray Tune's restore would read, and in the killed run's own private Tune directory."""
    payload = pickle.dumps(Touches(marker))
    state = {"runner_data": {"_type": "CLOUDPICKLE_FALLBACK", "value": payload.hex()}, "trial_data": []}
    planted = [experiment / "tuner.pkl", experiment / "searcher-state-2026-12-01_00-00-00.pkl",
               experiment / "experiment_state-2026-12-01_00-00-00.json"]
    for path in planted[:2]:
        path.write_bytes(payload)
    planted[2].write_text(json.dumps(state))
    for private in Path(tempfile.gettempdir()).glob(f".genflow-tune-{experiment.name}.*.tmp"):
        (private / "tune").mkdir(exist_ok=True)
        (private / "tune" / "tuner.pkl").write_bytes(payload)
        planted.append(private / "tune" / "tuner.pkl")
    return planted


def _wait_for_the_killed_runs_trials_to_end(ray, timeout: float = 120) -> None:
    """Ray ends a dead driver's actors on its own, a moment later: until then a trial of the
    killed run may still write its ledger. Only then is the record what the kill left."""
    from ray.util.state import list_actors

    address, own_job = ray.get_runtime_context().gcs_address, ray.get_runtime_context().get_job_id()
    deadline = time.monotonic() + timeout
    while any(actor.job_id != own_job for actor in list_actors(address=address, filters=[("state", "=", "ALIVE")])):
        assert time.monotonic() < deadline, "the killed run's trials were still alive"
        time.sleep(0.2)


def _forge_a_running_trials_checkpoint(state: dict, marker: Path) -> Path | None:
    """The newest checkpoint of a trial that had not ended (one with a previous checkpoint to fall
    back to, if there is one)."""
    unfinished = sorted(set(state["starts"]) - state["ended"])
    stores = [CheckpointStore(state["experiment"] / "ledger" / key).checkpoints() for key in unfinished]
    stores = sorted((found for found in stores if found), key=len, reverse=True)
    if not stores:
        return None
    pickled_callable(stores[0][0], marker)
    return stores[0][0]


@pytest.fixture(scope="module")
def killed_sweep(ray_session, prepared_dir, features_dir, tmp_path_factory):
    """The same 6-trial sweep run straight through (in this process), and as a stage SIGKILLed three
    times at seeded random moments (early, during trials, near the end), with forged Ray Tune state
    (and a forged checkpoint) planted in its storage path before the final rerun."""
    root = tmp_path_factory.mktemp("killed-sweep")
    raw = tiny_params_dict()
    raw["sweeps"] = {"gan_ring8": dict(KILLED_SWEEP)}
    raw["ray"]["storage_path"] = str(root / "straight-storage")
    started = time.monotonic()
    launch.sweep("gan_ring8", config.validate(raw), prepared_dir, features_dir, root / "straight", log=lambda *a: None)
    straight_s = time.monotonic() - started

    raw["ray"]["storage_path"] = str(root / "storage")
    params_path = root / "params.yaml"
    params_path.write_text(yaml.safe_dump(raw))
    (root / "models").mkdir()
    (root / "models" / "featurenet").symlink_to(features_dir)
    address = ray_session.get_runtime_context().gcs_address
    storage, rng = root / "storage", random.Random(32)

    def stage(run: int) -> Stage:
        return Stage(params_path, prepared_dir, root / "models", root / "out", address, root / f"run{run}")

    moments = [  # (what, when it may come, then a random delay in seconds)
        ("early: its first trials are starting", lambda s, run: s["run"] == run and _started_in(s, run) >= 1, 1.5),
        # two checkpoints: the newest is forged for run 3, which must fall back to the older one
        ("during trials: a running trial has two checkpoints",
         lambda s, run: s["run"] == run and s["results"] > before and _most_checkpoints(s) >= 2, 0.3),
        ("near the end: 4 of 6 trials ended", lambda s, run: s["run"] == run and len(s["ended"]) >= 4, 0.5),
    ]
    kills, started, forged_checkpoint = [], time.monotonic(), None
    for run, (what, ready, delay) in enumerate(moments, 1):
        before = _ledger_now(storage)["results"]
        running = stage(run)
        running.wait_until(lambda: ready(_ledger_now(storage), run))
        time.sleep(rng.uniform(0, delay))
        running.kill()
        _wait_for_the_killed_runs_trials_to_end(ray_session)
        kills.append({"what": what, **_ledger_now(storage)})
        if run == 2:  # a trial interrupted after a checkpoint: its newest one forged, for run 3
            forged_checkpoint = _forge_a_running_trials_checkpoint(kills[-1], root / "code-ran")
    assert not (root / "out").exists()

    marker = root / "code-ran"
    planted = _plant_forged_ray_state(kills[-1]["experiment"], marker)
    final = stage(len(moments) + 1)
    final.process.wait(timeout=600)
    return SimpleNamespace(root=root, straight_s=straight_s, killed_s=time.monotonic() - started, kills=kills,
                           final=final, marker=marker, planted=planted, forged_checkpoint=forged_checkpoint,
                           straight=pq.read_table(root / "straight" / "trials.parquet").to_pylist(),
                           storage=storage)


@pytest.mark.slow
def test_a_sweep_killed_three_times_at_random_moments_completes_every_trial_once(killed_sweep):
    final = killed_sweep.final
    assert final.process.returncode == 0, final.output()[-5000:]
    assert "[sweep gan_ring8] resuming" in final.output()
    table = {row["number"]: row for row in pq.read_table(killed_sweep.root / "out" / "trials.parquet").to_pylist()}
    assert sorted(table) == [1, 2, 3, 4, 5, 6] and {row["status"] for row in table.values()} == {"complete"}, table
    assert len({row["trial_id"] for row in table.values()}) == 6
    kills = killed_sweep.kills
    assert any(len(kill["ended"]) < 6 - 2 for kill in kills) and all(len(kill["ended"]) < 6 for kill in kills)
    for row in table.values():
        key = row["trial_id"]
        # a trial that had ended never started again: each run it started in began before it ended
        for run in row["runs"]:
            assert run == 1 or key not in kills[run - 2]["ended"], (key, row["runs"], kills)
        # and it started again only after a kill that found it unfinished
        interrupted = [i for i, kill in enumerate(kills, 1) if key in kill["starts"] and key not in kill["ended"]]
        assert 1 <= len(row["runs"]) <= 1 + len(interrupted), (key, row["runs"], interrupted)
    # the results are those of the sweep run straight through: same proposals, same training, same scores
    for straight in killed_sweep.straight:
        row = table[straight["number"]]
        for column in ("trial_id", "status", "steps", "fid", "history_step", "history_fid", "config.width",
                       "config.train.lr_g", "config.train.lr_d", "config.train.beta1", "config.train.beta2"):
            assert row[column] == straight[column], (straight["number"], column, row[column], straight[column])
        assert straight["runs"] == [1]
    assert not any(killed_sweep.storage.iterdir())  # the record is dropped once the outputs exist
    # at least one trial was interrupted after a checkpoint and resumed from it, not from scratch
    runs = [path.read_text() for path in sorted(killed_sweep.root.glob("run*.out"))]
    forged_trial = killed_sweep.forged_checkpoint.parent.name
    assert any(forged_trial in line and "resumed from checkpoint at step" in line for line in runs[2].splitlines()), \
        runs[2][-4000:]
    print(f"straight sweep {killed_sweep.straight_s:.1f} s; killed three times and rerun {killed_sweep.killed_s:.1f} s;"
          f" kills: {[(k['what'], sorted(k['ended'])) for k in kills]}; forged checkpoint:"
          f" {killed_sweep.forged_checkpoint}; resumed: {[t.count('resumed from checkpoint') for t in runs]}")


@pytest.mark.slow
def test_forged_ray_tune_state_in_the_storage_path_runs_nothing_and_is_reported(killed_sweep):
    """tuner.pkl, a searcher-state pickle and an experiment_state JSON with a cloudpickled field, put
    where Ray Tune's restore reads them, and a tuner.pkl in the killed run's private Tune directory."""
    final = killed_sweep.final
    assert final.process.returncode == 0, final.output()[-5000:]
    assert not killed_sweep.marker.exists(), "a forged pickle was loaded"
    notes = [line for line in final.stderr.read_text().splitlines() if "Ray Tune's saved state" in line]
    assert len(notes) == 1, final.stderr.read_text()[-3000:]
    assert notes[0].startswith("[genflow] sweep gan_ring8: ignoring 3 file(s) of Ray Tune's saved state in ")
    for name in ("tuner.pkl", "searcher-state-2026-12-01_00-00-00.pkl", "experiment_state-2026-12-01_00-00-00.json"):
        assert name in notes[0]
    assert "never unpickled" in notes[0]
    private = [p for p in killed_sweep.planted if "genflow-tune-" in str(p)]
    assert private and not any(p.exists() for p in private)  # the killed run's Tune directory: removed unread


@pytest.mark.slow
def test_a_forged_checkpoint_of_a_killed_sweeps_trial_runs_nothing_and_is_skipped(killed_sweep):
    """The newest checkpoint of a trial the second kill interrupted, forged (a pickled callable, its
    sha256 rewritten to match): the rerun skips it, says so, and the trial still ends as it would."""
    forged = killed_sweep.forged_checkpoint
    assert forged is not None, "the second kill found no interrupted trial with a checkpoint"
    rerun = (killed_sweep.root / "run3.out").read_text() + (killed_sweep.root / "run3.err").read_text()
    assert f"skipping checkpoint {forged}: {forged / 'state.pt'}: refused by the weights-only unpickler" in rerun
    assert not killed_sweep.marker.exists()
