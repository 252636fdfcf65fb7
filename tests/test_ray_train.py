"""Real Ray Train workers: one 2-worker DDP run, checked for outputs and for equivalence
with in-process training on the same global batch (1 worker x 2B == 2 workers x B)."""
from __future__ import annotations

import csv
import json
import re
from pathlib import Path

import pytest
import torch
import yaml

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


# -- divergence on the Ray Train path: the same one-line error and exit 2 as in a Ray task ------

def diverging_params(tmp_path, num_workers: int) -> Path:
    """A run that diverges within a few steps (hinge loss, Adam at lr 1 without a second moment's
    memory), checkpointing every step so that the last good checkpoint is a recent one."""
    raw = tiny_params_dict()
    gan = raw["models"]["gan_ring8"]
    gan["loss"] = "hinge"
    gan["train"].update(lr_g=1.0, lr_d=1.0, beta1=0.9, beta2=0.0, steps=20, log_every=1, checkpoint_every=1)
    raw["models"] = {"gan_ring8": gan}
    raw["ray"].update(num_workers=num_workers, launcher="trainer", storage_path=str(tmp_path / "storage"))
    path = tmp_path / "params.yaml"
    path.write_text(yaml.safe_dump(raw))
    return path


@pytest.mark.parametrize("num_workers", [1, 2], ids=["trainer-1-worker", "ddp-2-workers"])
def test_divergence_under_ray_train_names_the_step_and_the_last_good_checkpoint(ray_session, prepared_dir, tmp_path,
                                                                                  capfd, num_workers):
    """`genflow train` (the train stage) with a TorchTrainer, one worker or two under DDP: exit 2 with
    `diverged at step N: ...; last good checkpoint: <Ray's checkpoint dir> (step K)`, that checkpoint
    loads and is finite, and the stage's previous output is untouched."""
    from genflow.cli import main

    out = tmp_path / "models" / "gan_ring8"
    out.mkdir(parents=True)
    (out / "previous.txt").write_text("the last successful run's output")
    status = main(["train", "--model", "gan_ring8", "--params", str(diverging_params(tmp_path, num_workers)),
                   "--data-root", str(prepared_dir), "--out", str(out)])
    stderr = capfd.readouterr().err
    last_line = stderr.strip().splitlines()[-1]
    assert status == 2, stderr[-3000:]
    found = re.fullmatch(r"genflow: error: diverged at step (\d+): phase [DG] loss is \S+; last good checkpoint: "
                         r"(\S+/checkpoint_\S+) \(step (\d+)\)", last_line)
    assert found, stderr[-3000:]
    step, good, good_step = int(found.group(1)), Path(found.group(2)), int(found.group(3))
    assert good.parent.parent == tmp_path / "storage" and good_step <= step
    state, _, meta = checkpoint.load(good)
    assert state["step"] == good_step and meta["world_size"] == num_workers
    assert all(torch.isfinite(t).all() for t in state["model"].values() if t.is_floating_point())
    assert [p.name for p in out.iterdir()] == ["previous.txt"]
