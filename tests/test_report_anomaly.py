"""Anomaly detection from evaluation to report: each seed's ROC points in metrics/<model>.details.json,
and the ROC plot (one curve per model, TPR averaged over seeds, AUROC in the legend) in the
Markdown and in the HTML, rendered in headless Chromium."""
from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from genflow import config
from genflow.data.loader import load_split
from genflow.evaluate.model_metrics import ROC_POINTS, anomaly_scores
from genflow.evaluate.protocol import evaluate_model
from genflow.launch import train as train_model
from genflow.metrics import roc_curve
from genflow.report.build import build_report, load_blocks, roc_curves
from genflow.train.worker import load_trained, trained_seeds

from conftest import quiet, render_in_chromium, tiny_params_dict

HOLDOUT = 3


@pytest.fixture(scope="module")
def holdout_run(prepared_dir, features_dir, tmp_path_factory):
    """A VAE (two seeds) and a GAN trained without digit 3 and evaluated: <root>/{models,metrics,samples}."""
    root = tmp_path_factory.mktemp("holdout")
    raw = tiny_params_dict()
    raw["models"] = {"vae_no3": {**raw["models"]["vae_digits"], "holdout_class": HOLDOUT, "seeds": [0, 1]},
                     "gan_no3": {**raw["models"]["gan_digits"], "holdout_class": HOLDOUT}}
    raw["ray"]["storage_path"] = str(root / "work")
    raw["evaluate"]["path_samples"] = 50  # not what these tests are about
    params = config.validate(raw)
    for name in params.models:
        train_model(name, params, prepared_dir, root / "models" / name)
        evaluate_model(root / "models" / name, prepared_dir / "digits", features_dir / "digits", params.evaluate,
                       root / "metrics" / f"{name}.json", root / "samples" / f"{name}.png", log=quiet)
    return params, root


def test_each_seed_has_roc_points_whose_area_is_its_auroc(holdout_run, prepared_dir):
    params, root = holdout_run
    test = load_split(prepared_dir / "digits", "test")
    x, labels = test.batch(torch.arange(len(test)))
    is_anomaly = (labels == HOLDOUT).numpy()
    for name, spec in params.models.items():
        metrics = json.loads((root / "metrics" / f"{name}.details.json").read_text())
        roc = metrics["anomaly_roc"]
        np.testing.assert_allclose(roc["fpr"], np.linspace(0, 1, ROC_POINTS), atol=1e-6)
        assert set(roc["tpr"]) == set(metrics["per_seed"]) == {str(s) for s in spec.seeds}
        for directory in trained_seeds(root / "models" / name):
            model, meta, _ = load_trained(directory)
            auroc = metrics["per_seed"][str(meta["seed"])]["anomaly_auroc"]
            # the exact curve of the same scores: monotone, and its area is the AUROC evaluate wrote
            fpr, tpr = roc_curve(anomaly_scores(model, x, params.evaluate.seed), is_anomaly)
            assert (np.diff(fpr) >= 0).all() and (np.diff(tpr) >= 0).all()
            assert abs(np.trapezoid(tpr, fpr) - auroc) <= 1e-6
            # the written points: the same curve at fixed FPRs, within half a grid step of the area
            grid_tpr = np.asarray(roc["tpr"][str(meta["seed"])])
            assert len(grid_tpr) == ROC_POINTS and (np.diff(grid_tpr) >= 0).all() and grid_tpr[-1] == 1.0
            assert abs(np.trapezoid(grid_tpr, roc["fpr"]) - auroc) <= 0.5 / (ROC_POINTS - 1) + 1e-5
    assert "anomaly_roc" not in metrics["per_seed"]["0"]  # per-seed values stay scalar


def test_report_draws_the_roc_curves(holdout_run, features_dir, tmp_path):
    params, root = holdout_run
    block = load_blocks(params.models, root / "metrics", {})[0]
    curves = roc_curves(block)
    vae = json.loads((root / "metrics" / "vae_no3.details.json").read_text())
    np.testing.assert_allclose(curves["vae_no3"][1], np.mean(list(vae["anomaly_roc"]["tpr"].values()), axis=0))
    assert curves["vae_no3"][2].startswith(f"{vae['anomaly_auroc']:.4g} ± ")  # two seeds: mean ± CI
    out = tmp_path / "reports"
    text = build_report(params.models, root / "metrics", root / "samples", out, features_dir,
                        models_dir=root / "models")
    assert (out / "plots" / "digits-roc.png").stat().st_size > 0
    assert any(line.startswith("![digits: anomaly detection") and line.endswith("(plots/digits-roc.png)")
               for line in text.splitlines())
    probe, dom = render_in_chromium((out / "comparison.html").read_text(), tmp_path)
    # bars, precision-recall, ROC, training curves and the linear probes (#29), plus every model's samples and
    # interpolation, and its gallery: real vs generated and nearest rows, and reconstructions for the VAE (#30)
    assert probe["broken"] == 0 and probe["images"] == 5 + 2 * len(params.models) + 2 * len(params.models) + 1
    assert 'alt="digits: anomaly detection' in dom
