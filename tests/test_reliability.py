"""Failures lose nothing: divergence keeps the last good checkpoint, a corrupt checkpoint
falls back to the previous one, and a stage killed at any moment leaves the old artifact or
the new one, never a partial one (docs/reliability.md)."""
from __future__ import annotations

import hashlib
import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
import yaml

from genflow import config

from genflow.train import checkpoint

from genflow import launch
from genflow.errors import DivergenceError
from genflow.io import atomic_dir, remove_stale_temporaries
from genflow.train import worker as training
from genflow.train.checkpoint_store import CheckpointStore
from genflow.train.engine import Engine, PrintReporter
from genflow.train.worker_config import worker_config, run_name

from conftest import PYTHON, REPO, interrupted_after_step_15, tiny_params_dict


def _same_weights(a: dict, b: dict) -> None:
    assert a.keys() == b.keys()
    for key in a:
        assert torch.equal(a[key], b[key]), key


def _params(tmp_path, **train):
    raw = tiny_params_dict()
    raw["ray"]["storage_path"] = str(tmp_path / "work")
    raw["models"]["gan_ring8"]["train"].update(train)
    return config.validate(raw)


# -- divergence ------------------------------------------------------------------------

def test_divergence_stops_the_stage_and_keeps_the_last_good_checkpoint(prepared_dir, tmp_path, monkeypatch):
    params = _params(tmp_path, checkpoint_every=5)
    out = tmp_path / "models" / "gan_ring8"
    out.mkdir(parents=True)
    (out / "previous.txt").write_text("the last successful run's output")
    original = Engine.train_step

    def poisoned_at_step_13(self, data, plan):
        if self.step == 13:
            with torch.no_grad():
                next(self.model.D.parameters()).view(-1)[0] = float("inf")
        return original(self, data, plan)

    monkeypatch.setattr(Engine, "train_step", poisoned_at_step_13)
    with pytest.raises(DivergenceError) as info:
        launch.train("gan_ring8", params, prepared_dir, out)
    message = str(info.value)
    assert message.startswith("diverged at step 13: phase D loss is"), message
    work = tmp_path / "work" / run_name(worker_config("gan_ring8", params, prepared_dir))
    assert f"last good checkpoint: {work / 'step_000000010'} (step 10)" in message
    state, log, _ = checkpoint.load(work / "step_000000010")
    assert state["step"] == 10 and log[-1]["step"] == 10
    assert all(torch.isfinite(t).all() for t in state["model"].values() if t.is_floating_point())
    assert [p.name for p in out.iterdir()] == ["previous.txt"]  # the stage output is untouched


# -- corrupt checkpoints ---------------------------------------------------------------

@pytest.mark.parametrize("damage", ["truncate", "flip-a-byte", "delete-meta"])
def test_corrupt_newest_checkpoint_falls_back_to_the_previous(prepared_dir, trained_dir, tmp_path, monkeypatch,
                                                              capfd, damage):
    params = _params(tmp_path, checkpoint_every=5)
    work = interrupted_after_step_15(params, prepared_dir, tmp_path / "model", monkeypatch)
    newest = work / "step_000000015"
    if damage == "truncate":
        blob = (newest / "state.pt").read_bytes()
        (newest / "state.pt").write_bytes(blob[: len(blob) // 2])
    elif damage == "flip-a-byte":
        blob = bytearray((newest / "state.pt").read_bytes())
        blob[len(blob) // 2] ^= 0xFF
        (newest / "state.pt").write_bytes(bytes(blob))
    else:
        (newest / "meta.json").unlink()

    capfd.readouterr()
    launch.train("gan_ring8", params, prepared_dir, tmp_path / "model")
    captured = capfd.readouterr()
    assert f"skipping checkpoint {newest}" in captured.err
    assert "resumed from checkpoint at step 10" in captured.out
    resumed, log, _ = checkpoint.load(tmp_path / "model" / "seed_0")
    straight, straight_log, _ = checkpoint.load(trained_dir / "gan_ring8" / "seed_0")
    _same_weights(straight["model"], resumed["model"])
    assert log == straight_log


def test_ray_resume_skips_a_corrupt_checkpoint_for_the_previous_one(prepared_dir, tmp_path, capfd):
    """The Ray path (``run_from``) with real ``ray.train.Checkpoint`` objects over a run directory
    laid out as Ray Train V2 lays it out (no cluster needed to read checkpoints)."""
    import ray.train

    from genflow.integrations.ray_train import run_from

    params = _params(tmp_path, checkpoint_every=5)
    config_ = worker_config("gan_ring8", params, prepared_dir)
    reporter = PrintReporter("gan_ring8")
    training.run_worker(config_, reporter)
    run_dir = tmp_path / "storage" / run_name(config_)
    for step, state in reporter.checkpoints[1:3]:  # steps 10 and 15, named like Ray's checkpoints
        checkpoint.save(run_dir / f"checkpoint_2026-11-22_10-00-{step:02d}.000000", state, [], {})
    newest = run_dir / "checkpoint_2026-11-22_10-00-15.000000"
    (newest / "state.pt").write_bytes(b"not a checkpoint")

    capfd.readouterr()
    run_from(ray.train.Checkpoint(str(newest)), config_, PrintReporter("gan_ring8"))
    captured = capfd.readouterr()
    assert f"skipping checkpoint {newest}" in captured.err
    assert "resumed from checkpoint at step 10" in captured.out


# -- atomic outputs --------------------------------------------------------------------

def test_stale_temporaries_of_dead_writers_are_cleaned_and_an_interrupted_swap_is_undone(tmp_path):
    out = tmp_path / "artifact"
    with atomic_dir(out) as tmp:
        (tmp / "a.txt").write_text("old")
    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True,
                          text=True).stdout.strip()
    host = os.uname().nodename
    leftover = tmp_path / f".artifact.{host}-{dead}.x1y2.tmp"
    leftover.mkdir()
    live = tmp_path / f".artifact.{host}-{os.getpid()}.x3y4.tmp"  # a live writer (this process)
    live.mkdir()
    remove_stale_temporaries(out)
    assert not leftover.exists() and live.exists()
    live.rmdir()

    # killed between "move the old artifact aside" and "move the new one in": the old one goes back
    os.replace(out, tmp_path / f".artifact.old-{host}-{dead}")
    remove_stale_temporaries(out)
    assert (out / "a.txt").read_text() == "old"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["artifact"]


def _digest(path: Path) -> str | None:
    """One hash of a file or a directory tree (names and contents); None when absent."""
    if not path.exists():
        return None
    files = [path] if path.is_file() else sorted(p for p in path.rglob("*") if p.is_file())
    digest = hashlib.sha256()
    for f in files:
        digest.update(str(f.relative_to(path.parent)).encode() + b"\0" + f.read_bytes())
    return digest.hexdigest()


KILL_FRACTIONS = (0.55, 0.7, 0.85, 0.95)  # of the stage's full run time (the start is Python imports)
STAGES = [  # stage, its arguments, its outputs, the change that makes its new output differ
    ("prepare", ["--dataset", "ring8"], ["data/prepared/ring8"], "data.ring8.seed=1"),
    ("train", ["--model", "gan_ring8"], ["models/gan_ring8"], "models.gan_ring8.train.lr_g=0.001"),
    ("evaluate", ["--model", "gan_ring8"], ["metrics/gan_ring8.json", "samples/gan_ring8.png"], "evaluate.seed=1"),
    ("export", ["--model", "gan_ring8"], ["export/gan_ring8"], None),  # new: exports the retrained model
]


def _stage(workspace: Path, stage: str, args: list[str], overrides: list[str]) -> subprocess.Popen:
    cmd = [str(PYTHON), str(REPO / "stages" / f"{stage}.py"), *args, *(x for o in overrides for x in ("--set", o))]
    return subprocess.Popen(cmd, cwd=workspace, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)


def _finish(proc: subprocess.Popen) -> float:
    started = time.perf_counter()
    _, err = proc.communicate(timeout=300)
    assert proc.returncode == 0, err
    return time.perf_counter() - started


def test_a_stage_killed_at_any_moment_leaves_the_old_artifact_or_the_new_one(tmp_path):
    workspace = tmp_path / "ws"
    workspace.mkdir()
    raw = tiny_params_dict()
    del raw["data"]["digits"], raw["models"]["gan_digits"], raw["models"]["vae_digits"]
    raw["models"]["gan_ring8"]["train"].update(steps=300, checkpoint_every=20, log_every=20)
    raw["ray"]["storage_path"] = "ray_storage"
    (workspace / "params.yaml").write_text(yaml.safe_dump(raw))
    durations, new_overrides = {}, []
    _finish(_stage(workspace, "prepare", ["--dataset", "ring8"], []))
    _finish(_stage(workspace, "featurenet", ["--dataset", "ring8"], []))  # 2-D points: no network to train
    for stage, args, outs, _ in STAGES:  # the old artifacts
        started = time.perf_counter()
        _finish(_stage(workspace, stage, args, []))
        durations[stage] = time.perf_counter() - started
    for stage, args, outs, change in STAGES:
        old = {out: _digest(workspace / out) for out in outs}
        new_overrides += [change] if change else []
        seen = []
        for fraction in KILL_FRACTIONS:
            proc = _stage(workspace, stage, args, new_overrides)
            time.sleep(durations[stage] * fraction)
            proc.send_signal(signal.SIGKILL)
            proc.wait()
            seen.append({out: _digest(workspace / out) for out in outs})
        _finish(_stage(workspace, stage, args, new_overrides))
        new = {out: _digest(workspace / out) for out in outs}
        for out in outs:
            assert old[out] != new[out], f"{stage}: the new {out} should differ from the old one"
            states = [s[out] for s in seen]
            assert set(states) <= {old[out], new[out]}, f"{stage}: {out} was left half-written by a kill"
        leftovers = [p for out in outs for p in (workspace / out).parent.iterdir() if p.name.startswith(".")]
        assert not leftovers, f"{stage}: temporaries left after the rerun: {leftovers}"
    assert not (workspace / "ray_storage").exists() or not any((workspace / "ray_storage").iterdir())
    shutil.rmtree(workspace)


def test_checkpoint_store_keeps_the_newest_two(tmp_path):
    store = CheckpointStore(tmp_path / "run")
    for step in (5, 10, 15):
        store.save({"step": step, "w": torch.zeros(2)}, [{"step": step}], {"name": "x"})
    assert [p.name for p in store.checkpoints()] == ["step_000000015", "step_000000010"]
    assert store.latest() == tmp_path / "run" / "step_000000015"
    assert json.loads((store.latest() / "meta.json").read_text())["step"] == 15


def test_checkpoint_bytes_do_not_depend_on_how_the_state_was_built(prepared_dir, tmp_path):
    """A resumed run must write the same bytes as an uninterrupted one (DVC hashes them)."""
    params = _params(tmp_path)
    config_ = worker_config("gan_digits", params, prepared_dir)
    live, data = training.build_engine(config_)
    live.fit(data, PrintReporter("live"))
    checkpoint.save(tmp_path / "live", live.state_dict(), live.log, {"name": "x"})
    rebuilt, _ = training.build_engine(config_)
    state, log, _ = checkpoint.load(tmp_path / "live")
    rebuilt.load_state_dict(state)
    checkpoint.save(tmp_path / "rebuilt", rebuilt.state_dict(), log, {"name": "x"})
    assert (tmp_path / "live" / "state.pt").read_bytes() == (tmp_path / "rebuilt" / "state.pt").read_bytes()
