"""Failures under Ray, for both launchers of a one-worker run (a Ray Train TorchTrainer, and
the plain Ray task of ``ray.launcher: auto``): a worker killed with SIGKILL mid-run, and the
stage's driver killed and the stage rerun. Every run must finish with weights bit-identical
to an uninterrupted run (every random draw is a function of (seed, step), and a checkpoint
holds all networks, optimizers, EMA and the step), and the two launchers must agree."""
from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest
import torch
import yaml

from genflow import config

from genflow.train import checkpoint

from genflow import launch
from genflow.train import worker as training
from genflow.train.worker_config import worker_config, run_name

from conftest import REPO, tiny_params_dict

pytestmark = [pytest.mark.slow, pytest.mark.filterwarnings("ignore::DeprecationWarning:ray")]

STEPS, EVERY = 6000, 1000


LAUNCHERS = ("trainer", "auto")  # auto: a one-worker run is a Ray task (integrations/ray_tasks.py)


def params_dict(storage: Path, launcher: str = "trainer") -> dict:
    raw = tiny_params_dict()
    gan = raw["models"]["gan_ring8"]
    gan["train"].update(steps=STEPS, checkpoint_every=EVERY, log_every=EVERY)
    raw["models"] = {"gan_ring8": gan}
    raw["ray"].update(num_workers=1, storage_path=str(storage), max_failures=2, launcher=launcher)
    return raw


def registered_checkpoint(storage: Path, launcher: str, timeout: float = 120.0) -> int:
    """Wait until the run has a checkpoint it will resume from; return its step.

    Trainer: a checkpoint directory appears as soon as a worker has written it, but Ray
    resumes only from checkpoints its controller has registered (at its next poll of the
    workers), which it records in checkpoint_manager_snapshot.json. A failure before that
    restarts from scratch, which a bit-identity check alone cannot tell apart from a resume.
    Task: a ``step_<N>/`` directory is swapped in whole once written, so it counts at once."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        step = _trainer_checkpoint(storage) if launcher == "trainer" else _task_checkpoint(storage)
        if step is not None and step < STEPS:
            return step
        time.sleep(0.02)
    raise TimeoutError(f"no registered checkpoint under {storage} within {timeout} s")


def _trainer_checkpoint(storage: Path) -> int | None:
    for snapshot in storage.glob("*/checkpoint_manager_snapshot.json"):
        try:
            latest = json.loads(snapshot.read_text()).get("latest_checkpoint_result")
        except (OSError, json.JSONDecodeError):  # being rewritten
            continue
        if latest:
            return int(latest["metrics"]["step"])
    return None


def _task_checkpoint(storage: Path) -> int | None:
    steps = [int(path.name.split("_")[1]) for path in storage.glob("*/step_*") if path.name.split("_")[1].isdigit()]
    return max(steps, default=None)


def train(cfg: dict, out: Path, ray_spec) -> None:
    """The launcher the train stage would pick for this one-worker run."""
    if launch.runs_as_tasks(ray_spec):
        from genflow.integrations.ray_tasks import train_seeds_as_tasks

        train_seeds_as_tasks([(cfg, out)], ray_spec)
    else:
        from genflow.integrations.ray_train import train_with_ray

        train_with_ray(cfg, out, ray_spec)


def assert_bit_identical(a: Path, b: Path) -> None:
    state_a, log_a, meta_a = checkpoint.load(a)
    state_b, log_b, meta_b = checkpoint.load(b)
    assert meta_a["step"] == meta_b["step"] == STEPS
    for key, value in state_a["model"].items():
        assert torch.equal(value, state_b["model"][key]), key
    assert log_a == log_b


@pytest.fixture(scope="module")
def uninterrupted(ray_session, prepared_dir, tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("uninterrupted")
    params = config.validate(params_dict(root / "storage", "trainer"))
    train(worker_config("gan_ring8", params, prepared_dir), root / "out", params.ray)
    return root / "out"


def test_task_launcher_equals_trainer_bit_for_bit(ray_session, uninterrupted, prepared_dir, tmp_path):
    params = config.validate(params_dict(tmp_path / "storage", "auto"))
    assert launch.runs_as_tasks(params.ray)
    train(worker_config("gan_ring8", params, prepared_dir), tmp_path / "out", params.ray)
    assert_bit_identical(tmp_path / "out", uninterrupted)


def _train_worker_pids(launcher: str, name: str) -> list[int]:
    import ray
    from ray.util.state import list_actors, list_tasks

    # this session's own cluster: another Ray instance on the machine (a `make repro` beside the
    # tests) would make the state API refuse to guess
    address = ray.get_runtime_context().gcs_address
    if launcher == "trainer":
        actors = list_actors(address=address, filters=[("class_name", "=", "RayTrainWorker"), ("state", "=", "ALIVE")])
        return [actor.pid for actor in actors]
    tasks = list_tasks(address=address, filters=[("name", "=", name), ("state", "=", "RUNNING")])
    return [task.worker_pid for task in tasks]


@pytest.mark.parametrize("launcher", LAUNCHERS)
def test_killed_worker_restarts_from_checkpoint_bit_identical(ray_session, uninterrupted, prepared_dir, tmp_path,
                                                              capfd, launcher):
    params = config.validate(params_dict(tmp_path / "storage", launcher))
    cfg = worker_config("gan_ring8", params, prepared_dir)
    errors: list[BaseException] = []

    def fit():
        try:
            train(cfg, tmp_path / "out", params.ray)
        except BaseException as exc:  # noqa: BLE001  (re-raised in the test thread)
            errors.append(exc)

    runner = threading.Thread(target=fit)
    runner.start()
    step = registered_checkpoint(tmp_path / "storage", launcher)
    pids = _train_worker_pids(launcher, run_name(cfg))
    assert len(pids) == 1
    os.kill(pids[0], signal.SIGKILL)
    runner.join(timeout=300)
    assert not runner.is_alive() and not errors, errors
    assert_bit_identical(tmp_path / "out", uninterrupted)
    output = capfd.readouterr().out
    resumed = [line for line in output.splitlines() if "resumed from checkpoint at step" in line]
    assert resumed and int(re.search(r"at step (\d+)", resumed[0]).group(1)) >= step, output[-3000:]


def _stage(params_path: Path, prepared_dir: Path, out: Path, address: str) -> subprocess.Popen:
    env = {**os.environ, "RAY_ADDRESS": address, "RAY_AUTH_MODE": "token", "PYTHONUNBUFFERED": "1",
           "PYTHONPATH": str(REPO)}
    cmd = [sys.executable, str(REPO / "stages" / "train.py"), "--model", "gan_ring8", "--params", str(params_path),
           "--data-root", str(prepared_dir), "--out", str(out)]
    return subprocess.Popen(cmd, cwd=REPO, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                            start_new_session=True)


@pytest.mark.parametrize("launcher", LAUNCHERS)
def test_killed_driver_rerun_resumes_bit_identical(ray_session, uninterrupted, prepared_dir, tmp_path, launcher):
    params_path = tmp_path / "params.yaml"
    params_path.write_text(yaml.safe_dump(params_dict(tmp_path / "storage", launcher)))
    address = ray_session.get_runtime_context().gcs_address
    first = _stage(params_path, prepared_dir, tmp_path / "out", address)
    try:
        step = registered_checkpoint(tmp_path / "storage", launcher)
    finally:
        os.killpg(first.pid, signal.SIGKILL)  # the driver and anything it started in its session
        first.communicate(timeout=60)
    assert not (tmp_path / "out").exists()  # nothing half-written in the stage output

    second = _stage(params_path, prepared_dir, tmp_path / "out", address)
    output, _ = second.communicate(timeout=400)
    assert second.returncode == 0, output[-5000:]
    resumed = [line for line in output.splitlines() if "resumed from checkpoint at step" in line]
    assert resumed and int(re.search(r"at step (\d+)", resumed[0]).group(1)) >= step, output[-3000:]
    assert_bit_identical(tmp_path / "out" / "seed_0", uninterrupted)


def test_task_error_is_raised_with_its_own_message(ray_session, prepared_dir, tmp_path):
    from genflow.errors import DataError
    from genflow.integrations.ray_tasks import train_seeds_as_tasks

    params = config.validate(params_dict(tmp_path / "storage", "auto"))
    cfg = worker_config("gan_ring8", params, prepared_dir).replace(data_dir=str(tmp_path / "gone"))
    with pytest.raises(DataError, match="the prepared data is not visible") as info:
        train_seeds_as_tasks([(cfg, tmp_path / "out")], params.ray)
    assert "Traceback" not in str(info.value)
    assert not (tmp_path / "out").exists()


@pytest.mark.parametrize("workers, launcher, storage, tasks", [
    (1, "auto", ".ray_storage", True), (1, "trainer", ".ray_storage", False), (2, "auto", ".ray_storage", False),
    (1, "auto", "s3://bucket/runs", False), (0, "auto", ".ray_storage", False)])
def test_which_runs_are_ray_tasks(workers, launcher, storage, tasks):
    raw = tiny_params_dict()["ray"]
    raw.update(num_workers=workers, launcher=launcher, storage_path=storage)
    assert launch.runs_as_tasks(config.RaySpec(**raw)) is tasks


@pytest.mark.parametrize("launcher", LAUNCHERS)
def test_killed_worker_without_retries_stops_with_one_line(ray_session, prepared_dir, tmp_path, launcher):
    """The default ``ray.max_failures: 0``: a worker SIGKILLed mid-run ends the run in one line (the
    stage prints it and exits 2) that says what happened, names the key that lets Ray restart the
    run, and the checkpoint a rerun resumes from; not in Ray's WorkerCrashedError /
    TrainingFailedError traceback. Nothing is written to the stage output."""
    from genflow.integrations.ray_session import WorkerLostError

    raw = params_dict(tmp_path / "storage", launcher)
    raw["ray"]["max_failures"] = 0
    params = config.validate(raw)
    cfg = worker_config("gan_ring8", params, prepared_dir)
    errors: list[BaseException] = []

    def fit():
        try:
            train(cfg, tmp_path / "out", params.ray)
        except BaseException as exc:  # noqa: BLE001  (checked in the test thread)
            errors.append(exc)

    runner = threading.Thread(target=fit)
    runner.start()
    registered_checkpoint(tmp_path / "storage", launcher)
    [pid] = _train_worker_pids(launcher, run_name(cfg))
    os.kill(pid, signal.SIGKILL)
    runner.join(timeout=300)
    assert not runner.is_alive() and len(errors) == 1 and isinstance(errors[0], WorkerLostError), errors
    message = str(errors[0])
    assert "\n" not in message and message.startswith(f"{cfg.label}: a Ray worker process died"), message
    assert "ray.max_failures is 0" in message and "raise ray.max_failures" in message, message
    resume = re.search(r"resume from it: (\S+) \(step (\d+)\)$", message)
    assert resume, message
    assert checkpoint.verify(resume.group(1))["step"] == int(resume.group(2)) < STEPS
    assert not (tmp_path / "out").exists()
