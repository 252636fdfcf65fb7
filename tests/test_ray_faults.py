"""Failures under Ray Train: a worker killed with SIGKILL mid-run, and the stage's driver
killed and the stage rerun. Both runs must finish with weights bit-identical to an
uninterrupted run (every random draw is a function of (seed, step), and a checkpoint
holds all networks, optimizers, EMA and the step)."""
from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest
import torch
import yaml

from genflow import checkpoint, config, training

from conftest import REPO, tiny_params_dict

pytestmark = [pytest.mark.slow, pytest.mark.filterwarnings("ignore::DeprecationWarning:ray")]

STEPS, EVERY = 6000, 1000


def params_dict(storage: Path) -> dict:
    raw = tiny_params_dict()
    gan = raw["models"]["gan_ring8"]
    gan["train"].update(steps=STEPS, checkpoint_every=EVERY, log_every=EVERY)
    raw["models"] = {"gan_ring8": gan}
    raw["ray"].update(num_workers=1, storage_path=str(storage), max_failures=2)
    return raw


def registered_checkpoint(storage: Path, timeout: float = 120.0) -> int:
    """Wait until the Train controller has registered a checkpoint of the run; return its step.

    A checkpoint directory appears as soon as a worker has written it, but Ray resumes only
    from checkpoints its controller has registered (at its next poll of the workers), which
    it records in checkpoint_manager_snapshot.json. A failure before that restarts from
    scratch, which a bit-identity check alone cannot tell apart from a resume."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        for snapshot in storage.glob("*/checkpoint_manager_snapshot.json"):
            try:
                latest = json.loads(snapshot.read_text()).get("latest_checkpoint_result")
            except (OSError, json.JSONDecodeError):  # being rewritten
                continue
            if latest and latest["metrics"]["step"] < STEPS:
                return int(latest["metrics"]["step"])
        time.sleep(0.02)
    raise TimeoutError(f"no registered checkpoint under {storage} within {timeout} s")


def assert_bit_identical(a: Path, b: Path) -> None:
    state_a, log_a, meta_a = checkpoint.load(a)
    state_b, log_b, meta_b = checkpoint.load(b)
    assert meta_a["step"] == meta_b["step"] == STEPS
    for key, value in state_a["model"].items():
        assert torch.equal(value, state_b["model"][key]), key
    assert log_a == log_b


@pytest.fixture(scope="module")
def uninterrupted(ray_session, prepared_dir, tmp_path_factory) -> Path:
    from genflow.integrations.ray_train import train_with_ray

    root = tmp_path_factory.mktemp("uninterrupted")
    params = config.validate(params_dict(root / "storage"))
    train_with_ray(training.worker_config("gan_ring8", params, prepared_dir), root / "out", params.ray)
    return root / "out"


def _train_worker_pids(ray_session) -> list[int]:
    from ray.util.state import list_actors

    actors = list_actors(filters=[("class_name", "=", "RayTrainWorker"), ("state", "=", "ALIVE")])
    return [actor.pid for actor in actors]


def test_killed_worker_restarts_from_checkpoint_bit_identical(ray_session, uninterrupted, prepared_dir, tmp_path,
                                                              capfd):
    from genflow.integrations.ray_train import train_with_ray

    params = config.validate(params_dict(tmp_path / "storage"))
    cfg = training.worker_config("gan_ring8", params, prepared_dir)
    errors: list[BaseException] = []

    def fit():
        try:
            train_with_ray(cfg, tmp_path / "out", params.ray)
        except BaseException as exc:  # noqa: BLE001  (re-raised in the test thread)
            errors.append(exc)

    runner = threading.Thread(target=fit)
    runner.start()
    step = registered_checkpoint(tmp_path / "storage")
    pids = _train_worker_pids(ray_session)
    assert len(pids) == 1
    os.kill(pids[0], signal.SIGKILL)
    runner.join(timeout=300)
    assert not runner.is_alive() and not errors, errors
    assert_bit_identical(tmp_path / "out", uninterrupted)
    output = capfd.readouterr().out
    resumed = [line for line in output.splitlines() if "resumed from checkpoint at step" in line]
    assert resumed and int(resumed[0].rsplit(" ", 1)[1]) >= step, output[-3000:]


def _stage(params_path: Path, prepared_dir: Path, out: Path, address: str) -> subprocess.Popen:
    env = {**os.environ, "RAY_ADDRESS": address, "RAY_AUTH_MODE": "token", "PYTHONUNBUFFERED": "1",
           "PYTHONPATH": str(REPO)}
    cmd = [sys.executable, str(REPO / "stages" / "train.py"), "--model", "gan_ring8", "--params", str(params_path),
           "--data-root", str(prepared_dir), "--out", str(out)]
    return subprocess.Popen(cmd, cwd=REPO, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                            start_new_session=True)


def test_killed_driver_rerun_resumes_bit_identical(ray_session, uninterrupted, prepared_dir, tmp_path):
    params_path = tmp_path / "params.yaml"
    params_path.write_text(yaml.safe_dump(params_dict(tmp_path / "storage")))
    address = ray_session.get_runtime_context().gcs_address
    first = _stage(params_path, prepared_dir, tmp_path / "out", address)
    try:
        step = registered_checkpoint(tmp_path / "storage")
    finally:
        os.killpg(first.pid, signal.SIGKILL)  # the driver and anything it started in its session
        first.communicate(timeout=60)
    assert not (tmp_path / "out").exists()  # nothing half-written in the stage output

    second = _stage(params_path, prepared_dir, tmp_path / "out", address)
    output, _ = second.communicate(timeout=400)
    assert second.returncode == 0, output[-5000:]
    resumed = [line for line in output.splitlines() if "resumed from checkpoint at step" in line]
    assert resumed and int(resumed[0].rsplit(" ", 1)[1]) >= step, output[-3000:]
    assert_bit_identical(tmp_path / "out" / "seed_0", uninterrupted)
