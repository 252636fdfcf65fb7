"""Super-resolution (srgan, task "upscale"): the spec, G starting at the bicubic baseline, PSNR / SSIM,
a real short training evaluated and exported, and `genflow upscale` on the export alone."""
from __future__ import annotations

import json
import re
import subprocess

import numpy as np
import pytest
import torch
from PIL import Image

from genflow import cli, config

from genflow.data.loader import load_split
from genflow.errors import ConfigError
from genflow.evaluate import upscale as eval_upscale
from genflow.evaluate.protocol import Reference, evaluate_model
from genflow.export.exported import ExportedModel
from genflow.export.write import export_model
from genflow.launch import train as train_model
from genflow.metrics import frechet_distance
from genflow.metrics.image_quality import SSIM_K1, SSIM_K2, gaussian_window, psnr, ssim
from genflow.models import registry
from genflow.models.degrade import bicubic
from genflow.train.worker import load_trained

from conftest import PYTHON, REPO, quiet, tiny_params_dict

pytestmark = pytest.mark.filterwarnings("ignore:`torch.jit:DeprecationWarning")

SR = {"model": "srgan", "dataset": "digits", "width": 8, "scale": 2, "n_res": 2,
      "train": {"steps": 30, "batch_size": 32, "log_every": 10, "checkpoint_every": 30, "ema_decay": 0.9}}


def spec_of(**overrides):
    raw = tiny_params_dict()
    raw["models"] = {"sr": {**SR, **overrides}}
    return config.validate(raw).models["sr"]


@pytest.mark.parametrize("key,value,says", [("c_dim", 10, "unconditional"), ("arch", "mlp", "conv model"),
                                            ("z_dim", 8, "does not apply"), ("holdout_class", 1, "does not apply")])
def test_spec_rejects_keys_that_do_not_apply(key, value, says):
    with pytest.raises(ConfigError, match=rf"models\.sr\.{key}: .*{says}"):
        spec_of(**{key: value})


@pytest.mark.parametrize("scale", [2, 4])
@pytest.mark.parametrize("shape", [(1, 8, 8), (3, 32, 32)])
def test_shapes_and_untrained_generator_is_bicubic(scale, shape):
    torch.manual_seed(0)
    model = registry.build(spec_of(scale=scale), shape, 10)
    hr = torch.rand(5, *shape) * 2 - 1
    lr = model.degrade(hr)
    assert lr.shape == (5, shape[0], shape[1] // scale, shape[2] // scale)
    assert torch.allclose(lr[0, 0, 0, 0], hr[0, 0, :scale, :scale].mean())  # area downsampling
    expected = torch.nn.functional.interpolate(lr, scale_factor=scale, mode="bicubic", align_corners=False)
    assert torch.equal(model.G(lr), expected.clamp(-1, 1))  # zero-initialised residual: exactly bicubic
    assert torch.equal(model.upscale(lr), bicubic(lr, scale))
    assert model.D(hr).shape == (5,)


def test_psnr_known_values():
    x = torch.zeros(2, 1, 8, 8)
    y = torch.full((2, 1, 8, 8), 0.1)
    assert torch.allclose(psnr(x, y), torch.tensor([20.0, 20.0]))  # MSE 0.01 -> 10 log10(100)
    assert psnr(y, y)[0] == 100.0  # the cap: MSE floored at 1e-10


def test_ssim_properties_and_hand_computed_cases():
    gen = torch.Generator().manual_seed(0)
    x = torch.rand(3, 3, 24, 24, generator=gen)
    assert torch.allclose(ssim(x, x), torch.ones(3))
    noise = torch.randn(x.shape, generator=gen)
    slight, strong = (x + 0.05 * noise).clamp(0, 1), (x + 0.3 * noise).clamp(0, 1)
    assert (ssim(x, strong) < ssim(x, slight)).all() and (ssim(x, slight) < 1).all()
    assert torch.allclose(ssim(x, strong), ssim(strong, x))
    c1 = SSIM_K1 ** 2
    # constant images a and b: no variance, only the luminance term (2ab + C1) / (a^2 + b^2 + C1)
    a, b = 0.2, 0.7
    got = ssim(torch.full((1, 1, 16, 16), a), torch.full((1, 1, 16, 16), b))
    assert got.item() == pytest.approx((2 * a * b + c1) / (a * a + b * b + c1), rel=1e-6)
    # an 11x11 image (one window position) shifted by d: the structure term is 1, the luminance
    # term is that of the window means, which a weighted sum gives by hand
    image, d = torch.rand(1, 1, 11, 11, generator=gen) * 0.5, 0.25
    mu = float((gaussian_window(11, 1.5) * image[0, 0].double()).sum())
    expected = (2 * mu * (mu + d) + c1) / (mu * mu + (mu + d) ** 2 + c1)
    assert ssim(image, image + d).item() == pytest.approx(expected, rel=1e-5)


def test_ssim_matches_scipy_gaussian_filter():
    """An independent implementation: scipy's separable Gaussian filter (truncated at 11 taps),
    the SSIM map averaged over the positions where the window fits (conv2d's 'valid')."""
    from scipy.ndimage import gaussian_filter

    gen = np.random.default_rng(0)
    x = gen.random((32, 32))
    y = np.clip(x + 0.2 * gen.standard_normal((32, 32)), 0, 1)
    f = lambda t: gaussian_filter(t, 1.5, truncate=3.5)[5:-5, 5:-5]  # noqa: E731  radius 5: 11 taps
    mx, my = f(x), f(y)
    vx, vy, cov = f(x * x) - mx ** 2, f(y * y) - my ** 2, f(x * y) - mx * my
    c1, c2 = SSIM_K1 ** 2, SSIM_K2 ** 2
    expected = (((2 * mx * my + c1) * (2 * cov + c2)) / ((mx ** 2 + my ** 2 + c1) * (vx + vy + c2))).mean()
    got = ssim(torch.from_numpy(x)[None, None], torch.from_numpy(y)[None, None]).item()
    assert got == pytest.approx(expected, rel=1e-5)


# -- a real run: train, evaluate, export, apps ---------------------------------------------------


@pytest.fixture(scope="module")
def run(prepared_dir, features_dir, tmp_path_factory):
    root = tmp_path_factory.mktemp("srgan")
    raw = tiny_params_dict()
    raw["ray"]["storage_path"] = str(root / "work")
    gan = {**raw["models"]["gan_digits"], "train": {**raw["models"]["gan_digits"]["train"], "steps": 2}}
    raw["models"] = {"sr_digits": SR, "gan_digits": gan}
    params = config.validate(raw)
    for name in params.models:
        train_model(name, params, prepared_dir, root / "models" / name)
        export_model(root / "models" / name, root / "export" / name, data_dir=prepared_dir / "digits", log=quiet)
    return root, params


def test_evaluate_scores_model_and_bicubic(run, prepared_dir, features_dir):
    root, params = run
    out_json, out_png = root / "metrics.json", root / "samples.png"
    metrics = evaluate_model(root / "models" / "sr_digits", prepared_dir / "digits", features_dir / "digits",
                             params.evaluate, out_json, out_png, log=quiet)
    assert json.loads((root / "metrics.details.json").read_text()) == metrics
    for values in (metrics, metrics["baselines"]["bicubic"]):
        assert all(np.isfinite(values[key]) for key in ("psnr", "ssim", "fid"))
        assert 0 < values["ssim"] <= 1 and values["psnr"] > 0
    assert metrics["psnr"] != metrics["baselines"]["bicubic"]["psnr"]  # training changed G
    assert metrics["protocol"]["task"] == "upscale"
    # rows input / bicubic / model / original of 8 digits (8 px, pad 1, drawn 8x)
    assert Image.open(out_png).size == ((8 * 9 + 1) * 8, (4 * 9 + 1) * 8)


def test_untrained_model_scores_exactly_the_baseline(prepared_dir, features_dir, params):
    ref = Reference.load(prepared_dir / "digits", features_dir / "digits", params.evaluate)
    torch.manual_seed(0)
    model = registry.build(spec_of(), (1, 8, 8), 10)
    assert eval_upscale.seed_metrics(model, ref) == eval_upscale.baseline_metrics(model, ref)["bicubic"]


def test_export_card_and_onnx_parity(run, prepared_dir):
    root, _ = run
    exported = ExportedModel(root / "export" / "sr_digits")
    assert exported.task == "upscale" and exported.is_image
    io = exported.io
    assert io["scale"] == 2 and io["input_shape"] == [1, 4, 4] and io["data_shape"] == [1, 8, 8]
    assert set(exported.card["networks"]) == {"upscaler", "bicubic"}
    for net in exported.card["networks"].values():
        assert max(net["parity"]["max_error"].values()) <= net["parity"]["tolerance"] == 1e-5
    model, _, _ = load_trained(root / "models" / "sr_digits" / "seed_0")
    hr = load_split(prepared_dir / "digits", "test").batch(torch.arange(5))[0]  # another batch size than export's
    lr = model.degrade(hr)
    assert np.abs(exported.upscale(lr.numpy()) - model.upscale(lr).numpy()).max() < 1e-5
    assert np.abs(exported.upscale(lr.numpy(), "bicubic") - bicubic(lr, 2).numpy()).max() < 1e-5


@pytest.fixture(scope="module")
def pngs(prepared_dir, tmp_path_factory):
    """12 test digits as 8x8 PNGs (full size), their 4x4 average-pooled versions, and 6x6 ones (neither)."""
    root = tmp_path_factory.mktemp("sr_pngs")
    x = load_split(prepared_dir / "digits", "test").x[:12].numpy()[:, 0]
    small = x.reshape(12, 4, 2, 4, 2).mean(axis=(2, 4)).round().astype(np.uint8)
    for folder, images in (("hr", x), ("lr", small), ("odd", x[:, :6, :6])):
        (root / folder).mkdir()
        for i, image in enumerate(images):
            Image.fromarray(image).save(root / folder / f"{i:02d}.png")
    return root, x


def genflow(*argv):
    return subprocess.run([str(PYTHON), "-m", "genflow.cli", *map(str, argv)], cwd=REPO, capture_output=True,
                          text=True, timeout=120)


def test_cli_upscale_full_size_and_low_resolution_images(run, pngs):
    root, _ = run
    folder, x = pngs
    export = root / "export" / "sr_digits"
    proc = genflow("upscale", export, folder / "hr", "--out", root / "hr.png")
    assert proc.returncode == 0, proc.stderr
    found = re.search(r"PSNR model ([\d.]+) dB, bicubic ([\d.]+) dB", proc.stdout)
    assert found, proc.stdout
    # the printed PSNRs are those of the trained model and of bicubic on these 12 digits
    model, _, _ = load_trained(root / "models" / "sr_digits" / "seed_0")
    hr = torch.from_numpy(x[:, None].astype(np.float32)) / 127.5 - 1
    lr = model.degrade(hr)
    for printed, restored in zip(found.groups(), (model.upscale(lr), bicubic(lr, 2))):
        assert float(printed) == pytest.approx(float(psnr((restored + 1) / 2, (hr + 1) / 2).mean()), abs=0.01)
    assert Image.open(root / "hr.png").size == ((12 * 9 + 1) * 8, (4 * 9 + 1) * 8)  # 4 rows of 12
    proc = genflow("upscale", export, folder / "lr", "--out", root / "lr.png")
    assert proc.returncode == 0, proc.stderr
    assert "PSNR" not in proc.stdout
    assert Image.open(root / "lr.png").size == ((12 * 9 + 1) * 8, (3 * 9 + 1) * 8)  # input, bicubic, model


def test_cli_sample_on_an_upscaler_says_what_to_run(run):
    root, _ = run
    proc = genflow("sample", root / "export" / "sr_digits", "--out", root / "never.png")
    assert proc.returncode == 2 and not (root / "never.png").exists()
    assert "has no generator" in proc.stderr and "genflow upscale" in proc.stderr


def test_cli_upscale_errors(run, pngs, capsys):
    root, _ = run
    folder, _ = pngs
    assert cli.main(["upscale", str(root / "export" / "gan_digits"), str(folder / "hr"), "--out",
                     str(root / "x.png")]) == 2
    assert "has no upscaler" in capsys.readouterr().err
    assert cli.main(["upscale", str(root / "export" / "sr_digits"), str(folder / "odd"), "--out",
                     str(root / "x.png")]) == 2
    assert "the model takes 8x8 or 4x4" in capsys.readouterr().err
    assert not (root / "x.png").exists()


@pytest.mark.parametrize("metric", ["fid", "kid"])
def test_sweep_probe_scores_upscaled_val_rows(metric, prepared_dir, features_dir):
    from genflow.sweep.space import SweepSpec
    from genflow.sweep.trial import Probe

    sweep = SweepSpec(model="sr", dataset="digits", metric=metric, probe_real=100)
    probe = Probe(prepared_dir / "digits", features_dir / "digits", sweep)
    torch.manual_seed(0)
    model = registry.build(spec_of(), (1, 8, 8), 10)
    value = probe(model)
    assert np.isfinite(value) and value >= 0
    if metric == "fid":  # untrained G is bicubic: its FID against the val originals, computed directly
        direct = frechet_distance(probe.f_real, probe.features(bicubic(model.degrade(probe.real), 2)))
        assert value == pytest.approx(direct)
