"""Evaluation during training (#27): probes in the log, the best snapshot, resume, early stop,
collapse, and the strict keys. Real engine, real probe (tiny ring8 GAN, tiny feature network)."""
from __future__ import annotations

import json

import pytest
import torch

from genflow import config, launch
from genflow.errors import ConfigError
from genflow.train import checkpoint
from genflow.train import worker as training
from genflow.train.monitor import COLLAPSED, EARLY_STOP
from genflow.train.worker_config import run_name, worker_config

from conftest import tiny_params_dict

NAME = "gan_ring8"


def _params(tmp_path, **train):
    raw = tiny_params_dict()
    raw["ray"]["storage_path"] = str(tmp_path / "work")
    raw["models"][NAME]["train"].update(train)
    return config.validate(raw)


def _train(params, prepared_dir, features_dir, out):
    launch.train(NAME, params, prepared_dir, out, featurenet_root=features_dir)
    return out / "seed_0"


def _best_row(log):
    probed = [row for row in log if "val_modes" in row]
    return min(probed, key=lambda row: (-row["val_modes"], -row["val_high_quality"]))  # first best wins ties


def test_best_snapshot_is_the_best_probe_in_the_log(prepared_dir, features_dir, tmp_path):
    out = _train(_params(tmp_path, eval_every=5, select="best"), prepared_dir, features_dir, tmp_path / "m")
    state, log, meta = checkpoint.load(out)
    probed = [row["step"] for row in log if "val_modes" in row]
    assert probed == [5, 10, 15, 20]
    assert {"val_modes", "val_high_quality", "val_reverse_kl"} <= set(log[-1])
    assert state["monitor"]["strip_steps"] == probed  # the sample strip: fixed latents at every probe
    assert [tuple(s.shape) for s in state["monitor"]["strip"]] == [(500, 2)] * 4
    best = _best_row(log)
    model, meta, _ = training.load_trained(out)
    assert meta["selected"] == {"select": "best", "step": best["step"], "on": "val"}
    assert state["monitor"]["best_step"] == best["step"]
    for key, value in model.state_dict().items():
        assert torch.equal(value, state["monitor"]["best_weights"][key])
    # the selected weights, probed again, score what the log says they scored
    from genflow.evaluate.probe import training_probe

    cfg = worker_config(NAME, _params(tmp_path, eval_every=5, select="best"), prepared_dir)
    again = training_probe(cfg, features_dir)(state["monitor"]["best_weights"])
    assert round(again["val_modes"], 6) == best["val_modes"]
    assert round(again["val_high_quality"], 6) == best["val_high_quality"]


def test_resume_after_a_kill_keeps_the_best_and_the_log(prepared_dir, features_dir, tmp_path, monkeypatch):
    params = _params(tmp_path, eval_every=5, select="best")
    straight = _train(params, prepared_dir, features_dir, tmp_path / "straight")
    original = training.DirectoryReporter.on_checkpoint

    def dies_after_first_checkpoint(self, step, state, log, final):
        original(self, step, state, log, final)
        if step == 10:
            raise KeyboardInterrupt

    monkeypatch.setattr(training.DirectoryReporter, "on_checkpoint", dies_after_first_checkpoint)
    with pytest.raises(KeyboardInterrupt):
        _train(params, prepared_dir, features_dir, tmp_path / "resumed")
    work = tmp_path / "work" / run_name(worker_config(NAME, params, prepared_dir))
    assert json.loads((work / "step_000000010" / "meta.json").read_text())["step"] == 10
    monkeypatch.setattr(training.DirectoryReporter, "on_checkpoint", original)
    torch.manual_seed(12345)  # the global RNG state of the new process is arbitrary
    resumed = _train(params, prepared_dir, features_dir, tmp_path / "resumed")
    for item in (checkpoint.STATE_FILE, checkpoint.LOG_FILE):
        assert (resumed / item).read_bytes() == (straight / item).read_bytes(), item


def test_select_last_trains_and_picks_exactly_what_an_unprobed_run_does(prepared_dir, features_dir, trained_dir,
                                                                        tmp_path):
    plain = trained_dir / NAME / "seed_0"  # eval_every 0: today's run
    probed = _train(_params(tmp_path, eval_every=5), prepared_dir, features_dir, tmp_path / "m")
    plain_state, plain_log, _ = checkpoint.load(plain)
    state, log, _ = checkpoint.load(probed)
    assert "monitor" not in plain_state and "monitor" in state
    for key, value in plain_state["model"].items():  # probing draws nothing from training's RNGs
        assert torch.equal(value, state["model"][key])
    assert [{k: v for k, v in row.items() if not k.startswith("val_")} for row in log] == plain_log
    model, meta, _ = training.load_trained(probed)
    assert meta["selected"] == {"select": "last", "step": 20}
    for key, value in model.state_dict().items():
        assert torch.equal(value, plain_state["model"][key])


class Scripted:
    """A probe that returns scripted values (the engine, monitor and checkpoints stay real)."""

    keys, directions = ("val_modes",), {"val_modes": "higher"}

    def __init__(self, modes):
        self.modes = list(modes)

    def __call__(self, weights):
        return {"val_modes": self.modes.pop(0)}


def _run(params, prepared_dir, tmp_path, modes):
    cfg = worker_config(NAME, params, prepared_dir)
    training.train_resumable(cfg, tmp_path / "work", make_probe=lambda _: Scripted(modes))
    return checkpoint.load(training.CheckpointStore(tmp_path / "work" / run_name(cfg)).latest())


def test_patience_stops_early_and_a_rerun_stays_stopped(prepared_dir, tmp_path):
    params = _params(tmp_path, eval_every=2, patience=2, checkpoint_every=100)
    state, log, _ = _run(params, prepared_dir, tmp_path, [5, 6, 6, 6, 9, 9, 9, 9, 9, 9])
    assert state["step"] == 8 and log[-1]["step"] == 8 and log[-1][EARLY_STOP] == 1
    assert state["monitor"]["best_step"] == 4 and state["monitor"]["stopped_at"] == 8
    again, log_again, _ = _run(params, prepared_dir, tmp_path, [])  # resumes, stopped: no further probe
    assert again["step"] == 8 and log_again == log


def test_a_mixture_that_loses_its_modes_is_marked_collapsed(prepared_dir, tmp_path):
    state, log, _ = _run(_params(tmp_path, eval_every=5), prepared_dir, tmp_path, [8, 8, 3, 8])
    assert [row.get(COLLAPSED) for row in log if "val_modes" in row] == [None, None, 1, None]
    assert state["monitor"]["collapsed_at"] == 15 and state["step"] == 20  # marked, not stopped


@pytest.mark.parametrize("key, value, message", [
    ("select", "best", "select 'best' needs probes during training: set eval_every > 0"),
    ("patience", 3, "patience 3 counts probes during training: set eval_every > 0"),
    ("eval_every", -5, "models.gan_ring8.train.eval_every"),
    ("select", "first", "models.gan_ring8.train.select"),
    ("patience", 1.5, "models.gan_ring8.train.patience"),
    ("eval_samples", 1, "models.gan_ring8.train.eval_samples"),
])
def test_bad_values_are_refused_naming_the_key(key, value, message):
    raw = tiny_params_dict()
    raw["models"][NAME]["train"][key] = value
    with pytest.raises(ConfigError) as info:
        config.validate(raw)
    assert message in str(info.value) and "models.gan_ring8.train" in str(info.value)


def test_probing_without_a_probe_is_refused(prepared_dir, tmp_path):
    cfg = worker_config(NAME, _params(tmp_path, eval_every=5), prepared_dir)
    with pytest.raises(ConfigError, match="models.gan_ring8.train.eval_every"):
        training.train_resumable(cfg, tmp_path / "work")


def test_a_vae_is_probed_for_fid_and_its_val_elbo(prepared_dir, features_dir, tmp_path):
    from genflow.evaluate.probe import training_probe

    raw = tiny_params_dict()
    raw["models"]["vae_digits"]["train"]["eval_every"] = 5
    cfg = worker_config("vae_digits", config.validate(raw), prepared_dir)
    probe = training_probe(cfg, features_dir)
    engine, _ = training.build_engine(cfg)
    values = probe(engine.model.state_dict())
    assert probe.keys == ("val_fid",) and set(values) == {"val_fid", "val_elbo"} and values["val_elbo"] < 0
    assert tuple(probe.strip.shape) == (8, *cfg.data_shape)  # the strip keeps 8 images per probe


def test_the_train_command_probes_with_the_feature_network_of_models_root(prepared_dir, features_dir, tmp_path,
                                                                          capsys):
    import yaml

    from genflow import cli

    raw = tiny_params_dict()
    raw["ray"]["storage_path"] = str(tmp_path / "work")
    raw["models"][NAME]["train"].update(eval_every=10)
    (tmp_path / "params.yaml").write_text(yaml.safe_dump(raw))
    args = ["train", "--model", NAME, "--params", str(tmp_path / "params.yaml"), "--data-root", str(prepared_dir),
            "--models-root", str(tmp_path / "models"), "--out", str(tmp_path / "models" / NAME)]
    assert cli.main(args) == 2  # no feature network yet: refused, naming what to run
    assert "featurenet" in capsys.readouterr().err
    (tmp_path / "models").mkdir(exist_ok=True)
    (tmp_path / "models" / "featurenet").symlink_to(features_dir)
    assert cli.main(args) in (0, None)
    _, log, _ = checkpoint.load(tmp_path / "models" / NAME / "seed_0")
    assert [row["step"] for row in log if "val_modes" in row] == [10, 20]
