"""A VAE as a lossy codec (#29): rate / distortion / bits-per-dimension against known answers, and
`genflow compress` / `genflow decompress` on real exports: the decoded images are a function of
the stored bits alone, and bad input exits 2 naming the problem."""
from __future__ import annotations

import json
import math

import numpy as np
import pytest
import torch
from PIL import Image

from genflow import cli
from genflow.data.loader import load_split
from genflow.evaluate.model_metrics import likelihood_metrics
from genflow.export import codec
from genflow.export.exported import ExportedModel
from genflow.export.write import export_model
from genflow.metrics.compression import (bits_per_dim, compression_metrics, kl_to_standard_normal,
                                         psnr_from_mse)
from genflow.models import registry
from genflow.models.specs import SPEC_BY_MODEL
from genflow.train import worker as training

from conftest import quiet, tiny_params_dict

pytestmark = pytest.mark.filterwarnings("ignore:`torch.jit:DeprecationWarning")


def run(*argv) -> int:
    return cli.main([str(a) for a in argv])


# -- the metrics --------------------------------------------------------------------------------

def test_kl_matches_torch_distributions_closed_form():
    rng = np.random.default_rng(0)
    mu, logvar = rng.normal(size=(5, 3)), rng.normal(size=(5, 3))
    q = torch.distributions.Normal(torch.from_numpy(mu), torch.from_numpy(np.exp(0.5 * logvar)))
    p = torch.distributions.Normal(torch.zeros(5, 3, dtype=torch.float64), torch.ones(5, 3, dtype=torch.float64))
    expected = torch.distributions.kl_divergence(q, p).sum(1).numpy()
    np.testing.assert_allclose(kl_to_standard_normal(mu, logvar), expected, rtol=1e-12)
    assert kl_to_standard_normal(np.zeros((2, 4)), np.zeros((2, 4))).tolist() == [0.0, 0.0]


def test_unit_conversions():
    assert bits_per_dim(64 * math.log(2), 64) == pytest.approx(1.0)
    assert psnr_from_mse(0.01) == pytest.approx(20.0)
    assert psnr_from_mse(0.0) == math.inf


def _tiny_vae(c_dim: int = 0):
    spec = SPEC_BY_MODEL["vae"].model_validate({**tiny_params_dict()["models"]["vae_digits"], "c_dim": c_dim})
    torch.manual_seed(0)
    return registry.build(spec, (1, 8, 8), 10).eval()


def test_rate_is_zero_when_the_posterior_is_the_prior(prepared_dir):
    """An encoder whose head outputs mu = 0, logvar = 0 for every image: q(z|x) = p(z), KL = 0."""
    model = _tiny_vae()
    with torch.no_grad():
        model.E.head.weight.zero_()
        model.E.head.bias.zero_()
    x, _ = load_split(prepared_dir / "digits", "test").batch(torch.arange(50))
    out = compression_metrics(model, x, None, nll_iwae=None)
    assert out["rate_bits"] == 0.0 and "bpd_iwae" not in out
    # every image decodes to the same decoder(0): its distortion is the images' spread around it
    with torch.no_grad():
        recon = model.decoder()(torch.zeros(1, 4)).expand_as(x)
    assert out["distortion_mse"] == pytest.approx(float(((recon - x) / 2).square().mean()), rel=1e-6)


def test_metrics_agree_with_the_likelihood_metrics_of_a_trained_vae(trained_dir, prepared_dir):
    """distortion = recon SSE (in [-1, 1]) / (4 D); bits/dim = nll_iwae / (D ln 2); rate = mean KL / ln 2."""
    model, _, _ = training.load_trained(trained_dir / "vae_digits" / "seed_0")
    x, c = load_split(prepared_dir / "digits", "test").batch(torch.arange(100))
    base = likelihood_metrics(model, x, c, seed=0, iwae_k=4)
    out = compression_metrics(model, x, c, base["nll_iwae"])
    dims = 64
    assert out["distortion_mse"] == pytest.approx(base["recon_mse"] / (4 * dims), rel=1e-5)
    assert out["recon_psnr"] == pytest.approx(10 * math.log10(1 / out["distortion_mse"]))
    assert out["bpd_iwae"] == pytest.approx(base["nll_iwae"] / (dims * math.log(2)))
    with torch.no_grad():
        mu, logvar = model.E(x)
    assert out["rate_bits"] == pytest.approx(float(model.kl(mu, logvar).mean()) / math.log(2), rel=1e-5)
    assert out["rate_bits"] > 0


# -- the file format ----------------------------------------------------------------------------

@pytest.mark.parametrize("top", [3, 300, 70_000])
def test_codes_round_trip_exactly_at_every_width(top):
    rng = np.random.default_rng(top)
    codes = rng.integers(-top, top + 1, size=(37, 5))
    labels = rng.integers(0, 10, size=37)
    data = codec.encode_codes(codes, labels, 0.5, (1, 8, 8), b"h" * 16)
    header, got, got_labels = codec.decode_codes(data, "mem")
    assert np.array_equal(got, codes) and np.array_equal(got_labels, labels)
    assert (header.n, header.z_dim, header.shape, header.step, header.model_hash) == (37, 5, (1, 8, 8), 0.5,
                                                                                       b"h" * 16)
    assert header.width == {3: 1, 300: 2, 70_000: 4}[top]


def test_an_unused_latent_costs_almost_nothing():
    """Dimension-major codes: 60 always-zero coordinates add a few bytes, not 60 x 1000."""
    rng = np.random.default_rng(0)
    used = rng.integers(-8, 9, size=(1000, 4))
    alone = len(codec.encode_codes(used, None, 0.25, (1, 8, 8), b"\0" * 16))
    padded = len(codec.encode_codes(np.hstack([used, np.zeros((1000, 60), np.int64)]), None, 0.25, (1, 8, 8),
                                    b"\0" * 16))
    assert padded - alone < 100


# -- the commands on real exports ---------------------------------------------------------------

@pytest.fixture(scope="module")
def exports(trained_dir, conditional_dir, prepared_dir, tmp_path_factory):
    """The tiny vae_digits and gan_digits exports, and the conditional VAE's (2 steps)."""
    root = tmp_path_factory.mktemp("codec")
    for name, source in (("vae_digits", trained_dir), ("gan_digits", trained_dir), ("cvae_digits", conditional_dir)):
        export_model(source / name, root / name, data_dir=prepared_dir / "digits", log=quiet)
    return root


@pytest.fixture(scope="module")
def digits(prepared_dir, tmp_path_factory):
    """40 test digits: a PNG folder, an .npz with labels, and the uint8 pixels (N, 1, 8, 8)."""
    folder = tmp_path_factory.mktemp("digit_pngs")
    x, c = load_split(prepared_dir / "digits", "test").batch(torch.arange(40))
    pixels = codec.to_uint8(x.numpy())
    for i, image in enumerate(pixels):
        Image.fromarray(image[0]).save(folder / f"d{i:02d}.png")
    npz = folder.parent / "digits.npz"
    np.savez(npz, x=pixels, c=c.numpy())
    return folder, npz, pixels, c.numpy()


def test_round_trip_is_the_decoder_of_the_stored_codes_bit_for_bit(exports, trained_dir, digits, tmp_path, capsys):
    folder, _, pixels, _ = digits
    model, step = ExportedModel(exports / "vae_digits"), 0.25
    assert run("compress", exports / "vae_digits", folder, "--out", tmp_path / "d.gfc", "--step", step) == 0
    out = capsys.readouterr().out
    size = (tmp_path / "d.gfc").stat().st_size
    assert f"{size} bytes for 40 images: {8 * size / 40:.1f} bits per image" in out and "PSNR" in out
    assert run("decompress", exports / "vae_digits", tmp_path / "d.gfc", "--out", tmp_path / "d.npz",
               "--originals", folder) == 0
    with np.load(tmp_path / "d.npz") as got:
        decoded, got_pixels = got["decoded"], got["x"]
    # a direct computation of the same thing: encoder mean, quantized, dequantized, decoded
    x = pixels.astype(np.float32) / 127.5 - 1
    mu, _ = model.encode(x)
    codes = np.rint(mu / np.float32(step)).astype(np.int64)
    _, stored, _ = codec.decode_codes((tmp_path / "d.gfc").read_bytes(), "d.gfc")
    assert np.array_equal(stored, codes)
    direct = model.generate(codes.astype(np.float32) * np.float32(step))
    assert decoded.dtype == np.float32 and np.array_equal(decoded, direct)  # bit for bit
    assert np.array_equal(got_pixels, codec.to_uint8(direct))
    # and the eager PyTorch model (not ONNX) agrees within the export's parity tolerance
    eager, _, _ = training.load_trained(trained_dir / "vae_digits" / "seed_0")
    with torch.no_grad():
        expected = eager.decoder()(torch.from_numpy(codes).float() * step).numpy()
    assert np.abs(decoded - expected).max() <= 1e-5
    psnr = codec.psnr_uint8(got_pixels, pixels)
    assert f"PSNR {psnr:.2f} dB" in capsys.readouterr().out


def test_a_larger_step_gives_a_smaller_file(exports, digits, tmp_path):
    _, npz, _, _ = digits
    sizes = []
    for step in (0.05, 1.0):
        assert run("compress", exports / "vae_digits", npz, "--out", tmp_path / f"{step}.gfc", "--step", step) == 0
        sizes.append((tmp_path / f"{step}.gfc").stat().st_size)
    assert sizes[1] < sizes[0]


def test_conditional_vae_stores_the_labels(exports, digits, tmp_path):
    _, npz, pixels, labels = digits
    assert run("compress", exports / "cvae_digits", npz, "--out", tmp_path / "c.gfc") == 0
    assert run("decompress", exports / "cvae_digits", tmp_path / "c.gfc", "--out", tmp_path / "c.npz") == 0
    model = ExportedModel(exports / "cvae_digits")
    mu, _ = model.encode(pixels.astype(np.float32) / 127.5 - 1, labels)
    direct = model.generate(codec.dequantize(codec.quantize(mu, codec.DEFAULT_STEP), codec.DEFAULT_STEP), labels)
    with np.load(tmp_path / "c.npz") as got:
        assert np.array_equal(got["c"], labels) and np.array_equal(got["decoded"], direct)


def test_decompress_to_a_folder_writes_one_png_per_image(exports, digits, tmp_path):
    folder, _, _, _ = digits
    assert run("compress", exports / "vae_digits", folder, "--out", tmp_path / "d.gfc") == 0
    assert run("decompress", exports / "vae_digits", tmp_path / "d.gfc", "--out", tmp_path / "pngs") == 0
    assert len(list((tmp_path / "pngs").glob("*.png"))) == 40


@pytest.mark.parametrize("argv, message", [
    (["compress", "{gan}", "{images}", "--out", "{tmp}/x.gfc"], "has no encoder"),
    (["decompress", "{gan}", "{good}", "--out", "{tmp}/x.npz"], "has no encoder"),
    (["compress", "{vae}", "{big}", "--out", "{tmp}/x.gfc"], "big.png"),
    (["compress", "{vae}", "{rgb_npz}", "--out", "{tmp}/x.gfc"], "(8, 8, 3)"),
    (["compress", "{vae}", "{float_npz}", "--out", "{tmp}/x.gfc"], "give uint8"),
    (["compress", "{vae}", "{images}", "--out", "{tmp}/x.gfc", "--step", "0"], "--step must be a positive"),
    (["compress", "{cvae}", "{images}", "--out", "{tmp}/x.gfc"], "is conditional"),
    (["decompress", "{vae}", "{corrupt}", "--out", "{tmp}/x.npz"], "corrupt file"),
    (["decompress", "{vae}", "{foreign}", "--out", "{tmp}/x.npz"], "not a genflow compressed file"),
    (["decompress", "{cvae}", "{good}", "--out", "{tmp}/x.npz"], "compressed with another model"),
    (["decompress", "{vae}", "{tmp}/missing.gfc", "--out", "{tmp}/x.npz"], "no such file"),
])
def test_bad_input_exits_2_naming_the_problem(argv, message, exports, digits, tmp_path, capsys):
    folder, _, pixels, _ = digits
    big = tmp_path / "big"
    big.mkdir()
    Image.fromarray(np.zeros((16, 16), dtype=np.uint8)).save(big / "big.png")
    np.savez(tmp_path / "rgb.npz", x=np.zeros((3, 8, 8, 3), np.uint8))
    np.savez(tmp_path / "float.npz", x=pixels.astype(np.float32))
    assert run("compress", exports / "vae_digits", folder, "--out", tmp_path / "good.gfc") == 0
    data = bytearray((tmp_path / "good.gfc").read_bytes())
    data[-3] ^= 0xFF
    (tmp_path / "corrupt.gfc").write_bytes(bytes(data))
    (tmp_path / "foreign.gfc").write_bytes(b"\x89PNG\r\n\x1a\n" + bytes(100))
    capsys.readouterr()
    names = {"gan": exports / "gan_digits", "vae": exports / "vae_digits", "cvae": exports / "cvae_digits",
             "images": folder, "big": big, "tmp": tmp_path, "rgb_npz": tmp_path / "rgb.npz",
             "float_npz": tmp_path / "float.npz", "good": tmp_path / "good.gfc",
             "corrupt": tmp_path / "corrupt.gfc", "foreign": tmp_path / "foreign.gfc"}
    assert run(*[a.format(**names) for a in argv]) == 2
    err = capsys.readouterr().err
    assert err.startswith("genflow: error:") and message in err and "Traceback" not in err, err
    assert not (tmp_path / "x.gfc").exists() and not (tmp_path / "x.npz").exists()


@pytest.mark.parametrize("command", ["compress", "decompress"])
def test_help(command, capsys):
    with pytest.raises(SystemExit) as exit_info:
        cli.main([command, "--help"])
    out = capsys.readouterr().out
    assert exit_info.value.code == 0 and "exported model" in out
    if command == "compress":  # the parser states the default without importing the codec
        assert f"default {codec.DEFAULT_STEP}" in " ".join(out.split())


def test_evaluate_writes_the_metrics_and_the_report_shows_them(trained_dir, prepared_dir, features_dir, params,
                                                               tmp_path):
    from genflow.evaluate.protocol import evaluate_model
    from genflow.report.build import build_report

    spec = params.evaluate.model_copy(update={"linear_probe": False})  # the probes are test_representation's
    for name in ("vae_digits", "gan_digits"):
        evaluate_model(trained_dir / name, prepared_dir / "digits", features_dir / "digits", spec,
                       tmp_path / "metrics" / f"{name}.json", tmp_path / "samples" / f"{name}.png", log=quiet)
    details = json.loads((tmp_path / "metrics" / "vae_digits.details.json").read_text())
    dims = 64
    assert details["bpd_iwae"] == pytest.approx(details["nll_iwae"] / (dims * math.log(2)), rel=1e-4)
    assert details["distortion_mse"] == pytest.approx(details["recon_mse"] / (4 * dims), rel=1e-4)
    assert details["rate_bits"] > 0 and "rate_bits" in details["protocol"]["compression"]
    gan = json.loads((tmp_path / "metrics" / "gan_digits.details.json").read_text())
    assert "rate_bits" not in gan  # no encoder, no likelihood
    models = {k: v for k, v in params.models.items() if k in ("vae_digits", "gan_digits")}
    markdown = build_report(models, tmp_path / "metrics", tmp_path / "samples", tmp_path / "reports",
                            features_dir, baselines={"digits": "gan_digits"})
    header = next(line for line in markdown.splitlines() if "rate (bits/image)" in line)
    assert "recon. PSNR (dB)" in header
    vae_row = next(line for line in markdown.splitlines() if line.startswith("| vae_digits"))
    column = header.split("|").index(" rate (bits/image) ↓ ")
    assert vae_row.split("|")[column].split()[0] == f"{details['rate_bits']:.4g}"
