"""Downstream of training: feature spaces, evaluate, TorchScript export, comparison report."""
from __future__ import annotations

import json
import math

import pytest
import torch
from PIL import Image
from safetensors.torch import load_file

from genflow import config

from genflow.train import checkpoint

from genflow import launch
from genflow.data.shards import manifest_hash
from genflow.errors import DataError
from genflow.evaluate.gallery import gallery_dir
from genflow.evaluate.pictures import interpolation_png
from genflow.evaluate.protocol import evaluate_model
from genflow.export.write import CARD_FILE, TORCHSCRIPT_FILE, WEIGHTS_FILE, export_model, fixed_inputs
from genflow.featurenet.network import FEATURE_DIM, FeatureSpace
from genflow.models import registry
from genflow.report.build import build_report
from genflow.train import worker as training
from genflow.train.worker_config import worker_config

from conftest import MODEL_NAMES, quiet, render_in_chromium, tiny_params_dict

TINY = config.validate(tiny_params_dict())

# torch 2.13 deprecates torch.jit.trace/load, which genflow.export.write is built on
pytestmark = pytest.mark.filterwarnings("ignore:`torch.jit:DeprecationWarning")


@pytest.fixture(scope="module")
def evaluated(trained_dir, prepared_dir, features_dir, tmp_path_factory):
    """<root>/metrics/<model>.json and <root>/samples/<model>.png for every tiny model."""
    root = tmp_path_factory.mktemp("evaluated")
    for name, spec in TINY.models.items():
        evaluate_model(trained_dir / name, prepared_dir / spec.dataset, features_dir / spec.dataset, TINY.evaluate,
                       root / "metrics" / f"{name}.json", root / "samples" / f"{name}.png", log=quiet)
    return root


def test_feature_spaces(features_dir, prepared_dir):
    digits = json.loads((features_dir / "digits" / "featurenet.json").read_text())
    assert digits["kind"] == "classifier" and 0.0 <= digits["test_accuracy"] <= 1.0
    assert digits["data_manifest_sha256"] == manifest_hash(prepared_dir / "digits")
    space = FeatureSpace(features_dir / "digits")
    assert space.id == digits["sha256"]
    feats = space(torch.zeros(5, 1, 8, 8))
    assert feats.shape == (5, FEATURE_DIM) and feats.dtype == torch.float64
    ring = FeatureSpace(features_dir / "ring8")
    assert ring.id == "identity" and not (features_dir / "ring8" / "weights.safetensors").exists()
    points = torch.randn(4, 2)
    assert torch.equal(ring(points), points.double())


def test_feature_space_weights_are_verified(features_dir, tmp_path):
    import shutil

    shutil.copytree(features_dir / "digits", tmp_path / "fs")
    weights = tmp_path / "fs" / "weights.safetensors"
    blob = bytearray(weights.read_bytes())
    blob[-1] ^= 0xFF
    weights.write_bytes(bytes(blob))
    with pytest.raises(DataError, match="weights.safetensors"):
        FeatureSpace(tmp_path / "fs")


@pytest.mark.parametrize("name", MODEL_NAMES)
def test_evaluate_writes_metrics_and_picture(name, evaluated, trained_dir, prepared_dir, features_dir):
    spec = TINY.models[name]
    metrics = json.loads((evaluated / "metrics" / f"{name}.details.json").read_text())
    for key in ("fid", "fid_floor"):
        assert math.isfinite(metrics[key]) and metrics[key] >= 0
    protocol = metrics["protocol"]
    assert protocol["n_generated"] == 200 and protocol["n_real"] == 200 and protocol["n_floor"] == 200
    assert protocol["reference_split"] == "test" and protocol["seed"] == 0
    assert protocol["data_manifest_sha256"] == manifest_hash(prepared_dir / spec.dataset)
    meta = json.loads((trained_dir / name / "seed_0" / "meta.json").read_text())
    assert protocol["model_state_sha256"] == {"0": meta["state_sha256"]}
    assert protocol["feature_space"] == FeatureSpace(features_dir / spec.dataset).id
    mixture_keys = {"modes", "high_quality", "reverse_kl", "modes_floor", "high_quality_floor", "reverse_kl_floor"}
    if spec.dataset == "ring8":
        assert mixture_keys <= set(metrics)
        assert metrics["modes_floor"] == 8 and metrics["high_quality_floor"] > 0.9  # real data covers the ring
        assert 0 <= metrics["high_quality"] <= 1 and 0 <= metrics["modes"] <= 8
    else:
        assert not mixture_keys & set(metrics)
    if spec.model == "vae":
        assert metrics["elbo"] < 0 and metrics["recon_mse"] > 0
    else:
        assert "elbo" not in metrics and "recon_mse" not in metrics

    png = evaluated / "samples" / f"{name}.png"
    with Image.open(png) as image:
        assert image.format == "PNG" and image.width > 32 and image.height > 32
        image.load()
    with Image.open(interpolation_png(png)) as strip:  # images: 4 paths (rows) of 8; points: a plot
        strip.load()
        assert strip.format == "PNG" and strip.width > (strip.height if spec.dataset == "digits" else 32)
    expected = {"real_vs_generated.png"}  # 2-D points: a scatter beside the real one, nothing to match
    if spec.dataset == "digits":
        expected |= {"nearest.png"} | ({"reconstructions.png"} if spec.model == "vae" else set())
    assert {p.name for p in gallery_dir(png).iterdir()} == expected


def test_evaluate_is_deterministic(evaluated, trained_dir, prepared_dir, features_dir, tmp_path):
    name = "gan_digits"
    evaluate_model(trained_dir / name, prepared_dir / "digits", features_dir / "digits", TINY.evaluate,
                   tmp_path / "m.json", tmp_path / "s.png", log=quiet)
    for file in ("m.json", "m.details.json"):  # the headline numbers and everything else
        ours = evaluated / "metrics" / file.replace("m.", f"{name}.", 1)
        assert (tmp_path / file).read_text() == ours.read_text()
    assert (tmp_path / "s.png").read_bytes() == (evaluated / "samples" / f"{name}.png").read_bytes()
    again = interpolation_png(tmp_path / "s.png")
    assert again.name == "s.interpolation.png"
    assert again.read_bytes() == interpolation_png(evaluated / "samples" / f"{name}.png").read_bytes()


def _reject_constant(name):
    raise ValueError(f"non-standard JSON constant {name}")


def test_metrics_json_is_strict_json(trained_dir, prepared_dir, features_dir, tmp_path):
    # a ring8 generator whose every sample is far from every mode: reverse KL is undefined (null)
    state, log, meta = checkpoint.load(trained_dir / "gan_ring8" / "seed_0")
    last_bias = [k for k in state["model"] if k.startswith("G.") and k.endswith("bias")][-1]
    state["model"][last_bias] = state["model"][last_bias] + 50.0
    checkpoint.save(tmp_path / "far" / "seed_0", state, log, {k: v for k, v in meta.items() if k != "state_sha256"})
    metrics = evaluate_model(tmp_path / "far", prepared_dir / "ring8", features_dir / "ring8", TINY.evaluate,
                             tmp_path / "m.json", tmp_path / "s.png", log=quiet)
    assert metrics["high_quality"] == 0 and metrics["reverse_kl"] is None
    for file in ("m.json", "m.details.json"):
        json.loads((tmp_path / file).read_text(), parse_constant=_reject_constant)


def _check_export(model_dir, out):
    card = export_model(model_dir, out, log=quiet)
    model, meta, _ = training.load_trained(model_dir / "seed_0")  # export takes the first seed
    spec = model.spec
    expected_nets = {"generator"} | ({"encoder"} if hasattr(model, "E") else set())
    if not spec.c_dim and getattr(spec, "pac", 1) == 1:
        expected_nets.add("scorer")
    assert set(card["networks"]) == expected_nets
    files = {f for net in card["networks"].values() for f in net["files"].values()}
    assert {p.name for p in out.iterdir()} == files | {CARD_FILE, WEIGHTS_FILE}
    assert json.loads((out / CARD_FILE).read_text()) == card
    assert card["seed"] == meta["seed"] == 0 and card["onnx_opset"] == 18
    scripted = torch.jit.load(str(out / TORCHSCRIPT_FILE))
    eager = model.decoder().eval()
    z, c = fixed_inputs(spec.z_dim, spec.c_dim)
    other_z = torch.randn(5, spec.z_dim, generator=torch.Generator().manual_seed(7))
    other_c = torch.arange(5) % spec.c_dim if spec.c_dim else torch.zeros(5, dtype=torch.long)
    with torch.no_grad():
        for zz, cc in ((z, c), (other_z, other_c)):  # another batch size than the traced one
            expected = eager(zz, cc if spec.c_dim else None)
            got = scripted(zz, cc)
            assert got.shape == (len(zz), *meta["data_shape"])
            assert (got - expected).abs().max().item() <= 1e-5
    for net in card["networks"].values():
        assert max(net["parity"]["max_error"].values()) <= net["parity"]["tolerance"] <= 1e-4
    assert card["networks"]["generator"]["parity"]["tolerance"] == 1e-5
    assert card["name"] == meta["name"] and card["model_state_sha256"] == meta["state_sha256"]
    assert card["io"]["z_dim"] == spec.z_dim and card["io"]["data_shape"] == meta["data_shape"]
    # the weights load without pickle into a freshly built model and give the same samples
    rebuilt = registry.build(spec, tuple(meta["data_shape"]), meta["num_classes"])
    rebuilt.load_state_dict(load_file(out / WEIGHTS_FILE))
    with torch.no_grad():
        torch.testing.assert_close(rebuilt.decoder().eval()(z, c if spec.c_dim else None), eager(z, c if spec.c_dim
                                                                                                 else None))
    return scripted, spec


@pytest.mark.parametrize("name", MODEL_NAMES)
def test_export_torchscript_matches_eager(name, trained_dir, tmp_path):
    _check_export(trained_dir / name, tmp_path / "export" / name)


def test_export_conditional_generator(conditional_dir, tmp_path):
    scripted, spec = _check_export(conditional_dir / "cgan_digits", tmp_path / "export")
    z = torch.randn(10, spec.z_dim, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        a, b = scripted(z, torch.zeros(10, dtype=torch.long)), scripted(z, torch.full((10,), 3))
    assert not torch.equal(a, b)  # the label input survived tracing


def test_report_lists_every_model(evaluated, features_dir):
    out = evaluated / "reports"
    text = build_report(TINY.models, evaluated / "metrics", evaluated / "samples", out, features_dir)
    assert (out / "comparison.md").read_text() == text and (out / "comparison.html").exists()
    for name in MODEL_NAMES:
        row = next(line for line in text.splitlines() if line.startswith(f"| {name} |"))
        assert f"[png](../samples/{name}.png) | [png](../samples/{name}.interpolation.png) |" in row
        assert (out / ".." / "samples" / f"{name}.png").exists()
        assert f"[real vs generated](../samples/{name}.gallery/real_vs_generated.png)" in row
    assert "[recon.](../samples/vae_digits.gallery/reconstructions.png)" in text
    html = (out / "comparison.html").read_text()
    for heading in ("Real beside generated", "Nearest training rows", "Reconstructions"):
        assert f"<h3>{heading}" in html
    for label in ("FID", "modes", "high quality", "reverse KL", "ELBO"):
        assert label in text
    accuracy = json.loads((features_dir / "digits" / "featurenet.json").read_text())["test_accuracy"]
    assert any(line.startswith("| digits | classifier |") and f"{accuracy:.4f}" in line for line in text.splitlines())
    assert any(line.startswith("| ring8 | identity |") for line in text.splitlines())
    fid = json.loads((evaluated / "metrics" / "vae_digits.json").read_text())["fid"]
    assert f"{fid:.4g}" in next(line for line in text.splitlines() if line.startswith("| vae_digits |"))


def test_report_html_renders_in_headless_chromium(evaluated, features_dir, trained_dir, tmp_path):
    out = tmp_path / "reports"
    build_report(TINY.models, evaluated / "metrics", evaluated / "samples", out, features_dir, models_dir=trained_dir)
    html = (out / "comparison.html").read_text()
    probe, dom = render_in_chromium(html, tmp_path)
    n_datasets = len({spec.dataset for spec in TINY.models.values()})
    # every model's samples and interpolation, and at least two plots per dataset; none broken
    assert probe["broken"] == 0 and probe["images"] >= 2 * len(TINY.models) + 2 * n_datasets
    # + header, floor; digits also has the linear probes' two reference rows (pixels, feature network)
    assert probe["tables"] == n_datasets and probe["rows"] == len(TINY.models) + 2 * n_datasets + 2
    for name in TINY.models:
        assert f"<td>{name}</td>" in dom and f'alt="{name}: decoded along slerp paths' in dom


def test_report_statistics_with_several_seeds(evaluated, tmp_path):
    """Three seeds: mean ± t-interval, ranks, and Welch's test against the baseline, by hand."""
    from genflow.report.stats import format_p, summarize, welch_p

    metrics = tmp_path / "metrics"
    metrics.mkdir()
    raw = tiny_params_dict()
    raw["models"] = {"base": raw["models"]["gan_ring8"], "other": raw["models"]["gan_ring8"]}
    values = {"base": [0.30, 0.34, 0.32], "other": [0.10, 0.12, 0.11]}
    for name, fids in values.items():
        per_seed = {str(i): {"fid": v} for i, v in enumerate(fids)}
        (metrics / f"{name}.details.json").write_text(json.dumps({"fid": sum(fids) / 3, "fid_floor": 0.01, "n_seeds": 3,
                                                          "per_seed": per_seed}))
    text = build_report(config.validate(raw).models, metrics, tmp_path / "samples", tmp_path / "reports",
                        tmp_path / "none", models_dir=tmp_path / "none")
    base, other = summarize(values["base"]), summarize(values["other"])
    assert abs(base.mean - 0.32) < 1e-12 and abs(base.ci - 4.302652729911275 * 0.02 / 3 ** 0.5) < 1e-9
    p = welch_p(other, base)
    assert 0 < p < 0.01
    assert f"| base | gan | 20 | 3 | 0.32 ± {base.ci:.2g} #2 (baseline) |" in text
    assert format_p(p) == "<0.001" and f"| other | gan | 20 | 3 | 0.11 ± {other.ci:.2g} #1 p<0.001 |" in text
    assert "| real data (floor) |  |  |  | 0.01 |" in text


def test_report_missing_metrics(evaluated, features_dir, tmp_path):
    raw = tiny_params_dict()
    raw["models"]["not_evaluated"] = raw["models"]["gan_ring8"]
    with pytest.raises(DataError, match="not_evaluated"):
        build_report(config.validate(raw).models, evaluated / "metrics", evaluated / "samples", tmp_path,
                     features_dir)
    assert not (tmp_path / "comparison.md").exists()


@pytest.mark.skipif("vaegan" not in registry.names(), reason="no vaegan model registered")
def test_vaegan_evaluate_and_export(prepared_dir, features_dir, tmp_path):
    raw = tiny_params_dict()
    raw["models"] = {"vaegan_digits": {"model": "vaegan", "dataset": "digits", "arch": "conv", "z_dim": 4,
                                       "width": 8, "train": {"steps": 4, "batch_size": 32, "log_every": 2,
                                                             "checkpoint_every": 4}}}
    params = config.validate(raw)
    training.train_in_process(worker_config("vaegan_digits", params, prepared_dir), tmp_path / "m" / "seed_0",
                              tmp_path / "work")
    metrics = evaluate_model(tmp_path / "m", prepared_dir / "digits", features_dir / "digits", params.evaluate,
                             tmp_path / "m.json", tmp_path / "s.png", log=quiet)
    assert metrics["recon_mse"] > 0 and "elbo" not in metrics and math.isfinite(metrics["fid"])
    _check_export(tmp_path / "m", tmp_path / "export")


def test_several_seeds_are_trained_and_aggregated(prepared_dir, features_dir, tmp_path):
    raw = tiny_params_dict()
    raw["models"] = {"gan_ring8": {**raw["models"]["gan_ring8"], "seeds": [3, 1]}}
    raw["ray"]["storage_path"] = str(tmp_path / "work")
    params = config.validate(raw)
    launch.train("gan_ring8", params, prepared_dir, tmp_path / "m")
    assert [d.name for d in training.trained_seeds(tmp_path / "m")] == ["seed_1", "seed_3"]
    metrics = evaluate_model(tmp_path / "m", prepared_dir / "ring8", features_dir / "ring8", params.evaluate,
                             tmp_path / "m.json", tmp_path / "s.png", log=quiet)
    per_seed = metrics["per_seed"]
    assert set(per_seed) == {"1", "3"} and metrics["n_seeds"] == 2
    assert per_seed["1"]["fid"] != per_seed["3"]["fid"]  # different seeds, different generators
    assert metrics["fid"] == pytest.approx((per_seed["1"]["fid"] + per_seed["3"]["fid"]) / 2, abs=1e-5)
    assert metrics["fid_std"] == pytest.approx(abs(per_seed["1"]["fid"] - per_seed["3"]["fid"]) / 2 ** 0.5, abs=1e-5)
    assert metrics["protocol"]["seeds"] == [1, 3] and set(metrics["protocol"]["model_state_sha256"]) == {"1", "3"}


@pytest.mark.parametrize("family, extra", [
    ("gan", {"spectral_norm": True, "mbstd": True, "loss": "hinge"}),
    ("vaegan", {"spectral_norm": True}),
])
def test_export_spectral_norm_models(family, extra, prepared_dir, tmp_path):
    """Spectral norm is a parametrization: export folds it into plain weights (eval mode)."""
    raw = tiny_params_dict()
    raw["models"] = {"sn": {"model": family, "dataset": "digits", "arch": "conv", "z_dim": 4, "width": 8, **extra,
                            "train": {"steps": 3, "batch_size": 16, "log_every": 3, "checkpoint_every": 3}}}
    params = config.validate(raw)
    training.train_in_process(worker_config("sn", params, prepared_dir), tmp_path / "m" / "seed_0",
                              tmp_path / "work")
    _check_export(tmp_path / "m", tmp_path / "export")
    card = json.loads((tmp_path / "export" / CARD_FILE).read_text())
    assert "scorer" in card["networks"]  # D (spectral-normed) is part of the exported scorer
