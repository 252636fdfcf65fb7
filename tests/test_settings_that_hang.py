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


@pytest.mark.parametrize("workers,refused", [(1, False), (2, False), (3, True)])
def test_more_gpu_workers_than_this_machine_has_gpus(monkeypatch, workers, refused):
    """A data-parallel run takes one GPU per worker, all at once: on a local cluster with 2 GPUs,
    3 workers would stay pending for ever (the dataset presets ask for 2: presets/*/params.yaml).
    This machine's CUDA is stood in for (a GPU machine is not always at hand); the check is real."""
    import torch

    from genflow import config
    from genflow.errors import ConfigError
    from genflow.integrations.ray_session import check_before_ray

    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 2)
    spec = config.RaySpec(num_workers=workers, use_gpu=True, threads_per_worker=1)
    if not refused:
        check_before_ray(spec, None)
        return
    for address in (None, "127.0.0.1:1"):  # a local instance, or a head on loopback: this machine either way
        with pytest.raises(ConfigError, match=r"ray.num_workers: 3 workers with ray.use_gpu take one GPU each, "
                                              r"but this machine has 2"):
            check_before_ray(spec, address)


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
