"""Shared fixtures: tiny params, prepared data, trained tiny models, one Ray session."""
from __future__ import annotations

import atexit
import copy
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
from pathlib import Path
from typing import Callable

import pytest

# Must be set before Ray is imported anywhere (no phone-home on this network).
os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")

# The suite runs as on a fresh machine: an empty HOME (no ~/.ray/auth_token, no caches, no git
# identity, no DVC config) and no Ray cluster or token given in the environment. A set-up step
# that only works because a developer's machine accumulated state fails here, not in a new
# user's first `make repro` (issue #25: a missing Ray token hid that way).
FRESH_HOME = tempfile.mkdtemp(prefix="genflow-tests-home-")
atexit.register(shutil.rmtree, FRESH_HOME, ignore_errors=True)
os.environ["HOME"] = FRESH_HOME
for _inherited in ("XDG_CONFIG_HOME", "XDG_CACHE_HOME", "XDG_DATA_HOME", "RAY_ADDRESS", "RAY_AUTH_TOKEN",
                   "RAY_AUTH_TOKEN_PATH", "GIT_AUTHOR_NAME", "GIT_AUTHOR_EMAIL", "GIT_COMMITTER_NAME",
                   "GIT_COMMITTER_EMAIL"):
    os.environ.pop(_inherited, None)

from genflow import config  # noqa: E402  (torch-free)

REPO = Path(__file__).resolve().parents[1]
PYTHON = REPO / ".venv" / "bin" / "python"

_TRAIN = {"steps": 20, "batch_size": 32, "log_every": 5, "checkpoint_every": 10}

TINY_PARAMS: dict = {
    "data": {
        "digits": {"source": "digits", "seed": 0, "val_fraction": 0.1, "test_fraction": 0.2},
        "ring8": {"source": "ring8", "seed": 0, "n_samples": 2000, "std": 0.05},
    },
    "featurenet": {"epochs": 1, "batch_size": 128, "lr": 1e-3, "width": 4, "seed": 0},
    "ray": {"num_workers": 0, "use_gpu": False, "cpus_per_worker": 1.0, "threads_per_worker": 1,
            "storage_path": ".ray_storage", "max_failures": 0},
    "evaluate": {"n_samples": 200, "n_real": 200, "reference_split": "test", "seed": 0, "grid_size": 4},
    "models": {
        "gan_digits": {"model": "gan", "dataset": "digits", "arch": "conv", "loss": "ns", "z_dim": 8, "width": 8,
                       "train": {**_TRAIN, "lr_g": 2e-4, "lr_d": 2e-4, "ema_decay": 0.9}},
        "vae_digits": {"model": "vae", "dataset": "digits", "arch": "conv", "likelihood": "bernoulli",
                       "z_dim": 4, "width": 8, "train": {**_TRAIN, "lr": 1e-3}},
        "gan_ring8": {"model": "gan", "dataset": "ring8", "arch": "mlp", "loss": "ns", "pac": 2, "z_dim": 2,
                      "width": 16, "depth": 2,
                      "train": {**_TRAIN, "lr_g": 5e-4, "lr_d": 5e-4, "ema_decay": 0.0}},
    },
}
MODEL_NAMES = tuple(TINY_PARAMS["models"])


def copy_checkout(dest: Path) -> Path:
    """The repository's files as they are now into ``dest``: tracked plus not-yet-committed (but not
    ignored) ones, without the checkout's own dvc.lock and this test suite. What a `dvc repro` of a
    copy runs, so no test writes into the checkout."""
    import subprocess

    listed = subprocess.run(["git", "ls-files", "-z", "--cached", "--others", "--exclude-standard"], cwd=REPO,
                            capture_output=True, text=True, check=True).stdout.split("\0")
    for rel in sorted(set(filter(None, listed))):
        if rel == "dvc.lock" or rel.startswith("tests/") or not (REPO / rel).is_file():
            continue
        (dest / rel).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(REPO / rel, dest / rel)
    return dest


def tiny_params_dict() -> dict:
    """A fresh deep copy of the tiny params mapping (safe to mutate)."""
    return copy.deepcopy(TINY_PARAMS)


def quiet(*_args, **_kwargs) -> None:
    """A ``log=`` callable that prints nothing."""


@pytest.fixture(scope="session", autouse=True)
def _one_torch_thread():
    """One intra-op thread, like genflow's workers (ray.threads_per_worker: 1). On this 2-vCPU
    machine two OpenMP threads make tiny conv steps ~50x slower (0.8 s instead of 0.01 s)."""
    import torch

    torch.set_num_threads(1)


@pytest.fixture
def params_dict() -> dict:
    return tiny_params_dict()


@pytest.fixture
def params(params_dict) -> config.Params:
    return config.validate(params_dict)


@pytest.fixture(scope="session")
def prepared_dir(tmp_path_factory) -> Path:
    """data/prepared/<dataset> for the tiny datasets (real Parquet shards + manifest)."""
    from genflow.data.prepare import prepare

    root = tmp_path_factory.mktemp("prepared")
    for name, spec in config.validate(tiny_params_dict()).data.items():
        prepare(spec, root / name, log=quiet)
    return root


@pytest.fixture(scope="session")
def features_dir(prepared_dir, tmp_path_factory) -> Path:
    """models/featurenet/<dataset> for the tiny datasets."""
    from genflow.featurenet.stage import build_feature_space

    root = tmp_path_factory.mktemp("featurenet")
    for name, spec in config.validate(tiny_params_dict()).data.items():
        build_feature_space(prepared_dir / name, config.validate(tiny_params_dict()).featurenet, root / name,
                            log=quiet)
    return root


@pytest.fixture(scope="session")
def trained_dir(prepared_dir, tmp_path_factory) -> Path:
    """models/<name>/seed_0 for every tiny model, trained in-process (no Ray) by train_model."""
    from genflow.launch import train as train_model

    root = tmp_path_factory.mktemp("trained")
    raw = tiny_params_dict()
    raw["ray"]["storage_path"] = str(root / "work")
    params = config.validate(raw)
    for name in params.models:
        train_model(name, params, prepared_dir, root / "models" / name)
    return root / "models"


def conditional_params_dict() -> dict:
    """The tiny params with only cgan_digits and cvae_digits: conditional copies (c_dim 10) of the
    tiny gan_digits and vae_digits, 2 steps each (the tests that use them need a conditional
    network, not a good one)."""
    raw = tiny_params_dict()
    raw["models"] = {"cgan_digits": {**raw["models"]["gan_digits"], "c_dim": 10},
                     "cvae_digits": {**raw["models"]["vae_digits"], "c_dim": 10}}
    for spec in raw["models"].values():
        spec["train"] = {**spec["train"], "steps": 2, "log_every": 2, "checkpoint_every": 2}
    return raw


@pytest.fixture(scope="session")
def conditional_dir(prepared_dir, tmp_path_factory) -> Path:
    """models/<name>/seed_0 for cgan_digits and cvae_digits (conditional_params_dict), trained
    in-process once per session for every test file that exports, evaluates or draws one."""
    from genflow.train import worker as training
    from genflow.train.worker_config import worker_config

    root = tmp_path_factory.mktemp("conditional")
    params = config.validate(conditional_params_dict())
    for name in params.models:
        training.train_in_process(worker_config(name, params, prepared_dir), root / "models" / name / "seed_0",
                                  root / "work")
    return root / "models"


@pytest.fixture(scope="session")
def ray_session():
    """One local Ray instance for the whole session (Ray start-up costs seconds)."""
    os.environ["RAY_USAGE_STATS_ENABLED"] = "0"
    import ray

    from genflow.integrations.ray_session import init_ray

    started = not ray.is_initialized()
    if started:  # the way the train stage starts one (dashboard on 127.0.0.1; tests/test_security.py)
        init_ray(config.RaySpec(num_workers=1, use_gpu=False, threads_per_worker=1))
    yield ray
    if started:
        ray.shutdown()


# Counts the page's images and how many failed to decode, once everything has loaded, into the DOM
# that --dump-dom prints (the report itself has no script; this probe is added to a copy).
CHROMIUM_PROBE = """<script>window.addEventListener('load', () => {
  const imgs = [...document.images];
  const broken = imgs.filter(i => !i.complete || i.naturalWidth === 0).length;
  document.body.setAttribute('data-probe', `images=${imgs.length} broken=${broken} `
    + `tables=${document.querySelectorAll('table.comparison').length} `
    + `rows=${document.querySelectorAll('table.comparison tr').length}`);
});</script></body>"""


def render_in_chromium(html: str, tmp_path: Path) -> tuple[dict[str, int], str]:
    """Load a self-contained HTML page in headless Chromium: its image / table counts (broken:
    images that did not decode) and the rendered DOM. Skips the test without Chromium."""
    import re
    import shutil
    import subprocess

    browser = next((found for name in ("chromium", "chromium-browser", "google-chrome")
                    if (found := shutil.which(name))), None)
    if browser is None:
        pytest.skip("headless Chromium not found: install Debian's package (apt-get install -y chromium), "
                    "as .ci/run does")
    assert "<script" not in html and "src=\"http" not in html  # self-contained, nothing to fetch or run
    probe = tmp_path / "probe.html"
    probe.write_text(html.replace("</body>", CHROMIUM_PROBE))
    proc = subprocess.run([browser, "--headless", "--no-sandbox", "--disable-gpu", "--virtual-time-budget=10000",
                           "--dump-dom", probe.as_uri()], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr[-2000:]
    found = re.search(r'data-probe="images=(\d+) broken=(\d+) tables=(\d+) rows=(\d+)"', proc.stdout)
    assert found, proc.stdout[:2000]
    return dict(zip(("images", "broken", "tables", "rows"), map(int, found.groups()))), proc.stdout


class Interrupted(Exception):
    """Raised by a test to stop a run at a chosen step, as a kill would."""


def interrupted_after_step_15(params, prepared_dir: Path, out: Path, monkeypatch) -> Path:
    """Train gan_ring8 in-process and stop it right after its step-15 checkpoint (checkpoints
    every 5 steps); return its work directory, holding step 15 and step 10."""
    from genflow import launch
    from genflow.train import worker as training
    from genflow.train.checkpoint_store import CheckpointStore
    from genflow.train.worker_config import run_name, worker_config

    original = training.DirectoryReporter.on_checkpoint

    def dies_after_step_15(self, step, state, log, final):
        original(self, step, state, log, final)
        if step == 15:
            raise Interrupted(step)

    monkeypatch.setattr(training.DirectoryReporter, "on_checkpoint", dies_after_step_15)
    with pytest.raises(Interrupted):
        launch.train("gan_ring8", params, prepared_dir, out)
    monkeypatch.setattr(training.DirectoryReporter, "on_checkpoint", original)
    work = Path(params.ray.storage_path) / run_name(worker_config("gan_ring8", params, prepared_dir))
    assert [p.name for p in CheckpointStore(work).checkpoints()] == ["step_000000015", "step_000000010"]
    return work


def sweep_stage(params_path: Path, prepared: Path, features: Path, out: Path, address: str) -> subprocess.Popen:
    """The gan_ring8 sweep stage as its own process group on the session's Ray (a test may kill it)."""
    # RAY_DEDUP_LOGS=0: Ray folds worker lines that differ only in numbers, which the tests count
    env = {**os.environ, "RAY_ADDRESS": address, "RAY_AUTH_MODE": "token", "PYTHONUNBUFFERED": "1",
           "PYTHONPATH": str(REPO), "RAY_DEDUP_LOGS": "0"}
    cmd = [sys.executable, str(REPO / "stages" / "sweep.py"), "--sweep", "gan_ring8", "--params", str(params_path),
           "--data-root", str(prepared), "--models-root", str(features.parent), "--out", str(out)]
    return subprocess.Popen(cmd, cwd=REPO, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                            start_new_session=True)


def kill_when(proc: subprocess.Popen, done: Callable[[list[str]], bool], timeout: float) -> list[str]:
    """Read ``proc``'s output until ``done(lines so far)``, then SIGKILL its whole process group
    (as a machine that loses power would: no clean-up runs); the lines read. Fails the test if
    ``done`` never holds within ``timeout`` seconds, with the output's tail."""
    lines: list[str] = []
    reached = threading.Event()

    def read():
        for line in proc.stdout:
            lines.append(line)
            if done(lines):
                reached.set()

    reader = threading.Thread(target=read, daemon=True)
    reader.start()
    try:
        assert reached.wait(timeout=timeout), "".join(lines)[-3000:]
    finally:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait(timeout=60)
    reader.join(timeout=10)
    return lines
