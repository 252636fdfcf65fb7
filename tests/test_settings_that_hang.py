"""Settings that Ray accepts and then waits on forever are refused before Ray starts, naming the
key, with exit status 2 (docs/reliability.md, "Settings that hang"). Each run has a subprocess
timeout, so a regression fails the test instead of hanging the suite."""
from __future__ import annotations

import os
import subprocess

import pytest
import yaml

from conftest import PYTHON, REPO, tiny_params_dict

pytestmark = pytest.mark.slow


def _train(tmp_path, prepared_dir, *overrides: str, env: dict | None = None) -> subprocess.CompletedProcess:
    raw = tiny_params_dict()
    raw["models"] = {"gan_ring8": raw["models"]["gan_ring8"]}
    raw["ray"].update(num_workers=1, storage_path=str(tmp_path / "storage"))
    (tmp_path / "params.yaml").write_text(yaml.safe_dump(raw))
    args = [a for o in overrides for a in ("--set", o)]
    full_env = {k: v for k, v in os.environ.items() if k != "RAY_ADDRESS"}
    return subprocess.run([str(PYTHON), str(REPO / "stages" / "train.py"), "--model", "gan_ring8", "--data-root",
                           str(prepared_dir), "--out", str(tmp_path / "out"), *args],
                          cwd=tmp_path, env={**full_env, **(env or {})}, capture_output=True, text=True, timeout=120)


def _refused(proc, *fragments: str) -> None:
    assert proc.returncode == 2, (proc.returncode, proc.stdout[-2000:], proc.stderr[-3000:])
    assert "Traceback" not in proc.stderr
    for fragment in fragments:
        assert fragment in proc.stderr, proc.stderr[-3000:]


@pytest.mark.parametrize("launcher", ["auto", "trainer"])
def test_a_gpu_this_machine_lacks(tmp_path, prepared_dir, launcher):
    """No CUDA here and a local Ray: the GPU request could never be met."""
    import torch

    if torch.cuda.is_available():
        pytest.skip("this machine has a GPU")
    _refused(_train(tmp_path, prepared_dir, "ray.use_gpu=true", f"ray.launcher={launcher}"),
             "ray.use_gpu: true, but this machine has no CUDA GPU")


@pytest.mark.parametrize("address,how", [
    ("127.0.0.1:9", "param"),          # nothing listens on the discard port: refused at once
    ("192.0.2.1:6379", "param"),       # TEST-NET-1 (RFC 5737): nothing routes there, the connect times out
    ("127.0.0.1:9", "env"),            # the same through RAY_ADDRESS
])
def test_an_address_nobody_answers(tmp_path, prepared_dir, address, how):
    if how == "env":
        proc = _train(tmp_path, prepared_dir, env={"RAY_ADDRESS": address})
    else:
        proc = _train(tmp_path, prepared_dir, f"ray.address={address}")
    _refused(proc, f"ray.address / RAY_ADDRESS: no Ray cluster answers at {address}")
