"""In-process training: outputs, checkpoint integrity, bit-identical resume, divergence."""
from __future__ import annotations

import csv
import json
import math
import shutil
from pathlib import Path

import pytest
import torch

from genflow import config

from genflow.train import checkpoint

from genflow import launch
from genflow.errors import DataError, DivergenceError
from genflow.io import sha256_file
from genflow.models import registry
from genflow.train import worker as training
from genflow.train.engine import PrintReporter
from genflow.train.worker_config import worker_config, run_name

from conftest import MODEL_NAMES, tiny_params_dict


class Quiet:
    """Reporter that records nothing and prints nothing."""

    def on_log(self, step, row):
        pass

    def on_checkpoint(self, step, state, log, final):
        pass


class Interrupted(Exception):
    pass


class SaveThenStop(Quiet):
    """Saves the checkpoint of ``at`` to disk, then 'kills' the run."""

    def __init__(self, directory, meta, at):
        self.directory, self.meta, self.at = directory, meta, at

    def on_checkpoint(self, step, state, log, final):
        if step == self.at:
            checkpoint.save(self.directory, state, log, self.meta)
            raise Interrupted(step)


@pytest.fixture(scope="module")
def tiny():
    return config.validate(tiny_params_dict())


@pytest.mark.parametrize("name", MODEL_NAMES)
def test_train_in_process_outputs(name, trained_dir, tiny):
    out = trained_dir / name / "seed_0"
    assert {p.name for p in out.iterdir()} == {"state.pt", "meta.json", "train_log.csv", "resolved_params.json"}
    meta = json.loads((out / "meta.json").read_text())
    assert meta["name"] == name and meta["step"] == 20 and meta["world_size"] == 1
    assert meta["state_sha256"] == sha256_file(out / "state.pt")
    resolved = json.loads((out / "resolved_params.json").read_text())
    assert resolved == {"name": name, "seed": 0, **tiny.models[name].model_dump(mode="json")}
    with open(out / "train_log.csv") as handle:
        rows = list(csv.DictReader(handle))
    assert [int(r["step"]) for r in rows] == [5, 10, 15, 20]
    loss_key = "loss" if tiny.models[name].model == "vae" else "G_loss"
    assert all(float(r[loss_key]) == float(r[loss_key]) for r in rows)  # present and not NaN
    assert not (trained_dir.parent / "work").exists() or not any((trained_dir.parent / "work").iterdir())

    model, meta2, log = training.load_trained(out)
    assert meta2 == meta and [r["step"] for r in log] == [5, 10, 15, 20]
    state, _, _ = checkpoint.load(out)
    assert state["step"] == 20
    for key, value in model.state_dict().items():
        assert torch.equal(value, state["model"][key])


def test_checkpoint_detects_corruption(trained_dir, tmp_path):
    ckpt = tmp_path / "ckpt"
    shutil.copytree(trained_dir / "gan_ring8" / "seed_0", ckpt)
    blob = bytearray((ckpt / "state.pt").read_bytes())
    blob[len(blob) // 2] ^= 0x01
    (ckpt / "state.pt").write_bytes(bytes(blob))
    with pytest.raises(DataError, match=r"state\.pt.*sha256"):
        checkpoint.load(ckpt)
    with pytest.raises(DataError, match=r"state\.pt"):
        training.load_trained(ckpt)

    shutil.copy2(trained_dir / "gan_ring8" / "seed_0" / "state.pt", ckpt / "state.pt")
    checkpoint.load(ckpt)  # restored: loads again
    (ckpt / "state.pt").write_bytes((ckpt / "state.pt").read_bytes()[:1000])  # truncated
    with pytest.raises(DataError, match="sha256"):
        checkpoint.load(ckpt)
    (ckpt / "meta.json").unlink()
    with pytest.raises(DataError, match="not a genflow checkpoint"):
        checkpoint.load(ckpt)


def _assert_same_state(a: dict, b: dict) -> None:
    assert a.keys() == b.keys()
    for key in a:
        assert torch.equal(a[key], b[key]), key


@pytest.mark.parametrize("name", MODEL_NAMES)
def test_resume_is_bit_identical(name, tiny, prepared_dir, tmp_path):
    cfg = worker_config(name, tiny, prepared_dir)
    straight, data = training.build_engine(cfg)
    straight.fit(data, Quiet())
    assert straight.step == 20

    first, data = training.build_engine(cfg)
    with pytest.raises(Interrupted):
        first.fit(data, SaveThenStop(tmp_path / "ckpt", training.checkpoint_meta(cfg), at=10))
    assert first.step == 10
    torch.manual_seed(12345)  # the global RNG state of the new process is arbitrary

    resumed, data = training.build_engine(cfg)
    state, log, meta = checkpoint.load(tmp_path / "ckpt")
    assert meta["step"] == 10 and [r["step"] for r in log] == [5, 10]
    resumed.load_state_dict(state)
    resumed.log = log
    resumed.fit(data, Quiet())

    assert resumed.step == 20
    _assert_same_state(straight.model.state_dict(), resumed.model.state_dict())
    for opt_a, opt_b in zip(straight.optimizers, resumed.optimizers):
        for sa, sb in zip(opt_a.state_dict()["state"].values(), opt_b.state_dict()["state"].values()):
            for key in sa:
                assert torch.equal(torch.as_tensor(sa[key]), torch.as_tensor(sb[key]))
    assert resumed.log == straight.log


def test_train_in_process_resumes_after_interruption(tiny, prepared_dir, trained_dir, tmp_path, monkeypatch,
                                                     capsys):
    name = "gan_digits"  # conv + BatchNorm + EMA: the most state to get right
    raw = tiny_params_dict()
    raw["ray"]["storage_path"] = str(tmp_path / "work")
    params = config.validate(raw)
    cfg = worker_config(name, params, prepared_dir)
    original = training.DirectoryReporter.on_checkpoint

    def dies_after_first_checkpoint(self, step, state, log, final):
        original(self, step, state, log, final)
        if step == 10:
            raise Interrupted(step)

    monkeypatch.setattr(training.DirectoryReporter, "on_checkpoint", dies_after_first_checkpoint)
    with pytest.raises(Interrupted):
        launch.train(name, params, prepared_dir, tmp_path / "model")
    work = tmp_path / "work" / run_name(cfg)
    assert json.loads((work / "step_000000010" / "meta.json").read_text())["step"] == 10
    assert not (tmp_path / "model").exists()

    monkeypatch.setattr(training.DirectoryReporter, "on_checkpoint", original)
    capsys.readouterr()
    launch.train(name, params, prepared_dir, tmp_path / "model")
    assert "resumed from checkpoint at step 10" in capsys.readouterr().out
    assert not work.exists()
    out = tmp_path / "model" / "seed_0"

    resumed, _, _ = checkpoint.load(out)
    straight, _, _ = checkpoint.load(trained_dir / name / "seed_0")
    assert resumed["step"] == straight["step"] == 20
    _assert_same_state(straight["model"], resumed["model"])
    assert (out / "train_log.csv").read_text() == (trained_dir / name / "seed_0" / "train_log.csv").read_text()


def test_changed_params_do_not_resume_stale_run(tiny, prepared_dir, tmp_path):
    cfg = worker_config("gan_ring8", tiny, prepared_dir)
    raw = tiny_params_dict()
    raw["models"]["gan_ring8"]["train"]["lr_g"] = 1e-3
    cfg2 = worker_config("gan_ring8", config.validate(raw), prepared_dir)
    assert cfg.fingerprint != cfg2.fingerprint


def test_nan_weight_raises_divergence(tiny, prepared_dir):
    engine, data = training.build_engine(worker_config("gan_ring8", tiny, prepared_dir))
    with torch.no_grad():
        engine.model.D.head.weight[0, 0] = float("nan")
    with pytest.raises(DivergenceError, match="diverged at step 0: phase D loss is nan") as info:
        engine.fit(data, Quiet())
    assert info.value.step == 0


def test_nan_in_weights_the_loss_does_not_see(tiny, prepared_dir):
    # the EMA generator never enters a loss: the per-step weight check catches it in that same step
    engine, data = training.build_engine(worker_config("gan_digits", tiny, prepared_dir))
    with torch.no_grad():
        next(engine.model.G_ema.parameters()).view(-1)[0] = float("inf")
    with pytest.raises(DivergenceError, match=r"diverged at step 0: parameter G_ema\.\S+ is not finite"):
        engine.fit(data, Quiet())


def test_huge_learning_rate_diverges(tiny, prepared_dir):
    # params.yaml caps lr at 1.0 (Adam then cannot blow up in a few steps): force it on the optimizers
    engine, data = training.build_engine(worker_config("gan_ring8", tiny, prepared_dir))
    for opt in engine.optimizers:
        for group in opt.param_groups:
            group["lr"] = 1e25
    with pytest.raises(DivergenceError, match=r"diverged at step \d+: phase [DG] loss is (nan|inf|-inf)"):
        engine.fit(data, Quiet())
    assert engine.step < 20


def test_print_reporter_checkpoints_are_snapshots(tiny, prepared_dir, capsys):
    engine, data = training.build_engine(worker_config("gan_ring8", tiny, prepared_dir))
    reporter = PrintReporter("t")
    engine.fit(data, reporter)
    assert [step for step, _ in reporter.checkpoints] == [10, 20]
    at10, at20 = reporter.checkpoints[0][1]["model"], reporter.checkpoints[1][1]["model"]
    assert any(not torch.equal(at10[k], at20[k]) for k in at10)


# -- the Engine under torch.distributed (what each Ray Train worker runs), without Ray ---------

DDP_STEPS, DDP_BATCH = 3, 8


def _ddp_worker(rank: int, world: int, init_file: str, family: str, overrides: dict, data_dir: str, out: str):
    import torch.distributed as dist

    from genflow.data.loader import BatchPlan, load_split
    from genflow.train.engine import Engine

    torch.set_num_threads(1)
    dist.init_process_group("gloo", init_method=f"file://{init_file}", rank=rank, world_size=world)
    result: dict = {"rank": rank}
    try:
        entry = {"model": family, **overrides, "train": {"batch_size": DDP_BATCH, "steps": DDP_STEPS}}
        spec = config.validate({**tiny_params_dict(), "models": {"m": entry}}).models["m"]
        data = load_split(f"{data_dir}/{spec.dataset}", "train")
        torch.manual_seed(0)
        model = registry.build(spec, data.shape, data.num_classes)
        engine = Engine(model, train=spec.train, seed=0)
        assert engine.world_size == world
        plan = BatchPlan(len(data), DDP_BATCH, 0, rank, world)
        for _ in range(DDP_STEPS):
            engine.train_step(data, plan)
        torch.save({k: v for k, v in model.named_parameters()}, f"{out}/rank{rank}.pt")
        result["ok"] = True
    except Exception as exc:  # noqa: BLE001  (reported to the parent)
        result["error"] = f"{type(exc).__name__}: {exc}"
    finally:
        (Path(out) / f"rank{rank}.json").write_text(json.dumps(result))
        dist.destroy_process_group()


DDP_CASES = [
    pytest.param("gan", {"dataset": "digits", "arch": "conv", "z_dim": 8, "width": 8, "c_dim": 10, "pac": 2,
                         "spectral_norm": True, "r1_gamma": 0.5, "mbstd": True, "loss": "hinge"},
                 id="gan-conv-cond-sn-r1-pac2-mbstd"),
    pytest.param("vae", {"dataset": "digits", "arch": "conv", "z_dim": 4, "width": 8, "likelihood": "gaussian"},
                 id="vae-conv-gaussian"),
    pytest.param("vaegan", {"dataset": "digits", "arch": "conv", "z_dim": 4, "width": 8}, id="vaegan-conv",
                 ),
    pytest.param("vae", {"dataset": "digits", "arch": "conv", "z_dim": 4, "width": 8, "likelihood": "bernoulli"},
                 id="vae-conv-bernoulli"),
]


@pytest.mark.parametrize("family,overrides", DDP_CASES)
def test_engine_under_ddp_keeps_replicas_in_sync(family, overrides, prepared_dir, tmp_path):
    import multiprocessing

    ctx = multiprocessing.get_context("spawn")
    args = (str(tmp_path / "pg-init"), family, overrides, str(prepared_dir), str(tmp_path))
    procs = [ctx.Process(target=_ddp_worker, args=(rank, 2, *args)) for rank in range(2)]
    for proc in procs:
        proc.start()
    for proc in procs:
        proc.join(timeout=180)
        if proc.is_alive():
            proc.kill()
            raise RuntimeError("DDP worker hung")
    results = [json.loads((tmp_path / f"rank{r}.json").read_text()) for r in range(2)]
    for result in results:
        assert result.get("ok"), result.get("error")
    a, b = (torch.load(tmp_path / f"rank{r}.pt") for r in range(2))
    assert a.keys() == b.keys() and a
    for key in a:
        torch.testing.assert_close(a[key], b[key], atol=1e-6, rtol=0, msg=key)


@pytest.mark.parametrize("family", ["gan", "vae", "vaegan"])
def test_bf16_autocast_and_channels_last_train(family, prepared_dir):
    """The GPU options also run on CPU: bf16 autocast changes the numbers, channels_last does not."""
    raw = tiny_params_dict()
    base = {"model": family, "dataset": "digits", "arch": "conv", "z_dim": 4, "width": 8,
            "train": {"steps": 3, "batch_size": 16, "log_every": 1, "checkpoint_every": 3}}
    raw["models"] = {"fp32": base,
                     "bf16": {**base, "train": {**base["train"], "precision": "bf16"}},
                     "nhwc": {**base, "train": {**base["train"], "channels_last": True}}}
    params = config.validate(raw)
    logs = {}
    for name in params.models:
        engine, data = training.build_engine(worker_config(name, params, prepared_dir))
        logs[name] = engine.fit(data, Quiet())
        if name == "nhwc":
            conv = next(m for m in engine.model.modules() if isinstance(m, torch.nn.Conv2d))
            assert conv.weight.is_contiguous(memory_format=torch.channels_last)
    for row in logs["bf16"]:
        assert all(math.isfinite(v) for v in row.values())
    assert logs["bf16"] != logs["fp32"]
    for a, b in zip(logs["nhwc"], logs["fp32"]):
        assert a == pytest.approx(b, rel=1e-4, abs=1e-5)


@pytest.mark.parametrize("n_critic,g_forwards", [(1, 1), (2, 3)])
def test_g_step_reuses_the_d_steps_fake_only_with_one_critic_step(n_critic, g_forwards, prepared_dir):
    """One D step per G step: G runs forward once a step (its D-phase batch, kept with its graph,
    is what the G step scores). With n_critic > 1, each critic step and the G step draw their own."""
    raw = tiny_params_dict()
    raw["models"] = {"m": {"model": "gan", "dataset": "digits", "arch": "conv", "z_dim": 4, "width": 8,
                           "train": {"steps": 2, "batch_size": 16, "n_critic": n_critic,
                                     "log_every": 1, "checkpoint_every": 2}}}
    engine, data = training.build_engine(worker_config("m", config.validate(raw), prepared_dir))
    calls = []
    engine.model.G.register_forward_hook(lambda module, args, out: calls.append(out.requires_grad))
    before = {k: v.clone() for k, v in engine.model.G.state_dict().items()}
    engine.fit(data, PrintReporter("m"))
    assert len(calls) == 2 * g_forwards
    # the reused batch carries G's graph; fresh critic batches are drawn without one
    assert calls[:g_forwards] == ([True] if n_critic == 1 else [False] * n_critic + [True])
    assert any(not torch.equal(v, engine.model.G.state_dict()[k]) for k, v in before.items())  # G learned
