"""CycleGAN (task "translate"): networks, the rows it trains on, batches missing a domain, and
the real pipeline on tiny sprites squares <-> ellipses: train_model, evaluate (the task's
metrics and the identity baseline), export with parity, and `genflow translate`."""
from __future__ import annotations

import json
import re
import subprocess

import numpy as np
import pytest
import torch
from PIL import Image

from genflow import config
from genflow.data.loader import load_split
from genflow.data.shards import read_manifest
from genflow.data.specs import DataFacts
from genflow.errors import ConfigError, DataError, GenflowError
from genflow.export.apps import translate
from genflow.export.exported import ExportedModel
from genflow.models import registry
from genflow.models.base import StepContext
from genflow.models.specs import SPEC_BY_MODEL
from genflow.train.engine import Engine

from conftest import PYTHON, REPO, quiet, tiny_params_dict

SPRITES = {"source": "sprites", "seed": 0, "n_samples": 600, "resolution": 32, "val_fraction": 0.1,
           "test_fraction": 0.2}
CYCLE = {"model": "cyclegan", "dataset": "sprites", "width": 8, "n_res": 1, "domain_a": 0, "domain_b": 1,
         "train": {"steps": 30, "batch_size": 16, "ema_decay": 0.9, "log_every": 10, "checkpoint_every": 30}}
METRICS = ("fid_ab", "fid_ba", "accuracy_ab", "accuracy_ba", "cycle_mse_a", "cycle_mse_b", "pose_error")


def params_with(models: dict, tmp_path=None) -> config.Params:
    raw = tiny_params_dict()
    raw["data"]["sprites"] = dict(SPRITES)
    raw["models"] = models
    if tmp_path is not None:
        raw["ray"]["storage_path"] = str(tmp_path / "work")
    return config.validate(raw)


def cycle_spec(**overrides):
    return params_with({"cg": {**CYCLE, **overrides}}).models["cg"]


# -- spec and networks -------------------------------------------------------------------

@pytest.mark.parametrize("key,value", [("z_dim", 8), ("holdout_class", 2), ("c_dim", 3), ("arch", "mlp"),
                                       ("domain_b", 0), ("resblocks", True)])
def test_spec_rejects_keys_that_do_not_apply(key, value):
    with pytest.raises(ConfigError, match=f"models.cg.{key}"):
        cycle_spec(**{key: value})


def test_domains_are_checked_against_the_classes(sprites_dir):
    """By the spec itself: against the prepared manifest (before training), and against what
    params tell of the embedded sprites (genflow validate)."""
    facts = DataFacts.from_manifest("sprites", read_manifest(sprites_dir))
    assert cycle_spec(domain_b=2).check_data("cg", facts) == []  # heart: class 2 of 3
    [problem] = SPEC_BY_MODEL["cyclegan"].model_validate({**CYCLE, "domain_b": 3}).check_data("cg", facts)
    assert re.match(r"models.cg.domain_b: .* 3 classes \(0..2\); got 3", problem), problem
    with pytest.raises(ConfigError, match=r"models.cg.domain_b: .* 3 classes \(0..2\); got 3"):
        cycle_spec(domain_b=3)


@pytest.mark.parametrize("shape,patches", [((1, 8, 8), 4), ((3, 16, 16), 4), ((1, 32, 32), 4)])
def test_shapes(shape, patches):
    torch.manual_seed(0)
    model = registry.build(cycle_spec(), shape, 3)
    x = torch.rand(5, *shape) * 2 - 1
    for name in ("G_AB", "G_BA"):
        y = getattr(model, name)(x)
        assert y.shape == x.shape and y.min() >= -1 and y.max() <= 1
    for name in ("D_A", "D_B"):
        assert getattr(model, name)(x).shape == (5, 1, patches, patches)
    assert model.translate(x, "ab").shape == x.shape and model.task == "translate"


def test_training_split_keeps_the_two_domains(prepared_dir):
    split = load_split(prepared_dir / "digits", "train")
    model = registry.build(cycle_spec(dataset="digits", domain_a=3, domain_b=7), split.shape, split.num_classes)
    kept = model.training_split(split)
    assert set(kept.labels.tolist()) == {3, 7}
    assert len(kept) == int(((split.labels == 3) | (split.labels == 7)).sum()) < len(split)


@pytest.mark.parametrize("present", [(1,), (0,), (5,)], ids=["only-B", "only-A", "neither"])
def test_a_batch_missing_a_domain_is_finite_and_reaches_every_owned_parameter(prepared_dir, present):
    split = load_split(prepared_dir / "digits", "train")
    torch.manual_seed(0)
    model = registry.build(cycle_spec(), split.shape, split.num_classes)
    engine = Engine(model, train=model.spec.train, seed=0)
    rows = torch.nonzero(torch.isin(split.labels, torch.tensor(present))).squeeze(1)[:6]
    batch = split.batch(rows)
    for index, phase in enumerate(engine.phases):
        engine._freeze_all_but(phase.owns)
        model.zero_grad(set_to_none=True)
        loss, logs = phase.loss(batch, StepContext(step=0, seed=0, phase=index))
        assert torch.isfinite(loss) and all(torch.isfinite(torch.as_tensor(v)) for v in logs.values())
        loss.backward()
        for name, p in model.named_parameters():
            if name.split(".")[0] in phase.owns:
                assert p.grad is not None and torch.isfinite(p.grad).all(), name
            else:
                assert p.grad is None, name
        if phase.name == "D":  # a critic's loss needs a real and a fake: zero-weighted without both
            assert float(loss.detach()) == 0.0
        elif present != (5,):  # G still learns from the domain that is there
            assert float(loss.detach()) > 0 and any(p.grad.abs().sum() > 0 for n, p in model.named_parameters()
                                           if n.split(".")[0] in phase.owns)
    model.set_active({})
    engine.train_step(split, SameRows(rows))  # a whole step, optimizers included
    assert all(torch.isfinite(p).all() for p in model.parameters())


class SameRows:
    """A BatchPlan stand-in that always hands out the same rows."""

    def __init__(self, rows):
        self.rows = rows

    def indices(self, step):
        return self.rows


# -- the pipeline on tiny sprites ------------------------------------------------------

@pytest.fixture(scope="module")
def sprites_dir(tmp_path_factory):
    from genflow.data.prepare import prepare

    out = tmp_path_factory.mktemp("prepared") / "sprites"
    prepare(params_with({}).data["sprites"], out, log=quiet)
    return out


@pytest.fixture(scope="module")
def sprites_features(sprites_dir, tmp_path_factory):
    from genflow.featurenet.stage import build_feature_space

    out = tmp_path_factory.mktemp("featurenet") / "sprites"
    spec = config.FeatureNetSpec(epochs=3, batch_size=64, width=4)
    build_feature_space(sprites_dir, spec, out, log=quiet)
    return out


@pytest.fixture(scope="module")
def pipeline(sprites_dir, sprites_features, tmp_path_factory):
    """train_model -> evaluate_model -> export_model, as the DVC stages run them."""
    from genflow.evaluate.protocol import evaluate_model
    from genflow.export.write import export_model
    from genflow.launch import train as train_model

    root = tmp_path_factory.mktemp("cyclegan")
    params = params_with({"cg": CYCLE}, root)
    train_model("cg", params, sprites_dir.parent, root / "models" / "cg")
    metrics = evaluate_model(root / "models" / "cg", sprites_dir, sprites_features, params.evaluate,
                             root / "metrics.json", root / "cg.png", log=quiet)
    card = export_model(root / "models" / "cg", root / "export", data_dir=sprites_dir,
                        metrics_path=root / "metrics.json", log=quiet)
    return {"root": root, "metrics": metrics, "card": card, "export": root / "export"}


def test_evaluate_reports_every_translation_metric_and_the_identity_baseline(pipeline):
    metrics = pipeline["metrics"]
    assert json.loads((pipeline["root"] / "metrics.details.json").read_text())["protocol"]["task"] == "translate"
    identity = metrics["baselines"]["identity"]
    for key in METRICS:
        assert np.isfinite(metrics[key]) and np.isfinite(identity[key]), key
    assert 0 <= metrics["accuracy_ab"] <= 1 and metrics["cycle_mse_a"] > 0 and metrics["pose_error"] > 0
    assert identity["cycle_mse_a"] == identity["cycle_mse_b"] == identity["pose_error"] == 0
    # the identity leaves squares squares: the classifier (trained 3 epochs) rarely calls them ellipses
    assert identity["accuracy_ab"] < 0.5 and identity["fid_ab"] > 0
    picture = Image.open(pipeline["root"] / "cg.png")
    assert picture.size == ((8 * 33 + 1) * 2, (6 * 33 + 1) * 2)  # 6 rows of 8 (32 px, pad 1, x2)


def test_export_is_a_parity_checked_translator(pipeline):
    card = pipeline["card"]
    assert card["task"] == "translate" and set(card["networks"]) == {"translate_ab", "translate_ba"}
    assert card["io"]["domains"] == {"A": 0, "B": 1} and card["io"]["data_shape"] == [1, 32, 32]
    for net in card["networks"].values():
        assert max(net["parity"]["max_error"].values()) <= 1e-5 and net["onnx_inputs"] == ["x"]
    exported = ExportedModel(pipeline["export"])
    x = torch.rand(3, 1, 32, 32).numpy() * 2 - 1
    assert exported.translate(x, "ab").shape == (3, 1, 32, 32)


def _write_pngs(folder, images: np.ndarray):
    folder.mkdir()
    for i, image in enumerate(images):
        Image.fromarray(image).save(folder / f"{i}.png")
    return folder


def _cli(*args):
    return subprocess.run([str(PYTHON), "-m", "genflow.cli", *map(str, args)], cwd=REPO, capture_output=True,
                          text=True, timeout=120)


def test_genflow_translate_writes_input_translation_and_cycle(pipeline, sprites_dir, tmp_path):
    test = load_split(sprites_dir, "test")
    squares = test.x[test.labels == 0][:5, 0].numpy()
    folder = _write_pngs(tmp_path / "squares", squares)
    proc = _cli("translate", pipeline["export"], folder, "--out", tmp_path / "grid.png", "--direction", "ab")
    assert proc.returncode == 0, proc.stderr
    assert "cycle mean squared error" in proc.stdout
    grid = Image.open(tmp_path / "grid.png")
    assert grid.size == ((5 * 33 + 1) * 2, (3 * 33 + 1) * 2)  # input, translation, cycle back
    first = np.asarray(grid)[2:66, 2:66]  # the first input, upscaled x2 nearest
    assert np.array_equal(first[::2, ::2], squares[0])


def test_translator_refuses_generator_commands_and_wrong_images(pipeline, tmp_path):
    proc = _cli("sample", pipeline["export"], "--out", tmp_path / "s.png")
    assert proc.returncode == 2 and "no generator" in proc.stderr and "genflow translate" in proc.stderr
    assert "Traceback" not in proc.stderr
    small = _write_pngs(tmp_path / "small", np.zeros((2, 8, 8), dtype=np.uint8))
    with pytest.raises(DataError, match="the model takes 32x32"):
        translate(ExportedModel(pipeline["export"]), small, tmp_path / "t.png")


def test_translate_refuses_an_export_that_is_not_a_translator(prepared_dir, tmp_path):
    from genflow.export.write import export_model
    from genflow.launch import train as train_model

    raw = tiny_params_dict()
    raw["ray"]["storage_path"] = str(tmp_path / "work")
    raw["models"] = {"g": {**raw["models"]["gan_digits"], "train": {"steps": 2, "batch_size": 16}}}
    train_model("g", config.validate(raw), prepared_dir, tmp_path / "models" / "g")
    export_model(tmp_path / "models" / "g", tmp_path / "export", log=quiet)
    digits = _write_pngs(tmp_path / "digits", np.zeros((2, 8, 8), dtype=np.uint8))
    with pytest.raises(GenflowError, match="translate: model 'g' has no translate_ab .*translation model"):
        translate(ExportedModel(tmp_path / "export"), digits, tmp_path / "t.png")



@pytest.mark.parametrize("metric", ["fid", "kid"])
def test_sweep_probe_scores_both_directions_on_val_rows(pipeline, sprites_dir, sprites_features, metric):
    from genflow.evaluate.translate import domains, translation_metrics
    from genflow.sweep.space import SweepSpec
    from genflow.sweep.trial import Probe
    from genflow.train.worker import load_trained, trained_seeds

    model, _, _ = load_trained(trained_seeds(pipeline["root"] / "models" / "cg")[0])
    probe = Probe(sprites_dir, sprites_features, SweepSpec(model="cg", dataset="sprites", metric=metric))
    value = probe(model)
    assert np.isfinite(value)
    if metric == "fid":  # the mean of the two directions' FID, as the evaluation computes them
        a, b = domains(probe.real, probe.real_c, model.spec)
        both = translation_metrics(lambda x: model.translate(x, "ab"), lambda x: model.translate(x, "ba"), a, b,
                                   probe.features, model.spec)
        assert value == pytest.approx((both["fid_ab"] + both["fid_ba"]) / 2)
