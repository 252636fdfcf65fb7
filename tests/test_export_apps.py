"""Exported models in use: ONNX parity, and the sample / interpolate / reconstruct / score /
inpaint commands run on an export folder alone, with clear errors for bad input."""
from __future__ import annotations

import csv
import pickle

import numpy as np
import pytest
import torch
from PIL import Image

from genflow import cli

from genflow.data.loader import load_split
from genflow.export.exported import ExportedModel
from genflow.export.write import export_model, fixed_inputs
from genflow.train import worker as training

from conftest import quiet

pytestmark = pytest.mark.filterwarnings("ignore:`torch.jit:DeprecationWarning")


@pytest.fixture(scope="module")
def exported(trained_dir, conditional_dir, prepared_dir, tmp_path_factory):
    root = tmp_path_factory.mktemp("export")
    for name, source in (("gan_digits", trained_dir), ("vae_digits", trained_dir), ("gan_ring8", trained_dir),
                         ("cgan_digits", conditional_dir)):
        export_model(source / name, root / name, data_dir=prepared_dir / ("ring8" if "ring8" in name else "digits"),
                     log=quiet)
    return root


@pytest.fixture(scope="module")
def digit_images(prepared_dir, tmp_path_factory):
    """The first 12 test digits as PNG files (what a user would point the commands at)."""
    folder = tmp_path_factory.mktemp("pngs")
    x = load_split(prepared_dir / "digits", "test").x[:12].numpy()
    for i, image in enumerate(x):
        Image.fromarray(image[0]).save(folder / f"digit_{i:02d}.png")
    return folder, x


def run(*argv) -> int:
    return cli.main([str(a) for a in argv])


@pytest.mark.parametrize("name", ["gan_digits", "vae_digits", "gan_ring8", "cgan_digits"])
def test_onnx_generator_matches_eager(name, exported, trained_dir, conditional_dir):
    source = conditional_dir if name == "cgan_digits" else trained_dir
    model, _, _ = training.load_trained(source / name / "seed_0")
    z, c = fixed_inputs(model.spec.z_dim, model.spec.c_dim, n=40)
    with torch.no_grad():
        expected = model.decoder()(z, c if model.spec.c_dim else None).numpy()
    got = ExportedModel(exported / name).generate(z.numpy(), c.numpy() if model.spec.c_dim else None)
    assert np.abs(got - expected).max() <= 1e-5


def test_onnx_encoder_and_scorer_match_eager(exported, trained_dir, digit_images):
    _, pixels = digit_images
    x = pixels.astype(np.float32) / 127.5 - 1
    model, _, _ = training.load_trained(trained_dir / "vae_digits" / "seed_0")
    onnx = ExportedModel(exported / "vae_digits")
    mu, logvar = onnx.encode(x)
    with torch.no_grad():
        mu_e, logvar_e = model.E(torch.from_numpy(x))
        eps = np.random.default_rng(3).standard_normal((len(x), 16, model.spec.z_dim)).astype(np.float32)
        score_e = model.anomaly_score_from_noise(torch.from_numpy(x), torch.from_numpy(eps)).numpy()
    assert np.abs(mu - mu_e.numpy()).max() <= 1e-5 and np.abs(logvar - logvar_e.numpy()).max() <= 1e-5
    assert onnx.score(x, seed=3) == pytest.approx(score_e, rel=1e-4)


def test_apps_do_not_unpickle(exported, digit_images, tmp_path, monkeypatch):
    def refuse(*_args, **_kwargs):
        raise AssertionError("an exported model must load without pickle")

    monkeypatch.setattr(pickle, "load", refuse)
    monkeypatch.setattr(pickle, "loads", refuse)
    monkeypatch.setattr(torch, "load", refuse)
    folder, _ = digit_images
    assert run("sample", exported / "vae_digits", "--out", tmp_path / "s.png") == 0
    assert run("score", exported / "vae_digits", folder, "--out", tmp_path / "s.csv") == 0


def _png(path):
    with Image.open(path) as image:
        image.load()
        return image.size


def test_sample_and_interpolate(exported, tmp_path):
    assert run("sample", exported / "gan_digits", "--out", tmp_path / "s.png", "--n", 16) == 0
    assert _png(tmp_path / "s.png")[0] > 32
    assert run("sample", exported / "cgan_digits", "--out", tmp_path / "c.png", "--label", 7, "--n", 9) == 0
    assert run("sample", exported / "gan_ring8", "--out", tmp_path / "p.png") == 0  # a scatter plot
    assert run("interpolate", exported / "vae_digits", "--out", tmp_path / "i.png", "--pairs", 3,
               "--steps", 5) == 0
    width, height = _png(tmp_path / "i.png")
    assert width > height  # 5 columns, 3 rows


def test_interpolation_path_ends_at_its_latents():
    from genflow.evaluate.model_metrics import slerp

    a, b = torch.from_numpy(np.random.default_rng(0).standard_normal((2, 3, 4)))
    path = slerp(a[:, None], b[:, None], torch.linspace(0, 1, 5, dtype=torch.float64)[None, :, None])
    torch.testing.assert_close(path[:, 0], a)
    torch.testing.assert_close(path[:, -1], b)


def test_reconstruct_and_inpaint(exported, digit_images, tmp_path, capsys):
    folder, _ = digit_images
    assert run("reconstruct", exported / "vae_digits", folder, "--out", tmp_path / "r.png") == 0
    assert "mean squared error" in capsys.readouterr().out
    assert run("inpaint", exported / "vae_digits", folder, "--out", tmp_path / "p.png", "--mask", "bottom",
               "--iterations", 5) == 0
    assert _png(tmp_path / "p.png")[0] > 64


def test_inpaint_keeps_the_known_pixels(exported, digit_images, tmp_path):
    from genflow.export import apps

    folder, pixels = digit_images
    model = ExportedModel(exported / "vae_digits")
    known = apps.region("left", 8, 8)  # the left half is the region to complete
    assert not known[:, :4].any() and known[:, 4:].all()
    _, x = apps.load_images(folder, model)
    assert x.shape == (12, 1, 8, 8)
    np.testing.assert_allclose(x, pixels / 127.5 - 1, atol=1e-6)
    filled = apps.complete(model, x, known[None, None], iterations=3)
    np.testing.assert_array_equal(filled[..., 4:], x[..., 4:])  # known pixels untouched
    assert not np.allclose(filled[..., :4], 0.0)  # the region was filled in


def test_score_writes_one_row_per_image(exported, digit_images, prepared_dir, tmp_path):
    folder, pixels = digit_images
    assert run("score", exported / "gan_digits", folder, "--out", tmp_path / "g.csv") == 0
    with open(tmp_path / "g.csv") as handle:
        rows = list(csv.DictReader(handle))
    assert [r["image"].rsplit("/", 1)[1] for r in rows] == [f"digit_{i:02d}.png" for i in range(12)]
    expected = ExportedModel(exported / "gan_digits").score(pixels.astype(np.float32) / 127.5 - 1)
    np.testing.assert_allclose([float(r["anomaly_score"]) for r in rows], expected, rtol=1e-5)
    shard = sorted((prepared_dir / "digits").glob("test-*.parquet"))[0]
    assert run("score", exported / "vae_digits", shard, "--out", tmp_path / "v.csv") == 0
    with open(tmp_path / "v.csv") as handle:
        assert len(list(csv.DictReader(handle))) == len(load_split(prepared_dir / "digits", "test"))


@pytest.mark.parametrize("argv, message", [
    (["sample", "{nothing}", "--out", "{tmp}/x.png"], "no model card"),
    (["reconstruct", "{gan_digits}", "{images}", "--out", "{tmp}/x.png"], "has no encoder"),
    (["inpaint", "{gan_digits}", "{images}", "--out", "{tmp}/x.png"], "has no encoder"),
    (["sample", "{gan_digits}", "--out", "{tmp}/x.png", "--label", "3"], "unconditional"),
    (["sample", "{cgan_digits}", "--out", "{tmp}/x.png", "--label", "10"], "outside 0..9"),
    (["score", "{cgan_digits}", "{images}", "--out", "{tmp}/x.csv"], "has no scorer"),
    (["score", "{vae_digits}", "{big}", "--out", "{tmp}/x.csv"], "big.png"),
    (["score", "{vae_digits}", "{tmp}/missing", "--out", "{tmp}/x.csv"], "no such file"),
    (["inpaint", "{vae_digits}", "{images}", "--out", "{tmp}/x.png", "--mask", "diagonal"], "unknown mask"),
    (["interpolate", "{gan_ring8}", "--out", "{tmp}/x.png"], "2-D points"),
    (["score", "{gan_ring8}", "{images}", "--out", "{tmp}/x.csv"], "has no scorer"),  # PacGAN2
    (["score", "{vae_digits}", "{ring_shard}", "--out", "{tmp}/x.csv"], "takes images"),
])
def test_bad_input_is_a_clear_error(argv, message, exported, digit_images, prepared_dir, tmp_path, capsys):
    folder, _ = digit_images
    big = tmp_path / "big"
    big.mkdir()
    Image.fromarray(np.zeros((16, 16), dtype=np.uint8)).save(big / "big.png")
    names = {"nothing": tmp_path / "nothing", "images": folder, "big": big, "tmp": tmp_path,
             "ring_shard": sorted((prepared_dir / "ring8").glob("test-*.parquet"))[0],
             **{n: exported / n for n in ("gan_digits", "vae_digits", "cgan_digits", "gan_ring8")}}
    assert run(*[a.format(**names) for a in argv]) == 2
    err = capsys.readouterr().err
    assert err.startswith("genflow: error:") and message in err, err
    assert not (tmp_path / "x.png").exists() and not (tmp_path / "x.csv").exists()


@pytest.mark.parametrize("command", ["sample", "interpolate", "reconstruct", "score", "inpaint"])
def test_every_app_has_help(command, capsys):
    with pytest.raises(SystemExit) as exit_info:
        cli.main([command, "--help"])
    assert exit_info.value.code == 0 and "exported model" in capsys.readouterr().out
