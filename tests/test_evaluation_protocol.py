"""The evaluation protocol: every metric and its floor, model-aware metrics, stacked-digit
modes, anomaly detection, conditional metrics and the optional Inception feature space."""
from __future__ import annotations

import json
import math

import numpy as np
import pytest
import torch

from genflow import config

from genflow.data.loader import load_split
from genflow.data.prepare import prepare
from genflow.errors import DataError
from genflow.evaluate.model_metrics import class_fid, path_length
from genflow.evaluate.protocol import evaluate_model, sample_rows
from genflow.featurenet.network import FeatureSpace
from genflow.featurenet.stage import build_feature_space
from genflow.io import sha256_file
from genflow.metrics import discrete_modes
from genflow.models import registry
from genflow.train import worker as training
from genflow.train.worker_config import worker_config

from conftest import conditional_params_dict, quiet, tiny_params_dict

SAMPLE_KEYS = ("fid", "kid", "precision", "recall", "density", "coverage")
# the linear probes and CAS are test_representation's and test_augmentation's: off in the evaluations
# here, which check other metrics (each costs seconds per evaluation)
NOT_CHECKED_HERE = {"linear_probe": False, "augmentation_epochs": 0}


def _evaluate(params, name, prepared, features, tmp_path):
    spec = params.models[name]
    return evaluate_model(tmp_path / "models" / name, prepared / spec.dataset, features / spec.dataset,
                          params.evaluate.model_copy(update=NOT_CHECKED_HERE), tmp_path / f"{name}.json",
                          tmp_path / f"{name}.png", log=quiet)


def _train(params, name, prepared, tmp_path):
    raw_dir = tmp_path / "models" / name
    training.train_in_process(worker_config(name, params, prepared), raw_dir / "seed_0", tmp_path / "work")


def test_every_sample_metric_has_its_floor(trained_dir, prepared_dir, features_dir, tmp_path):
    params = config.validate(tiny_params_dict())
    metrics = evaluate_model(trained_dir / "vae_digits", prepared_dir / "digits", features_dir / "digits",
                             params.evaluate.model_copy(update=NOT_CHECKED_HERE), tmp_path / "m.json",
                             tmp_path / "s.png", log=quiet)
    for key in SAMPLE_KEYS:
        assert math.isfinite(metrics[key]) and math.isfinite(metrics[f"{key}_floor"]), key
    assert metrics["fid_floor"] < metrics["fid"] and metrics["kid_floor"] < metrics["kid"]
    for key in ("precision", "recall", "coverage"):
        assert 0 <= metrics[key] <= 1 and 0 <= metrics[f"{key}_floor"] <= 1
    # a 20-step VAE is blurry: its samples sit off the real manifold more than real rows do
    assert metrics["precision"] < metrics["precision_floor"]
    # likelihood: the IWAE bound is tighter than the ELBO, so its NLL is lower than -ELBO
    assert metrics["nll_iwae"] <= -metrics["elbo"] + 1e-6
    assert metrics["path_length"] > 0
    protocol = json.loads((tmp_path / "m.details.json").read_text())["protocol"]
    assert protocol["kid"] == {"subsets": 100, "subset_size": 200, "kernel": "(x.y/d + 1)^3"}
    assert protocol["k_precision_recall"] == 3 and protocol["k_density_coverage"] == 5
    assert protocol["iwae_samples"] == 64 and protocol["feature_kind"] == "classifier"
    backend = protocol["feature_backend"]  # which network and how images reach it (#30)
    assert backend["weights_sha256"] == protocol["feature_space"] and "featurenet" in backend["network"]
    assert backend["resize"].startswith("none") and "[-1, 1]" in backend["normalisation"]


def test_iwae_with_one_sample_is_the_elbo_and_tightens_with_more(trained_dir, prepared_dir):
    model, _, _ = training.load_trained(trained_dir / "vae_digits" / "seed_0")
    x, _ = load_split(prepared_dir / "digits", "test").batch(torch.arange(64))
    gen = torch.Generator().manual_seed(5)
    # K = 1 is the ELBO with a Monte-Carlo KL instead of the closed form: equal in expectation
    elbo = torch.stack([model.elbo(x, None, gen) for _ in range(100)]).mean()
    one = torch.stack([model.iwae_bound(x, None, 1, gen) for _ in range(100)]).mean()
    assert one.item() == pytest.approx(elbo.item(), rel=2e-3)
    many = model.iwae_bound(x, None, 64, gen).mean()
    assert many > one


class _LinearDecoder(torch.nn.Module):
    def __init__(self, scale: float):
        super().__init__()
        self.a = torch.tensor([[1.0, 0.5], [-0.3, 2.0]]) * scale

    def forward(self, z, c=None):
        return z @ self.a.T


class _StubModel:
    def __init__(self, scale: float):
        self.spec = type("Spec", (), {"z_dim": 2, "c_dim": 0})()
        self._decoder = _LinearDecoder(scale)

    def decoder(self):
        return self._decoder


def test_path_length_scales_with_the_square_of_the_decoder_and_is_zero_for_a_constant():
    identity = lambda x: x.double()  # noqa: E731  (the 2-D feature space)
    base = path_length(_StubModel(1.0), identity, 500, seed=0, epsilon=1e-3)
    assert base > 0
    assert path_length(_StubModel(2.0), identity, 500, seed=0, epsilon=1e-3) == pytest.approx(4 * base, rel=1e-4)
    assert path_length(_StubModel(0.0), identity, 500, seed=0, epsilon=1e-3) == 0.0


def test_class_fid_of_identical_sets_is_zero_and_skips_small_classes():
    rng = np.random.default_rng(0)
    f = torch.from_numpy(rng.normal(size=(60, 3)))
    c = torch.tensor([0] * 25 + [1] * 30 + [2] * 5)  # class 2 has too few rows to count
    assert class_fid(f, c, f, c) == pytest.approx(0.0, abs=1e-6)
    shifted = f + (c == 1)[:, None] * 1.0  # move class 1 only: its FID is ||shift||^2 = 3
    assert class_fid(f, c, shifted, c) == pytest.approx(3.0 / 2, rel=1e-6)
    assert class_fid(f[55:], c[55:], f, c) is None  # only class 2 in a, with 5 rows


def test_reference_rows_are_a_seeded_sample_not_the_first_rows():
    from genflow.data.loader import Split

    labels = torch.arange(10).repeat_interleave(100)  # sorted by class, like an image folder
    split = Split(kind="image", x=torch.zeros(1000, 1, 4, 4, dtype=torch.uint8), labels=labels, num_classes=10)
    _, picked = sample_rows(split, 200, seed=0)
    assert len(picked) == 200 and len(torch.unique(picked)) == 10
    assert torch.equal(sample_rows(split, 200, seed=0)[1], picked)  # deterministic for a seed
    assert len(sample_rows(split, 5000, seed=0)[1]) == 1000


def test_discrete_modes_on_hand_made_collapse():
    assert discrete_modes(np.arange(1000), 1000) == {"modes": 1000, "reverse_kl": pytest.approx(0.0, abs=1e-12)}
    collapsed = discrete_modes(np.array([7] * 50 + [8] * 50), 1000)
    assert collapsed["modes"] == 2 and collapsed["reverse_kl"] == pytest.approx(math.log(500))
    with pytest.raises(ValueError):
        discrete_modes(np.array([1000]), 1000)


def test_conditional_model_gets_class_metrics_and_their_floors(conditional_dir, prepared_dir, features_dir, tmp_path):
    params = config.validate(conditional_params_dict())
    spec = params.evaluate.model_copy(update=NOT_CHECKED_HERE)
    metrics = evaluate_model(conditional_dir / "cgan_digits", prepared_dir / "digits", features_dir / "digits", spec,
                             tmp_path / "cgan.json", tmp_path / "cgan.png", log=quiet)
    assert 0 <= metrics["class_accuracy"] <= 1
    # the floor is the classifier's accuracy on the reference rows (real, unseen by it)
    x, c = sample_rows(load_split(prepared_dir / "digits", "test"), 200, params.evaluate.seed)
    direct = (FeatureSpace(features_dir / "digits").classify(x) == c).float().mean().item()
    assert metrics["class_accuracy_floor"] == pytest.approx(direct, abs=1e-6)
    assert "cfid" in metrics and metrics["cfid_floor"] < metrics["cfid"]


@pytest.fixture(scope="module")
def stacked(tmp_path_factory):
    root = tmp_path_factory.mktemp("stacked")
    raw = tiny_params_dict()
    raw["data"] = {"stacked": {"source": "stacked_digits", "n_samples": 2000, "resolution": 8}}
    raw["featurenet"]["epochs"] = 5
    raw["models"] = {"gan_stacked": {"model": "gan", "dataset": "stacked", "arch": "conv", "z_dim": 8, "width": 8,
                                     "train": {"steps": 5, "batch_size": 32, "log_every": 5,
                                               "checkpoint_every": 5}}}
    params = config.validate(raw)
    prepare(params.data["stacked"], root / "data" / "stacked", log=quiet)
    build_feature_space(root / "data" / "stacked", params.featurenet, root / "features" / "stacked", log=quiet)
    return params, root


def test_stacked_digits_feature_space_names_modes(stacked):
    params, root = stacked
    space = FeatureSpace(root / "features" / "stacked")
    assert space.kind == "channelwise"
    meta = json.loads((root / "features" / "stacked" / "featurenet.json").read_text())
    assert meta["test_accuracy"] > 0.7 and meta["feature_dim"] == 3 * 64
    test = load_split(root / "data" / "stacked", "test")
    x, labels = test.batch(torch.arange(len(test)))
    triples = space.classify(x)
    assert triples.shape == (len(test), 3)
    assert (triples @ torch.tensor([100, 10, 1]) == labels).float().mean() > 0.4
    assert space(x[:5]).shape == (5, 192)


def test_stacked_digits_evaluation_counts_modes_of_1000(stacked, tmp_path):
    params, root = stacked
    _train(params, "gan_stacked", root / "data", tmp_path)
    metrics = _evaluate(params, "gan_stacked", root / "data", root / "features", tmp_path)
    # 200 real rows can show at most 200 of the 1000 modes: the floor says so
    assert 100 < metrics["modes_floor"] <= 200 and metrics["reverse_kl_floor"] > 0
    assert 1 <= metrics["modes"] <= 200 and metrics["reverse_kl"] >= metrics["reverse_kl_floor"] - 0.5


def test_anomaly_detection_trains_without_the_class_and_reports_auroc(prepared_dir, features_dir, tmp_path):
    raw = tiny_params_dict()
    raw["models"] = {"vae_no3": {**raw["models"]["vae_digits"], "holdout_class": 3}}
    params = config.validate(raw)
    engine, data = training.build_engine(worker_config("vae_no3", params, prepared_dir))
    assert 3 not in data.labels.tolist() and len(data) < len(load_split(prepared_dir / "digits", "train"))
    _train(params, "vae_no3", prepared_dir, tmp_path)
    metrics = _evaluate(params, "vae_no3", prepared_dir, features_dir, tmp_path)
    assert 0.0 <= metrics["anomaly_auroc"] <= 1.0
    assert json.loads((tmp_path / "vae_no3.details.json").read_text())["protocol"]["anomaly"]["holdout_class"] == 3


@pytest.mark.parametrize("entry, message", [
    ({"holdout_class": 3, "c_dim": 10}, "unconditional"),
    ({"holdout_class": 10}, "10 classes"),
])
def test_holdout_class_is_validated(entry, message):
    raw = tiny_params_dict()
    raw["models"]["vae_digits"].update(entry)
    with pytest.raises(config.ConfigError, match=message):
        config.validate(raw)


def test_inception_feature_space_from_a_local_file(trained_dir, prepared_dir, features_dir, tmp_path):
    from genflow.featurenet.inception import FIDInception

    weights = tmp_path / "pt_inception.pth"
    torch.manual_seed(0)
    torch.save(FIDInception().state_dict(), weights)
    raw = tiny_params_dict()
    raw["evaluate"].update(n_samples=12, n_real=12, path_samples=0, kid_subset_size=6,
                           inception_weights=str(weights), **NOT_CHECKED_HERE)
    params = config.validate(raw)
    metrics = evaluate_model(trained_dir / "gan_digits", prepared_dir / "digits", features_dir / "digits",
                             params.evaluate, tmp_path / "m.json", tmp_path / "s.png", log=quiet)
    protocol = metrics["protocol"]
    assert protocol["feature_kind"] == "inception-v3" and protocol["feature_space"] == sha256_file(weights)
    backend = protocol["feature_backend"]
    assert backend["weights_sha256"] == sha256_file(weights) and backend["feature_dim"] == 2048
    assert backend["input_path"] == "tf1" and "TF 1.x resize_bilinear" in backend["resize"]
    assert "(x - 128) / 128" in backend["normalisation"]
    assert math.isfinite(metrics["fid"]) and "path_length" not in metrics
    raw["evaluate"]["inception_weights"] = str(tmp_path / "missing.pth")
    with pytest.raises(DataError, match="missing.pth"):
        evaluate_model(trained_dir / "gan_digits", prepared_dir / "digits", features_dir / "digits",
                       config.validate(raw).evaluate, tmp_path / "m2.json", tmp_path / "s2.png", log=quiet)


def test_registry_models_all_have_an_anomaly_score(prepared_dir):
    x, _ = load_split(prepared_dir / "digits", "test").batch(torch.arange(8))
    params = config.validate(tiny_params_dict())
    for family, name in (("gan", "gan_digits"), ("vae", "vae_digits")):
        model = registry.build(params.models[name], (1, 8, 8), 10)
        scores = model.anomaly_score(x, torch.Generator().manual_seed(0))
        assert scores.shape == (8,) and torch.isfinite(scores).all(), family


def test_the_training_probe_counts_stacked_digits_modes_and_ranks_by_them(stacked):
    from genflow.evaluate.probe import training_probe

    params, root = stacked
    cfg = worker_config("gan_stacked", params, root / "data")
    probe = training_probe(cfg, root / "features")
    engine, _ = training.build_engine(cfg)
    values = probe(engine.model.state_dict())
    assert probe.keys == ("val_modes", "val_reverse_kl")  # stacked digits: modes, then KL (#27)
    assert set(values) == {"val_fid", "val_modes", "val_reverse_kl"} and 1 <= values["val_modes"] <= 1000
