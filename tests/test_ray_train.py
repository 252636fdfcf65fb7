"""Real Ray Train workers: one 2-worker DDP run, checked for outputs and for equivalence
with in-process training on the same global batch (1 worker x 2B == 2 workers x B)."""
from __future__ import annotations

import csv
import json

import pytest
import torch

from genflow import config

from genflow.train import checkpoint

from genflow.io import sha256_file
from genflow.train import worker as training
from genflow.train.worker_config import worker_config

from conftest import tiny_params_dict

pytestmark = [pytest.mark.slow, pytest.mark.filterwarnings("ignore::DeprecationWarning:ray")]

B, STEPS = 16, 6


def ring_params(batch_size: int, num_workers: int, storage: str) -> config.Params:
    raw = tiny_params_dict()
    gan = raw["models"]["gan_ring8"]  # MLP, pac 2, no mbstd, no BatchNorm, no EMA: nothing batch-dependent
    assert not gan.get("mbstd") and gan["train"]["ema_decay"] == 0.0 and gan["pac"] == 2
    gan["train"].update(batch_size=batch_size, steps=STEPS, log_every=2, checkpoint_every=3)
    raw["models"] = {"gan_ring8": gan}
    raw["ray"].update(num_workers=num_workers, storage_path=storage)
    return config.validate(raw)


@pytest.fixture(scope="module")
def ray_run(ray_session, prepared_dir, tmp_path_factory):
    from genflow.integrations.ray_train import train_with_ray

    root = tmp_path_factory.mktemp("ray")
    params = ring_params(B, 2, str(root / "storage"))
    cfg = worker_config("gan_ring8", params, prepared_dir)
    train_with_ray(cfg, root / "out", params.ray)
    return root, cfg


def test_ray_run_outputs(ray_run):
    root, cfg = ray_run
    out = root / "out"
    assert {p.name for p in out.iterdir()} == {"state.pt", "meta.json", "train_log.csv", "resolved_params.json"}
    meta = json.loads((out / "meta.json").read_text())
    assert meta["world_size"] == 2 and meta["step"] == STEPS and meta["name"] == "gan_ring8"
    assert meta["state_sha256"] == sha256_file(out / "state.pt")
    with open(out / "train_log.csv") as handle:
        assert [int(r["step"]) for r in csv.DictReader(handle)] == [2, 4, 6]
    state, _, _ = checkpoint.load(out)
    assert state["step"] == STEPS
    # the run's resume state is dropped once the artifact is in place
    assert not (root / "storage" / f"gan_ring8-{cfg.fingerprint}").exists()


def test_two_workers_equal_one_worker_with_double_batch(ray_run, prepared_dir, tmp_path):
    root, _ = ray_run
    params = ring_params(2 * B, 0, str(tmp_path / "work"))
    cfg = worker_config("gan_ring8", params, prepared_dir)
    training.train_in_process(cfg, tmp_path / "single", tmp_path / "work")

    ddp, _, _ = checkpoint.load(root / "out")
    single, _, meta = checkpoint.load(tmp_path / "single")
    assert meta["world_size"] == 1
    assert ddp["model"].keys() == single["model"].keys()
    moved = 0
    init = training.build_engine(cfg)[0].model.state_dict()
    for key, value in single["model"].items():
        torch.testing.assert_close(ddp["model"][key], value, atol=1e-5, rtol=0, msg=key)
        moved += not torch.equal(value, init[key])
    assert moved == len(single["model"])  # every tensor was trained, so equality is not trivial
