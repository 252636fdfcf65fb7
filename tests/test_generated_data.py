"""Procedural sources: stacked_digits (1000 modes) and sprites (known factors), and every
model family training on them from params alone."""
from __future__ import annotations

import json
import math

import numpy as np
import pytest

from genflow import config

from genflow.data.embedded import digits
from genflow.data.loader import load_split
from genflow.data.prepare import prepare
from genflow.data.specs import SpritesData, StackedDigitsData
from genflow.data.sprites import COLOURS, ORIENTATIONS, POSITIONS, SCALES, SHAPES, render, sprites
from genflow.data.stacked_digits import stacked_digits
from genflow.train import checkpoint

from conftest import quiet, tiny_params_dict

# -- stacked digits -------------------------------------------------------------------


@pytest.fixture(scope="module")
def base_digits():
    return digits()


@pytest.fixture(scope="module")
def stacked8():
    return stacked_digits(600, 8, 0.1, 0.2, seed=0)


@pytest.mark.parametrize("resolution", [8, 16])
def test_stacked_digits_shape_and_labels(resolution):
    raw = stacked_digits(200, resolution, 0.1, 0.2, seed=0)
    assert raw.kind == "image" and raw.num_classes == 1000
    assert raw.x.shape == (200, resolution, resolution, 3) and raw.x.dtype == np.uint8
    r, g, b = (raw.factors[k].astype(np.int64) for k in ("label_r", "label_g", "label_b"))
    assert all(0 <= v.min() and v.max() <= 9 for v in (r, g, b))
    np.testing.assert_array_equal(raw.labels, 100 * r + 10 * g + b)
    assert raw.labels.dtype == np.int64 and raw.labels.max() < 1000
    counts = {k: len(v) for k, v in raw.splits.items()}
    assert counts == {"train": 140, "val": 20, "test": 40}
    assert sorted(np.concatenate(list(raw.splits.values())).tolist()) == list(range(200))


def test_stacked_channels_are_digits_of_their_class(stacked8, base_digits):
    images = base_digits.x[..., 0].reshape(len(base_digits.x), -1)
    lookup = {img.tobytes(): int(label) for img, label in zip(images, base_digits.labels)}
    for ch, key in enumerate(("label_r", "label_g", "label_b")):
        for i in range(len(stacked8.x)):
            channel = stacked8.x[i, :, :, ch].tobytes()
            assert channel in lookup, (i, ch)  # exactly one of the bundled digit images
            assert lookup[channel] == stacked8.factors[key][i]


def test_stacked_channels_resized_at_16(base_digits):
    from PIL import Image

    raw = stacked_digits(150, 16, 0.1, 0.2, seed=5)
    resized = {}
    for img, label in zip(base_digits.x[..., 0], base_digits.labels):
        up = np.asarray(Image.fromarray(img).resize((16, 16), Image.Resampling.BILINEAR))
        resized[up.tobytes()] = int(label)
    for i in range(0, len(raw.x), 7):
        for ch, key in enumerate(("label_r", "label_g", "label_b")):
            assert resized[raw.x[i, :, :, ch].tobytes()] == raw.factors[key][i]


def test_stacked_deterministic_per_seed():
    a, b, c = (stacked_digits(300, 8, 0.1, 0.2, seed=s) for s in (3, 3, 4))
    np.testing.assert_array_equal(a.x, b.x)
    np.testing.assert_array_equal(a.labels, b.labels)
    assert not np.array_equal(a.x, c.x) and not np.array_equal(a.labels, c.labels)


def test_stacked_test_digits_never_in_train(stacked8):
    def channel_images(split):
        rows = stacked8.x[stacked8.splits[split]]
        return {rows[i, :, :, ch].tobytes() for i in range(len(rows)) for ch in range(3)}

    train, val, test = (channel_images(s) for s in ("train", "val", "test"))
    assert len(test) > 50 and len(train) > 300
    assert not train & test and not train & val and not val & test


def test_stacked_covers_nearly_all_modes():
    raw = stacked_digits(20_000, 8, 0.1, 0.2, seed=0)
    train_modes = np.unique(raw.labels[raw.splits["train"]])
    assert len(train_modes) >= 990  # 14000 draws over 1000 equally likely triples
    assert set(np.unique(raw.labels)) <= set(range(1000))


def test_stacked_through_prepare(tmp_path):
    spec = StackedDigitsData(source="stacked_digits", n_samples=200, resolution=8, seed=2)
    raw = stacked_digits(200, 8, spec.val_fraction, spec.test_fraction, 2)
    manifest = prepare(spec, tmp_path / "stacked", log=quiet)
    assert manifest["num_classes"] == 1000 and manifest["factors"] == ["label_b", "label_g", "label_r"]
    for split, rows in raw.splits.items():
        data = load_split(tmp_path / "stacked", split)
        np.testing.assert_array_equal(data.x.numpy(), raw.x[rows].transpose(0, 3, 1, 2))
        np.testing.assert_array_equal(data.labels.numpy(), raw.labels[rows])


# -- sprites --------------------------------------------------------------------------


def test_sprites_shapes_factors_and_labels():
    grey = sprites(200, 32, False, 0.1, 0.2, seed=0)
    assert grey.x.shape == (200, 32, 32, 1) and grey.x.dtype == np.uint8
    assert grey.num_classes == 3 and grey.class_names == list(SHAPES)
    assert set(grey.factors) == {"shape", "scale", "orientation", "pos_x", "pos_y"}
    colour = sprites(200, 64, True, 0.1, 0.2, seed=0)
    assert colour.x.shape == (200, 64, 64, 3)
    assert set(colour.factors) == {"shape", "scale", "orientation", "pos_x", "pos_y", "color"}

    f = colour.factors
    assert set(np.unique(f["shape"])) == {0, 1, 2}
    assert set(np.unique(f["scale"])) <= set(SCALES.astype(np.float32))
    assert set(np.unique(f["orientation"])) <= set(ORIENTATIONS.astype(np.float32))
    for key in ("pos_x", "pos_y"):
        assert set(np.unique(f[key])) <= set(POSITIONS.astype(np.float32))
    assert set(np.unique(f["color"])) <= set(range(len(COLOURS)))
    np.testing.assert_array_equal(colour.labels, f["shape"].astype(np.int64))
    assert (colour.x.reshape(200, -1).max(axis=1) > 0).all()  # every sprite is visible


def test_sprites_deterministic_per_seed():
    a, b, c = (sprites(150, 32, True, 0.1, 0.2, seed=s) for s in (1, 1, 2))
    np.testing.assert_array_equal(a.x, b.x)
    for key in a.factors:
        np.testing.assert_array_equal(a.factors[key], b.factors[key])
    assert not np.array_equal(a.x, c.x)


def _one(shape, scale, orientation, pos_x, pos_y):
    return {"shape": np.array([shape], np.int16), "scale": np.array([scale], np.float32),
            "orientation": np.array([orientation], np.float32),
            "pos_x": np.array([pos_x], np.float32), "pos_y": np.array([pos_y], np.float32)}


@pytest.mark.parametrize("pos_x, pos_y", [(0.25, 0.25), (0.5, 0.75), (0.75, 0.3387097)])
def test_square_centre_of_mass_and_area(pos_x, pos_y):
    resolution = 32
    centre = (np.arange(resolution) + 0.5) / resolution  # pixel centres in canvas units
    areas = []
    for scale in SCALES:
        img = render(_one(0, scale, 0.0, pos_x, pos_y), resolution)[0].astype(np.float64)
        mass = img.sum()
        com_x = (img.sum(axis=0) * centre).sum() / mass  # columns are x
        com_y = (img.sum(axis=1) * centre).sum() / mass  # rows are y
        assert abs(com_x - pos_x) * resolution <= 1.0 and abs(com_y - pos_y) * resolution <= 1.0
        areas.append(mass / 255.0)
        side = 2 * 0.8 * 0.2 * scale * resolution  # the square's half-extent is 0.8 radius
        assert abs(mass / 255.0 - side * side) <= 0.15 * side * side
    assert all(a < b for a, b in zip(areas, areas[1:]))


def test_x_and_y_are_not_swapped():
    img = render(_one(1, 1.0, 0.0, 0.75, 0.25), 32)[0]  # ellipse, long axis along x
    rows, cols = np.nonzero(img)
    assert cols.mean() > 20 and rows.mean() < 12
    assert np.ptp(cols) > np.ptp(rows)  # 2:1 ellipse lies along x at orientation 0


def test_sprites_are_never_clipped_by_the_canvas():
    """At the extreme positions and the largest scale, every shape keeps its full area."""
    combos = [(s, p, o) for s in range(3) for p in (POSITIONS[0], POSITIONS[-1]) for o in ORIENTATIONS]
    n = len(combos)
    factors = {"shape": np.array([c[0] for c in combos], np.int16),
               "scale": np.full(n, SCALES[-1], np.float32),
               "orientation": np.array([c[2] for c in combos], np.float32),
               "pos_x": np.array([c[1] for c in combos], np.float32),
               "pos_y": np.array([c[1] for c in combos], np.float32)}
    centred = {**factors, "pos_x": np.full(n, 0.5, np.float32), "pos_y": np.full(n, 0.5, np.float32)}
    at_edge = render(factors, 32).reshape(n, -1).sum(axis=1).astype(np.float64)
    at_centre = render(centred, 32).reshape(n, -1).sum(axis=1).astype(np.float64)
    assert (at_edge > 0).all()
    np.testing.assert_allclose(at_edge, at_centre, rtol=0.01)  # a 0.05-canvas shift out would lose 5%


def test_colour_is_coverage_times_palette():
    colour = sprites(120, 32, True, 0.1, 0.2, seed=7)
    coverage = render(colour.factors, 32).astype(np.float64)
    palette = COLOURS[colour.factors["color"]].astype(np.float64)
    expected = np.rint(coverage[..., None] * palette[:, None, None, :] / 255.0).astype(np.uint8)
    np.testing.assert_array_equal(colour.x, expected)
    grey = sprites(120, 32, False, 0.1, 0.2, seed=7)
    np.testing.assert_array_equal(grey.x[..., 0], coverage.astype(np.uint8))  # same factors for the seed


def test_sprites_through_prepare_keeps_factors(tmp_path):
    import pyarrow.parquet as pq

    spec = SpritesData(source="sprites", n_samples=100, resolution=32, color=True, seed=1)
    raw = sprites(100, 32, True, spec.val_fraction, spec.test_fraction, 1)
    out = tmp_path / "sprites"
    manifest = prepare(spec, out, log=quiet)
    assert manifest["class_names"] == list(SHAPES) and manifest["shape"] == [32, 32, 3]
    assert manifest["factors"] == sorted(raw.factors)
    rows = raw.splits["test"]
    data = load_split(out, "test")
    np.testing.assert_array_equal(data.x.numpy(), raw.x[rows].transpose(0, 3, 1, 2))
    table = pq.read_table(out / manifest["splits"]["test"]["shards"][0]["file"])
    for key, values in raw.factors.items():
        np.testing.assert_array_equal(table.column(key).to_numpy(), values[rows])


# -- every model family trains on both, from params alone ------------------------------

TRAIN = {"steps": 2, "batch_size": 16, "log_every": 1, "checkpoint_every": 2}
NET = {"arch": "conv", "width": 8, "z_dim": 4}


def _family_params(storage) -> dict:
    raw = tiny_params_dict()
    raw["ray"]["storage_path"] = str(storage)
    raw["data"] = {
        "stacked": {"source": "stacked_digits", "n_samples": 300, "resolution": 16},
        "sprites": {"source": "sprites", "n_samples": 300, "resolution": 32, "color": True},
    }
    models = {}
    for dataset, classes in (("stacked", 1000), ("sprites", 3)):
        models[f"gan_{dataset}"] = {"model": "gan", "dataset": dataset, **NET, "train": dict(TRAIN)}
        models[f"vae_{dataset}"] = {"model": "vae", "dataset": dataset, **NET, "train": dict(TRAIN)}
        models[f"vaegan_{dataset}"] = {"model": "vaegan", "dataset": dataset, **NET, "train": dict(TRAIN)}
        models[f"cgan_{dataset}"] = {"model": "gan", "dataset": dataset, **NET, "c_dim": classes,
                                     "train": dict(TRAIN)}
    raw["models"] = models
    return raw


def test_every_family_trains_on_generated_data(tmp_path):
    from genflow.launch import train as train_model

    params = config.validate(_family_params(tmp_path / "work"))
    assert len(params.models) == 8
    data_root = tmp_path / "prepared"
    shapes = {}
    for name, spec in params.data.items():
        manifest = prepare(spec, data_root / name, log=quiet)
        shapes[name] = manifest["shape"]
    assert shapes == {"stacked": [16, 16, 3], "sprites": [32, 32, 3]}

    for name, spec in params.models.items():
        out = tmp_path / "models" / name
        train_model(name, params, data_root, out)
        seed0 = out / "seed_0"
        assert (seed0 / "state.pt").is_file() and (seed0 / "meta.json").is_file()
        meta = json.loads((seed0 / "meta.json").read_text())
        assert meta["step"] == 2 and meta["num_classes"] == (1000 if spec.dataset == "stacked" else 3)
        assert meta["data_shape"] == [3, *shapes[spec.dataset][:2]]
        log = checkpoint.read_log_csv(seed0 / "train_log.csv")
        assert [row["step"] for row in log] == [1, 2], name
        loss_key = "loss" if spec.model == "vae" else "G_loss"
        for row in log:
            assert loss_key in row, (name, row)
            assert all(math.isfinite(float(v)) for v in row.values()), (name, row)
    # the resume state in ray.storage_path is dropped once each model is done
    assert not list((tmp_path / "work").glob("*-s0-*"))


def test_conditional_c_dim_must_match_generated_classes(tmp_path):
    from genflow.errors import ConfigError

    raw = _family_params(tmp_path / "work")
    raw["models"]["cgan_sprites"]["c_dim"] = 10
    with pytest.raises(ConfigError, match=r"models\.cgan_sprites\.c_dim"):
        config.validate(raw)
    raw = _family_params(tmp_path / "work")
    raw["models"]["cgan_stacked"]["c_dim"] = 10
    with pytest.raises(ConfigError, match=r"models\.cgan_stacked\.c_dim.*1000"):
        config.validate(raw)
