"""The three systems of the seeds (StyleGAN, CycleGAN, super-resolution) through the pipeline's own
steps: trained on real Ray workers (CycleGAN data-parallel on 2 DDP workers), evaluated by the
evaluate stage's code, and compared in the report next to the baselines of their tasks."""
from __future__ import annotations

import json

import pytest

from genflow import config
from genflow.evaluate.protocol import evaluate_model
from genflow.launch import train as train_model
from genflow.report.build import build_report

from conftest import quiet, tiny_params_dict

pytestmark = [pytest.mark.slow, pytest.mark.filterwarnings("ignore::DeprecationWarning:ray")]

_TRAIN = {"steps": 4, "batch_size": 16, "log_every": 2, "checkpoint_every": 4}
SYSTEMS = {
    "stylegan_digits": {"model": "stylegan", "dataset": "digits", "arch": "conv", "z_dim": 8, "w_dim": 8,
                        "width": 8, "r1_every": 2, "train": _TRAIN},
    "cyclegan_digits": {"model": "cyclegan", "dataset": "digits", "domain_a": 0, "domain_b": 1, "width": 8,
                        "n_res": 1, "train": _TRAIN},
    "srgan_digits": {"model": "srgan", "dataset": "digits", "scale": 2, "width": 8, "n_res": 1, "train": _TRAIN},
}


@pytest.fixture(scope="module")
def systems(ray_session, prepared_dir, features_dir, tmp_path_factory):
    root = tmp_path_factory.mktemp("systems")
    raw = tiny_params_dict()
    raw["models"] = {"gan_digits": raw["models"]["gan_digits"], **SYSTEMS}
    raw["ray"].update(num_workers=1, storage_path=str(root / "work"))
    raw["evaluate"]["linear_probe"] = False  # test_representation's; not what these tests check
    params = config.validate(raw)
    for name in params.models:
        ray_spec = params.ray
        if name == "cyclegan_digits":  # data-parallel: each rank splits its own batch into the two domains
            ray_spec = ray_spec.model_copy(update={"num_workers": 2})
        train_model(name, params.model_copy(update={"ray": ray_spec}), prepared_dir, root / "models" / name)
        evaluate_model(root / "models" / name, prepared_dir / "digits", features_dir / "digits", params.evaluate,
                       root / "metrics" / f"{name}.json", root / "samples" / f"{name}.png", log=quiet)
    build_report(params.models, root / "metrics", root / "samples", root / "reports", features_dir,
                 models_dir=root / "models")
    return root, params


def test_trained_on_ray_workers(systems):
    root, _ = systems
    for name in SYSTEMS:
        meta = json.loads((root / "models" / name / "seed_0" / "meta.json").read_text())
        assert meta["step"] == 4
        assert meta["world_size"] == (2 if name == "cyclegan_digits" else 1), name


def test_each_task_is_measured_against_its_trivial_method(systems):
    root, _ = systems
    translate = json.loads((root / "metrics" / "cyclegan_digits.details.json").read_text())
    assert translate["protocol"]["task"] == "translate"
    identity = translate["baselines"]["identity"]
    assert identity["cycle_mse_a"] == 0 and identity["pose_error"] == 0
    assert {"accuracy_ab", "accuracy_ba", "fid_ab", "fid_ba", "pose_error"} <= set(translate)
    assert 0 <= translate["accuracy_ab_floor"] <= 1 and 0 <= translate["accuracy_ba_floor"] <= 1
    upscale = json.loads((root / "metrics" / "srgan_digits.details.json").read_text())
    assert upscale["protocol"]["task"] == "upscale"
    assert {"psnr", "ssim", "fid"} <= set(upscale) and {"psnr", "ssim", "fid"} <= set(upscale["baselines"]["bicubic"])
    style = json.loads((root / "metrics" / "stylegan_digits.details.json").read_text())
    assert style["protocol"]["task"] == "generate" and "fid_floor" in style and "path_length_w" in style
    assert (root / "samples" / "stylegan_digits.interpolation.png").exists()
    assert not (root / "samples" / "srgan_digits.interpolation.png").exists()  # no latent to interpolate


def test_report_has_a_block_per_task_with_its_reference_rows(systems):
    root, _ = systems
    report = (root / "reports" / "comparison.md").read_text()
    for heading in ("## digits (baseline: gan_digits)", "## digits: translation (baseline: identity)",
                    "## digits: super-resolution (baseline: bicubic)"):
        assert heading in report
    generate, translate, upscale = (report.split(h)[1].split("\n## ")[0] for h in
                                    ("## digits (", "## digits: translation", "## digits: super-resolution"))
    assert "| stylegan_digits |" in generate and "| real data (floor) |" in generate
    assert "| identity (trivial baseline) |" in translate and "accuracy A→B" in translate
    assert "| real data (floor) |" in translate
    assert "| bicubic (trivial baseline) |" in upscale and "PSNR (dB)" in upscale
    bicubic_row = next(line for line in upscale.splitlines() if line.startswith("| bicubic"))
    psnr = json.loads((root / "metrics" / "srgan_digits.details.json").read_text())["baselines"]["bicubic"]["psnr"]
    assert f"{psnr:.4g}" in bicubic_row
    plots = {p.name for p in (root / "reports" / "plots").iterdir()}
    assert {"digits-metrics.png", "digits-translate-metrics.png", "digits-upscale-metrics.png"} <= plots
    assert "(baseline)" not in translate + upscale  # no model is the reference of a task block
    assert report.split("## Feature spaces")[1].count("| digits |") == 1
    html = (root / "reports" / "comparison.html").read_text()
    assert "digits: super-resolution" in html and "bicubic (trivial baseline)" in html
