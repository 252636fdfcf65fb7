"""A new user's first run: the local Ray head and a training stage on a machine that has never
run Ray (an empty HOME: no ~/.ray/auth_token), and what the person in front of it reads."""
from __future__ import annotations

import os
import re
import subprocess
from pathlib import Path

import pytest
import yaml

from conftest import PYTHON, REPO, tiny_params_dict

WITH_RAY = REPO / "infra" / "local" / "with-ray.sh"


def _fresh_env(home: Path, **extra: str) -> dict[str, str]:
    """The environment of a machine with nothing but the clone: an empty HOME, no Ray given."""
    home.mkdir(exist_ok=True)
    drop = {"RAY_ADDRESS", "RAY_AUTH_TOKEN", "RAY_AUTH_TOKEN_PATH", "RAY_AUTH_MODE", "GENFLOW_PROGRESS"}
    env = {k: v for k, v in os.environ.items() if k not in drop}
    return {**env, "HOME": str(home), "PATH": f"{PYTHON.parent}{os.pathsep}{env.get('PATH', '')}",
            "RAY_USAGE_STATS_ENABLED": "0", "OMP_NUM_THREADS": "1", **extra}


@pytest.mark.slow
def test_local_head_starts_on_an_empty_home(tmp_path):
    """with-ray.sh makes the head's token in its own temp dir; a driver attaches with it and runs
    a task; afterwards HOME is still empty and the token is gone with the head."""
    probe = ("import os, ray; path = os.environ['RAY_AUTH_TOKEN_PATH']; ray.init(); "
             "print('token', path, oct(os.stat(path).st_mode & 0o777)); "
             "print('task', ray.get(ray.remote(lambda: 41).remote()) + 1)")
    proc = subprocess.run([str(WITH_RAY), str(PYTHON), "-c", probe], env=_fresh_env(tmp_path / "home"),
                          capture_output=True, text=True, timeout=180)
    out = proc.stdout + proc.stderr
    assert proc.returncode == 0, out[-4000:]
    assert re.search(r"\[with-ray\] local Ray head on 127\.0\.0\.1:\d+ .*dashboard http://127\.0\.0\.1:\d+", out), out
    token = re.search(r"^token (\S+) (0o\d+)$", proc.stdout, re.M)
    assert token and token.group(2) == "0o600", proc.stdout
    assert "task 42" in proc.stdout
    assert not Path(token.group(1)).exists()  # removed with the head's temp dir
    assert list((tmp_path / "home").iterdir()) == []


@pytest.mark.slow
@pytest.mark.parametrize("launcher", ["auto", "trainer"])
def test_two_seed_training_names_seed_and_total_on_every_line(tmp_path, prepared_dir, launcher):
    """`genflow train` with no head on an empty HOME starts its own Ray (a task per seed, or a
    TorchTrainer per seed), says where its dashboard is, and every progress line names its seed
    and the step out of the total."""
    raw = tiny_params_dict()
    gan = raw["models"]["gan_ring8"]
    gan["seeds"] = [0, 1]
    gan["train"].update(steps=20, log_every=5, checkpoint_every=10)
    raw["models"] = {"gan_ring8": gan}
    raw["ray"].update(num_workers=1, cpus_per_worker=1.0, launcher=launcher, storage_path=str(tmp_path / "storage"))
    (tmp_path / "params.yaml").write_text(yaml.safe_dump(raw, sort_keys=False))
    proc = subprocess.run([str(PYTHON), "-m", "genflow.cli", "train", "--model", "gan_ring8",
                           "--data-root", str(prepared_dir), "--out", str(tmp_path / "out")],
                          cwd=tmp_path, env=_fresh_env(tmp_path / "home"), capture_output=True, text=True,
                          timeout=300)
    out = proc.stdout + proc.stderr
    assert proc.returncode == 0, out[-5000:]
    assert re.search(r"\[ray\] started a local Ray instance .*dashboard http://", out), out[-3000:]
    lines = [re.sub(r"\x1b\[[0-9;]*m", "", line) for line in out.splitlines() if "] step " in line]  # no colours
    pattern = re.compile(r"\[gan_ring8 seed ([01])\] step (\d+)/20 \(\d+ %\) \d+:\d\d elapsed, ETA \d+:\d\d \| "
                         r"D_loss=\S+ .*G_loss=\S+ \| [\d.]+ steps/s$")
    assert lines and all(pattern.search(line) for line in lines), "\n".join(lines)
    seen = {(m.group(1), int(m.group(2))) for m in map(pattern.search, lines)}
    assert seen == {(seed, step) for seed in "01" for step in (5, 10, 15, 20)}, sorted(seen)
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == ["seed_0", "seed_1"]


def test_version():
    proc = subprocess.run([str(PYTHON), "-m", "genflow.cli", "--version"], capture_output=True, text=True,
                          timeout=60)
    assert proc.returncode == 0 and re.match(r"genflow \d+\.\d+\.\d+ \(code revision \S+\)", proc.stdout), proc
