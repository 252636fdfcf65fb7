"""The evaluate stage's two files: the headline DVC metrics and the details beside them, and the
table it prints."""
from __future__ import annotations

import json

from genflow.evaluate.protocol import evaluate_model, metrics_table
from genflow.metrics import catalog

DETAILS = {
    "fid": 47.0, "fid_std": 16.2, "fid_floor": 9.4, "kid": 0.03, "kid_std": 0.01, "kid_floor": 0.001,
    "kid_subset_std": 0.002, "precision": 0.7, "precision_std": 0.05, "precision_floor": 0.75,
    "elbo": -30.0, "elbo_std": 1.0, "nll_iwae": 28.5, "nll_iwae_std": 0.9, "n_seeds": 3,
    "per_seed": {"0": {"fid": 40.0}}, "protocol": {"task": "generate"}, "baselines": {},
}


def test_headline_keeps_headline_metrics_flat():
    head = catalog.headline(DETAILS)
    assert head == {"fid": 47.0, "fid_std": 16.2, "fid_floor": 9.4, "precision": 0.7, "precision_std": 0.05,
                    "precision_floor": 0.75, "nll_iwae": 28.5, "nll_iwae_std": 0.9, "n_seeds": 3}


def test_details_path_sits_beside_the_metrics_file(tmp_path):
    assert catalog.details_path(tmp_path / "metrics" / "gan.json") == tmp_path / "metrics" / "gan.details.json"


def test_every_written_metric_is_in_the_catalog():
    """The report's columns, the table and the headline all come from one list."""
    names = [m.name for m in catalog.METRICS]
    assert len(names) == len(set(names)) and all(m.better in ("lower", "higher") for m in catalog.METRICS)


def test_table_shows_mean_std_and_floor():
    table = metrics_table(DETAILS).splitlines()
    assert table[0].split() == ["metric", "mean", "±", "std", "floor"]
    fid = next(line for line in table if line.strip().startswith("FID"))
    assert fid.split() == ["FID", "↓", "*", "47", "±", "16.2", "9.4"]  # * marks a headline number
    elbo = next(line for line in table if line.strip().startswith("ELBO"))
    assert "*" not in elbo and elbo.split()[-3:] == ["-30", "±", "1"]


def test_evaluate_writes_headline_and_details(trained_dir, prepared_dir, features_dir, params, tmp_path):
    lines = []
    evaluate_model(trained_dir / "vae_digits", prepared_dir / "digits", features_dir / "digits", params.evaluate,
                   tmp_path / "vae_digits.json", tmp_path / "vae_digits.png", log=lines.append)
    head = json.loads((tmp_path / "vae_digits.json").read_text())
    details = json.loads((tmp_path / "vae_digits.details.json").read_text())
    assert head == catalog.headline(details) and len(head) <= 25
    assert {"per_seed", "protocol", "elbo", "kid"} <= set(details) and "elbo" not in head
    assert "mean ± std" in lines[-1] and "NLL, IWAE" in lines[-1]
