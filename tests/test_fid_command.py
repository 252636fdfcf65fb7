"""`genflow fid` (#30): images genflow did not make, scored under evaluate's protocol.

The acceptance: real rows scored by the command give the floor that `evaluate` writes and the
report prints. The floor is the train rows (seed + 1) scored as samples against the reference
split (seed); with n_real above every split's size both are whole splits, so scoring the test
split against the train split is the floor with the two sets' roles swapped: FID and KID are
symmetric, precision and recall swap, density and coverage do not (not compared).
"""
from __future__ import annotations

import json
import math

import numpy as np
import pytest
import torch
from PIL import Image

from genflow import cli, config
from genflow.data.loader import load_split
from genflow.evaluate.protocol import evaluate_model, sample_rows
from genflow.report.build import build_report

from conftest import quiet, tiny_params_dict

# pytest's warnings filter: genflow.export.write traces with torch.jit (deprecated in torch 2.13)
pytestmark = pytest.mark.filterwarnings("ignore:`torch.jit:DeprecationWarning")


@pytest.fixture(scope="module")
def setup(trained_dir, prepared_dir, tmp_path_factory):
    """params.yaml (every row of each split compared), feature spaces where `genflow` looks for
    them, gan_digits evaluated and the report built from it. The suite's 1-epoch featurenet puts
    every digit at nearly one point (a floor FID of 0.002); 5 epochs of width 8 give one that
    tells rows apart, so the comparisons below are not of near-zeros."""
    from genflow.featurenet.stage import build_feature_space

    root = tmp_path_factory.mktemp("fid")
    raw = tiny_params_dict()
    raw["evaluate"].update(n_real=2500, path_samples=0, linear_probe=False)  # probes: test_representation
    raw["featurenet"].update(epochs=5, width=8)
    params_path = root / "params.yaml"
    params_path.write_text(json.dumps(raw))  # JSON is YAML, and has no anchors
    params = config.validate(raw)
    features_dir = root / "models" / "featurenet"
    for name in ("digits", "ring8"):
        build_feature_space(prepared_dir / name, params.featurenet, features_dir / name, log=quiet)
    evaluate_model(trained_dir / "gan_digits", prepared_dir / "digits", features_dir / "digits", params.evaluate,
                   root / "metrics" / "gan_digits.json", root / "samples" / "gan_digits.png", log=quiet)
    build_report({"gan_digits": params.models["gan_digits"]}, root / "metrics", root / "samples", root / "reports",
                 features_dir, models_dir=trained_dir)
    details = json.loads((root / "metrics" / "gan_digits.details.json").read_text())
    return {"root": root, "params": params, "details": details, "prepared": prepared_dir,
            "args": ["--params", str(params_path), "--data-root", str(prepared_dir),
                     "--models-root", str(root / "models")]}


def _fid(setup, images, *extra) -> tuple[int, dict | None]:
    out = setup["root"] / "fid.json"
    out.unlink(missing_ok=True)
    code = cli.main(["fid", str(images), "--dataset", "digits", "--out", str(out), *extra, *setup["args"]])
    return code, json.loads(out.read_text()) if out.exists() else None


def _write_pngs(pixels: np.ndarray, folder) -> None:
    folder.mkdir()
    for i, image in enumerate(pixels):
        Image.fromarray(image[..., 0]).save(folder / f"{i:04d}.png")


def _hwc(split) -> np.ndarray:
    return split.x.numpy().transpose(0, 2, 3, 1)


def _report_floor(root, label: str) -> str:
    """The FID floor cell of the report's Markdown table, as printed."""
    lines = (root / "reports" / "comparison.md").read_text().splitlines()
    header = next(line for line in lines if line.startswith("| model | family"))
    column = [cell.strip() for cell in header.split("|")].index(label)
    floor = next(line for line in lines if line.startswith("| real data (floor)"))
    return [cell.strip() for cell in floor.split("|")][column]


def test_the_test_split_as_png_files_scores_the_report_floor(setup, tmp_path, capsys):
    from genflow.metrics.catalog import BY_NAME

    details = setup["details"]
    test = load_split(setup["prepared"] / "digits", "test")
    _write_pngs(_hwc(test), tmp_path / "test_split")
    code, result = _fid(setup, tmp_path / "test_split", "--split", "train")
    assert code == 0, capsys.readouterr().err
    assert result["protocol"]["n_generated"] == len(test) == details["protocol"]["n_real"]
    assert result["protocol"]["n_real"] == details["protocol"]["n_floor"]
    # the metrics file rounds to 6 decimals (evaluate's _clean)
    assert result["fid"] == pytest.approx(details["fid_floor"], rel=1e-6, abs=1e-6), details["fid_floor"]
    assert f"{result['fid']:.4g}" == _report_floor(setup["root"], BY_NAME["fid"].label)
    assert result["precision"] == pytest.approx(details["recall_floor"], abs=1e-6)
    assert result["recall"] == pytest.approx(details["precision_floor"], abs=1e-6)
    assert result["protocol"]["source"] == {"kind": "image files", "path": str(tmp_path / "test_split"),
                                            "n_files": len(test)}
    printed = capsys.readouterr().out
    assert f"{len(test)} images against" in printed and f"{result['fid']:.6g}" in printed


def test_the_floor_rows_as_npz_give_every_floor_metric(setup, tmp_path):
    """The floor's own draw (train rows, seed + 1) against the test split: every number equal."""
    spec, details = setup["params"].evaluate, setup["details"]
    train, _ = sample_rows(load_split(setup["prepared"] / "digits", "train"), spec.n_real, spec.seed + 1)
    pixels = ((train + 1) * 127.5).round().to(torch.uint8).numpy().transpose(0, 2, 3, 1)
    np.savez(tmp_path / "floor_rows.npz", images=pixels)
    code, result = _fid(setup, tmp_path / "floor_rows.npz", "--split", "test")
    assert code == 0
    for key in ("fid", "kid", "precision", "recall", "density", "coverage"):
        assert result[key] == pytest.approx(details[f"{key}_floor"], rel=1e-6, abs=1e-6), key
        assert result[f"{key}_floor"] == pytest.approx(details[f"{key}_floor"], rel=1e-6, abs=1e-6), key
    protocol = result["protocol"]
    assert protocol["feature_backend"] == details["protocol"]["feature_backend"]
    assert protocol["source"] == {"kind": "npz", "path": str(tmp_path / "floor_rows.npz"), "array": "images"}
    # the same images as float (N, C, H, W) in [-1, 1]: genflow's sample convention
    np.savez(tmp_path / "floats.npz", train.numpy())
    assert _fid(setup, tmp_path / "floats.npz", "--split", "test")[1]["fid"] == pytest.approx(result["fid"], rel=1e-6)


def test_an_export_is_sampled_and_scored(setup, trained_dir, tmp_path):
    from genflow.export.write import export_model

    export_model(trained_dir / "gan_digits", tmp_path / "export", data_dir=setup["prepared"] / "digits",
                 metrics_path=setup["root"] / "metrics" / "gan_digits.json", log=quiet)
    code, result = _fid(setup, tmp_path / "export")
    assert code == 0
    assert result["protocol"]["source"]["kind"] == "export" and result["protocol"]["n_generated"] == 200
    assert math.isfinite(result["fid"]) and result["fid"] > result["fid_floor"]  # a 20-step GAN is no real data
    assert result["fid_floor"] == pytest.approx(setup["details"]["fid_floor"], rel=1e-6, abs=1e-6)


def _bad_inputs(tmp_path):
    (tmp_path / "empty").mkdir()
    rgb, big = tmp_path / "rgb", tmp_path / "big"
    rgb.mkdir(), big.mkdir()
    Image.new("RGB", (8, 8), (10, 20, 30)).save(rgb / "a.png")
    Image.new("L", (16, 16)).save(big / "a.png")
    np.savez(tmp_path / "labels.npz", labels=np.arange(10))
    np.savez(tmp_path / "nhwc_float.npz", images=np.zeros((12, 8, 8, 1), dtype=np.float32))
    np.savez(tmp_path / "range.npz", images=np.full((12, 1, 8, 8), 3.0, dtype=np.float32))
    return [(tmp_path / "missing", [], "missing: no such file or folder"),
            (tmp_path / "empty", [], "no images found"),
            (rgb, [], "3-channel image; the dataset's images have 1 (grayscale)"),
            (big, [], "image is 16x16, the dataset's are 8x8"),
            (tmp_path / "labels.npz", [], "no image array"),
            (tmp_path / "nhwc_float.npz", [], "float images are (N, C, H, W)"),
            (tmp_path / "range.npz", [], "values outside [-1, 1]"),
            (rgb, ["--dataset", "cifar"], "unknown dataset 'cifar'"),
            (rgb, ["--dataset", "ring8"], "holds 2-D points")]


def test_bad_input_exits_2_naming_the_problem(setup, tmp_path, capsys):
    for images, extra, message in _bad_inputs(tmp_path):
        args = ["fid", str(images), "--dataset", "digits", *setup["args"], *extra]
        assert cli.main(args) == 2, message
        err = capsys.readouterr().err
        assert message in err and "Traceback" not in err, (message, err)
    with pytest.raises(SystemExit) as exit_info:  # argparse: an unknown split
        cli.main(["fid", str(tmp_path / "rgb"), "--dataset", "digits", "--split", "holdout", *setup["args"]])
    assert exit_info.value.code == 2 and "invalid choice: 'holdout'" in capsys.readouterr().err
