"""Linear probes on frozen features (issue #29): the probe against cases with a known answer,
and the evaluate stage and the report carrying its numbers."""
from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from conftest import quiet, tiny_params_dict

from genflow import config
from genflow.evaluate.protocol import evaluate_model
from genflow.evaluate.representation import FEATURENET, PIXELS, LinearProbes, embed, feature_extractor
from genflow.featurenet.network import FeatureSpace
from genflow.featurenet.stage import build_feature_space
from genflow.metrics import catalog
from genflow.metrics.linear_probe import FRACTIONS, fit_and_score, metric_name, probe_metrics, stratified_subset
from genflow.models import registry
from genflow.models.specs import SPEC_BY_MODEL
from genflow.report.build import build_report

KEYS = [metric_name(f) for f in FRACTIONS]
# the feature network's own head is one linear layer on the features the probe reads, so a probe
# fitted on every training label can match its test accuracy; it is fitted with another loss
# (L2-regularised, on standardised features, by L-BFGS instead of Adam), so within 2.5 points
# (9 of digits' 360 test images)
FEATURENET_TOLERANCE = 0.025


@pytest.fixture(scope="module")
def probes(prepared_dir) -> LinearProbes:
    spec = config.validate(tiny_params_dict()).evaluate
    found = LinearProbes.load(prepared_dir / "digits", spec)
    assert found is not None
    return found


@pytest.fixture(scope="module")
def trained_features(prepared_dir, tmp_path_factory) -> FeatureSpace:
    """A feature network trained to a useful accuracy (the suite's tiny one sees one epoch)."""
    spec = config.FeatureNetSpec(epochs=40, batch_size=64, lr=3e-3, width=8, seed=0)
    out = tmp_path_factory.mktemp("featurenet") / "digits"
    build_feature_space(prepared_dir / "digits", spec, out, log=quiet)
    return FeatureSpace(out)


def test_stratified_subsets_keep_every_class_and_are_seeded():
    labels = np.repeat(np.arange(10), 120)
    rows = stratified_subset(labels, 0.01, seed=3)
    assert len(rows) == 10 and sorted(labels[rows]) == list(range(10))  # round(1.2) = 1 row of each class
    assert np.array_equal(rows, stratified_subset(labels, 0.01, seed=3))
    assert not np.array_equal(rows, stratified_subset(labels, 0.01, seed=4))
    tenth = stratified_subset(labels, 0.1, seed=0)
    assert np.array_equal(np.bincount(labels[tenth]), np.full(10, 12))
    assert np.array_equal(stratified_subset(labels, 1.0, seed=0), np.arange(len(labels)))


def test_probe_on_the_feature_networks_features_reaches_its_accuracy(probes, trained_features):
    own = trained_features.meta["test_accuracy"]
    assert own > 0.85  # a feature network worth comparing with
    got = probes.reference_rows(trained_features)[FEATURENET]["probe_100pct"]
    assert abs(got - own) <= FEATURENET_TOLERANCE, (got, own)


def test_pixels_with_every_label_reach_a_high_accuracy(probes, features_dir):
    """Logistic regression on digits' 64 pixels is a classic ~96 % classifier."""
    pixels = probes.reference_rows(FeatureSpace(features_dir / "digits"))[PIXELS]
    assert pixels["probe_100pct"] >= 0.93
    assert pixels["probe_1pct"] < pixels["probe_10pct"] < pixels["probe_100pct"]  # fewer labels, worse probe
    assert 0.3 < pixels["probe_1pct"]  # one row per class already beats chance (0.1) by far


def test_a_constant_feature_gives_chance_accuracy(probes):
    """Nothing to separate: the probe answers the most frequent class of its training rows, so its
    accuracy is that class's share of the test rows, about 1 / 10 on digits."""
    constant = np.ones((len(probes.y_train), 5))
    got = fit_and_score(constant, probes.y_train, np.ones((len(probes.y_test), 5)), probes.y_test)
    majority = np.bincount(probes.y_train).argmax()
    assert got == pytest.approx(np.mean(probes.y_test == majority))
    assert 0.07 <= got <= 0.13
    at_all_fractions = probe_metrics(constant, probes.y_train, np.ones((len(probes.y_test), 5)), probes.y_test, 0)
    assert all(0.05 <= value <= 0.15 for value in at_all_fractions.values())


def test_the_fixed_label_of_a_conditional_encoder_does_not_change_the_probe(probes):
    """cVAE's μ = A trunk(x) + B one-hot(c) + b: another fixed label moves every μ by one vector,
    which standardisation removes, so the probe's accuracy does not depend on the label chosen."""
    spec = SPEC_BY_MODEL["vae"].model_validate({"model": "vae", "dataset": "digits", "arch": "conv", "z_dim": 4,
                                                "width": 8, "c_dim": 10})
    torch.manual_seed(0)
    model = registry.build(spec, (1, 8, 8), 10).eval()
    kind, fn = feature_extractor(model)
    assert kind == "encoder μ, label fixed to class 0"
    other = lambda x: model.E(x, torch.full((len(x),), 7))[0]  # noqa: E731
    mu0, mu7 = embed(fn, probes.x_train), embed(other, probes.x_train)
    shift = mu7 - mu0
    assert np.allclose(shift, shift[0], atol=1e-5) and not np.allclose(shift[0], 0)
    assert probes.scores(fn) == probes.scores(other)


def test_families_offer_their_features():
    def built(family: str, **extra):
        spec = SPEC_BY_MODEL[family].model_validate({"model": family, "dataset": "digits", "arch": "conv",
                                                     "z_dim": 4, "width": 8, **extra})
        return registry.build(spec, (1, 8, 8), 10)

    assert feature_extractor(built("gan"))[0] == "D trunk features"
    assert feature_extractor(built("gan", c_dim=10))[0] == "D trunk features"  # the projection comes after the trunk
    assert feature_extractor(built("gan", pac=2)) is None  # PacGAN's D reads packs
    assert feature_extractor(built("vae"))[0] == "encoder μ"
    assert feature_extractor(built("vaegan"))[0] == "encoder μ"


@pytest.fixture(scope="module")
def evaluated_probes(trained_dir, prepared_dir, features_dir, tmp_path_factory):
    params = config.validate(tiny_params_dict())
    root = tmp_path_factory.mktemp("probed")
    for name in ("gan_digits", "gan_ring8"):
        evaluate_model(trained_dir / name, prepared_dir / params.models[name].dataset,
                       features_dir / params.models[name].dataset, params.evaluate, root / "metrics" / f"{name}.json",
                       root / "samples" / f"{name}.png", log=quiet)
    return root, params


def test_evaluate_writes_probe_accuracies_references_and_protocol(evaluated_probes):
    root, _ = evaluated_probes
    details = json.loads((root / "metrics" / "gan_digits.details.json").read_text())
    for seed_values in details["per_seed"].values():
        assert all(0.0 <= seed_values[key] <= 1.0 for key in KEYS)
    assert set(details["probe_references"]) == {PIXELS, FEATURENET}
    assert details["probe_references"][PIXELS]["probe_100pct"] >= 0.93
    probe = details["protocol"]["linear_probe"]
    assert probe["features"] == "D trunk features" and probe["label_fractions"] == list(FRACTIONS)
    assert "C = 1.0" in probe["regularisation"] and probe["n_test"] > 300
    head = json.loads((root / "metrics" / "gan_digits.json").read_text())
    assert head == catalog.headline(details) and "probe_10pct" in head and "probe_1pct" not in head
    ring = json.loads((root / "metrics" / "gan_ring8.details.json").read_text())  # 2-D points: nothing to probe
    assert "probe_references" not in ring and not any(key in ring for key in KEYS)


def test_evaluate_without_linear_probe(trained_dir, prepared_dir, features_dir, tmp_path):
    raw = tiny_params_dict()
    raw["evaluate"]["linear_probe"] = False
    spec = config.validate(raw).evaluate
    details = evaluate_model(trained_dir / "vae_digits", prepared_dir / "digits", features_dir / "digits", spec,
                             tmp_path / "vae.json", tmp_path / "vae.png", log=quiet)
    assert "probe_references" not in details and "probe_10pct" not in details


def test_report_shows_probe_columns_reference_rows_and_picture(evaluated_probes, tmp_path):
    root, params = evaluated_probes
    models = {name: params.models[name] for name in ("gan_digits", "gan_ring8")}
    text = build_report(models, root / "metrics", root / "samples", tmp_path / "reports", root / "none",
                        models_dir=root / "none")
    assert "probe acc. 1 % labels ↑" in text and "probe acc. 100 % labels ↑" in text
    details = json.loads((root / "metrics" / "gan_digits.details.json").read_text())
    pixels = next(line for line in text.splitlines() if line.startswith(f"| {PIXELS} (linear probe) |"))
    assert f"{details['probe_references'][PIXELS]['probe_100pct']:.4g}" in pixels
    assert any(line.startswith(f"| {FEATURENET} (linear probe) |") for line in text.splitlines())
    assert (tmp_path / "reports" / "plots" / "digits-probes-linear.png").stat().st_size > 5000
    assert "](plots/digits-probes-linear.png)" in text
