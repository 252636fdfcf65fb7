"""StyleGAN: the modulated conv against StyleGAN2's weight modulation, shapes, style mixing,
deterministic noise, lazy regularisers, export parity of mapping / synthesis / generator, the
W-space path length, and `genflow mix` on a trained and exported model."""
from __future__ import annotations

import json
import subprocess

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from PIL import Image

from genflow import config
from genflow.errors import ConfigError, GenflowError
from genflow.export.exported import ExportedModel
from genflow.models import registry
from genflow.models.style_blocks import ModulatedConv

from conftest import PYTHON, REPO, quiet, tiny_params_dict

SMALL = {"model": "stylegan", "dataset": "digits", "z_dim": 8, "width": 8, "w_dim": 16, "mapping_layers": 2}


def make_spec(**overrides):
    raw = tiny_params_dict()
    train = {"steps": 3, "batch_size": 16, **overrides.pop("train", {})}
    raw["models"] = {"m": {**SMALL, **overrides, "train": train}}
    return config.validate(raw).models["m"]


def build(shape=(1, 8, 8), seed=0, **overrides):
    torch.manual_seed(seed)
    return registry.build(make_spec(**overrides), shape, 10)


def naive_modulated_conv(conv: ModulatedConv, x: torch.Tensor, w: torch.Tensor) -> torch.Tensor:
    """StyleGAN2 as published: one conv per sample with its own modulated, demodulated weight."""
    styles = conv.affine(w)
    out = []
    for n in range(len(x)):
        weight = conv.weight * conv.scale * styles[n][None, :, None, None]
        if conv.demodulate:
            weight = weight * torch.rsqrt(weight.square().sum(dim=(1, 2, 3), keepdim=True) + 1e-8)
        out.append(F.conv2d(x[n:n + 1], weight, padding=conv.padding))
    return torch.cat(out)


@pytest.mark.parametrize("kernel,demodulate", [(3, True), (1, False), (1, True)])
def test_input_modulation_equals_weight_modulation(kernel, demodulate):
    torch.manual_seed(0)
    conv = ModulatedConv(5, 7, kernel, w_dim=6, demodulate=demodulate).double()
    with torch.no_grad():
        conv.affine.weight.mul_(3.0)  # styles far from 1, so modulation really matters
    x, w = torch.randn(4, 5, 6, 6, dtype=torch.float64), torch.randn(4, 6, dtype=torch.float64)
    got, expected = conv(x, w), naive_modulated_conv(conv, x, w)
    assert got.shape == (4, 7, 6, 6)
    assert (got - expected).abs().max() < 1e-6
    assert (got[0] - conv(x[:1], w[1:2])[0]).abs().max() > 1e-3  # the style changes the output


@pytest.mark.parametrize("resolution,channels", [(8, 1), (16, 3), (32, 1)])
def test_shapes_and_number_of_styles(resolution, channels):
    model = build((channels, resolution, resolution))
    G, levels = model.G, int(np.log2(resolution)) - 2
    assert G.num_ws == 2 * levels + 2 == model.card_io()["num_ws"]
    z = torch.randn(5, 8)
    w = G.mapping(z)
    assert w.shape == (5, 16) and G.broadcast(w).shape == (5, G.num_ws, 16)
    x = G(z)
    assert x.shape == (5, channels, resolution, resolution) and x.abs().max() <= 1
    assert model.D(x).shape == (5,)
    assert G.synthesis.noise_shapes()[-1] == (1, resolution, resolution)
    assert len(G.synthesis.noise_shapes()) == 2 * levels + 1


def test_style_mixing_crossover_picks_one_latents_styles():
    G = build((1, 16, 16)).G.eval()
    z, z2 = torch.randn(2, 6, 8)
    with torch.no_grad():
        a, b = G(z), G(z2)
        all_a = G(z, mix_z=z2, crossover=torch.full((6,), G.num_ws))
        all_b = G(z, mix_z=z2, crossover=torch.zeros(6, dtype=torch.long))
        half = G(z, mix_z=z2, crossover=torch.full((6,), G.num_ws // 2))
    assert torch.equal(all_a, a) and torch.equal(all_b, b)
    assert not torch.allclose(half, a) and not torch.allclose(half, b)


def test_constant_noise_makes_samples_deterministic_and_is_saved():
    model = build((1, 16, 16))
    for layer in model.G.synthesis.layers:  # noise must matter for this test to mean something
        torch.nn.init.constant_(layer.noise_strength, 0.5)
    z = torch.randn(4, 8)
    G = model.G.eval()
    with torch.no_grad():
        first, again = G(z), G(z)
        fresh = G(z, noise=[torch.randn(4, *shape) for shape in G.synthesis.noise_shapes()])
    assert torch.equal(first, again)
    assert (first - fresh).abs().max() > 1e-3
    other = build((1, 16, 16), seed=1)  # other init, other noise buffers, until the state is loaded
    other.load_state_dict(model.state_dict())
    with torch.no_grad():
        assert torch.equal(other.G.eval()(z), first)
    assert any(k.endswith("noise_const") for k in model.state_dict())


def test_path_length_regulariser_keeps_its_running_mean_in_the_state():
    from genflow.data.loader import BatchPlan
    from genflow.train.engine import Engine

    model = build(pl_weight=1.0, pl_every=2, r1_every=2)
    engine = Engine(model, train=model.spec.train, seed=0)
    x = torch.rand(16, 1, 8, 8) * 2 - 1

    class Data:  # a real Split would do; 16 rows of noise are enough for the regulariser
        def __len__(self):
            return 16

        def batch(self, rows):
            return x[rows], None

    plan = BatchPlan(16, 16, 0)
    first = engine.train_step(Data(), plan)  # step 0: not due
    assert "pl_penalty" not in first and "r1" not in first and float(model.pl_mean) == 0.0
    second = engine.train_step(Data(), plan)  # step 1: the last of the interval
    assert {"pl_penalty", "pl_length", "r1"} <= set(second)
    assert float(model.pl_mean) == pytest.approx(0.01 * float(second["pl_length"]), rel=1e-5)
    assert torch.equal(engine.state_dict()["model"]["pl_mean"], model.pl_mean)


@pytest.mark.parametrize("overrides,key", [({"arch": "mlp"}, "arch"), ({"depth": 2}, "depth"),
                                           ({"mixing_prob": 1.5}, "mixing_prob"),
                                           ({"mapping_layers": 9}, "mapping_layers")])
def test_spec_rejects_what_stylegan_cannot_do(overrides, key):
    with pytest.raises(ConfigError, match=key):
        make_spec(**overrides)


# -- trained, evaluated, exported -------------------------------------------------------


@pytest.fixture(scope="module")
def exported(prepared_dir, features_dir, tmp_path_factory):
    """A tiny StyleGAN and a tiny GAN on digits: trained (train_model), evaluated, exported."""
    from genflow.evaluate.protocol import evaluate_model
    from genflow.export.write import export_model
    from genflow.launch import train as train_model

    root = tmp_path_factory.mktemp("stylegan")
    raw = tiny_params_dict()
    raw["ray"]["storage_path"] = str(root / "work")
    raw["evaluate"].update(n_samples=100, n_real=100, path_samples=50)
    raw["models"] = {"sg": {**SMALL, "train": {"steps": 4, "batch_size": 16, "checkpoint_every": 4}},
                     "gan": {"model": "gan", "dataset": "digits", "z_dim": 8, "width": 8,
                             "train": {"steps": 2, "batch_size": 16}}}
    params = config.validate(raw)
    out = {}
    for name in params.models:
        train_model(name, params, prepared_dir, root / "models" / name)
        out[name] = root / "export" / name
        export_model(root / "models" / name, out[name], data_dir=prepared_dir / "digits", log=quiet)
    metrics = evaluate_model(root / "models" / "sg", prepared_dir / "digits", features_dir / "digits",
                             params.evaluate, root / "sg.json", root / "sg.png", log=quiet)
    return out, metrics


def test_export_has_mapping_and_synthesis_and_they_compose_to_the_generator(exported):
    paths, _ = exported
    card = json.loads((paths["sg"] / "model_card.json").read_text())
    assert {"generator", "scorer", "mapping", "synthesis"} <= set(card["networks"])
    for net in card["networks"].values():
        assert max(net["parity"]["max_error"].values()) <= net["parity"]["tolerance"]
    io = card["io"]
    assert io["num_ws"] == 4 and io["w_dim"] == 16 and io["z_dim"] == 8 and "ws[0]" in io["ws_layers"]
    assert card["networks"]["synthesis"]["inputs"]["ws"]["shape"] == ["N", 4, 16]
    model = ExportedModel(paths["sg"])
    z = np.random.default_rng(3).standard_normal((5, 8)).astype(np.float32)  # not the traced batch of 16
    w = model.map(z)
    x = model.synthesize(np.repeat(w[:, None], io["num_ws"], axis=1))
    assert w.shape == (5, 16) and x.shape == (5, 1, 8, 8)
    assert np.abs(x - model.generate(z)).max() < 1e-5


def test_evaluate_reports_the_path_length_in_w(exported):
    _, metrics = exported
    assert metrics["path_length_w"] > 0 and np.isfinite(metrics["path_length_w"])
    assert metrics["path_length"] > 0


def _mix(*args):
    return subprocess.run([str(PYTHON), "-m", "genflow.cli", "mix", *map(str, args)], cwd=REPO,
                          capture_output=True, text=True, timeout=120)


def test_genflow_mix_writes_the_style_mixing_grid(exported, tmp_path):
    paths, _ = exported
    out = tmp_path / "mix.png"
    proc = _mix(paths["sg"], "--out", out, "--rows", 2, "--cols", 3, "--crossover", 1, "--seed", 5)
    assert proc.returncode == 0, proc.stderr
    assert "ws[:1]" in proc.stdout
    scale, cell = 64 // 8, 8 + 1  # save_image_grid: 1 px padding, upscaled nearest to ~64 px per image
    assert Image.open(out).size == ((4 * cell + 1) * scale, (3 * cell + 1) * scale)


def test_style_mixing_grid_corners_are_the_sources(exported, tmp_path):
    from genflow.export.style_app import style_mixing

    model = ExportedModel(exported[0]["sg"])
    rows, cols, num_ws = 2, 3, model.io["num_ws"]
    grid = style_mixing(model, rows, cols, num_ws, 7, tmp_path / "a.png").reshape(rows + 1, cols + 1, 1, 8, 8)
    assert np.abs(grid[1:, 1:] - grid[1:, :1]).max() < 1e-5  # K = num_ws: every cell is its row's A
    grid = style_mixing(model, rows, cols, 0, 7, tmp_path / "b.png").reshape(rows + 1, cols + 1, 1, 8, 8)
    assert np.abs(grid[1:, 1:] - grid[:1, 1:]).max() < 1e-5  # K = 0: every cell is its column's B


def test_genflow_mix_rejects_a_bad_crossover_and_a_model_without_styles(exported, tmp_path):
    paths, _ = exported
    proc = _mix(paths["sg"], "--out", tmp_path / "x.png", "--crossover", 5)
    assert proc.returncode == 2 and "--crossover 5 is outside 0..4" in proc.stderr
    assert not (tmp_path / "x.png").exists()
    proc = _mix(paths["gan"], "--out", tmp_path / "y.png")
    assert proc.returncode == 2 and "model 'gan' has no mapping" in proc.stderr
    with pytest.raises(GenflowError, match="outside 0..4"):
        from genflow.export.style_app import style_mixing

        style_mixing(ExportedModel(paths["sg"]), 1, 1, -1, 0, tmp_path / "z.png")


def test_holdout_class_scores_images_by_minus_d():
    model = build(holdout_class=3)
    x = torch.rand(6, 1, 8, 8) * 2 - 1
    scores = model.anomaly_score(x, torch.Generator().manual_seed(0))
    assert scores.shape == (6,) and torch.equal(scores, -model.D(x).detach())
