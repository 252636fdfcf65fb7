"""The report's pictures beside the metrics: real vs generated, nearest training rows,
reconstructions, and conditional samples one class per column (genflow/evaluate/gallery.py)."""
from __future__ import annotations

import pytest
import torch
from PIL import Image

from genflow import config
from genflow.evaluate.gallery import (NEAREST_K, class_columns, gallery_dir, nearest_training_rows,
                                      sample_layout)
from genflow.evaluate.model_metrics import chunk_labels
from genflow.evaluate.protocol import Reference, evaluate_model

from conftest import conditional_params_dict, quiet, tiny_params_dict


def test_sample_layout_puts_one_class_in_each_column():
    model = type("Model", (), {"spec": type("Spec", (), {"c_dim": 10})()})()
    shown, cols = sample_layout(2500, grid_size=8, c_dim=10)
    assert cols == 10 and len(shown) == 80
    labels = chunk_labels(model, 2500)[shown].reshape(-1, cols)  # the grid, row by row
    assert torch.equal(labels, torch.arange(10).expand(8, 10))
    shown, cols = sample_layout(2500, grid_size=8, c_dim=0)
    assert cols == 8 and torch.equal(shown, torch.arange(64))
    assert len(sample_layout(30, grid_size=8, c_dim=10)[0]) == 30  # fewer samples than the grid


def test_class_columns_fills_each_column_with_its_class_and_blanks_missing_rows():
    c = torch.tensor([2, 0, 1, 0, 2, 0])
    grid = class_columns(c, classes=3, rows=3).reshape(3, 3)
    assert grid[:, 0].tolist() == [1, 3, 5]
    assert grid[:, 1].tolist() == [2, -1, -1]  # class 1 has one row
    assert grid[:, 2].tolist() == [0, 4, -1]


def test_a_training_image_is_its_own_nearest_training_row(trained_dir, prepared_dir, features_dir):
    """The memorisation picture's known answer: a 'sample' that is a training row finds itself
    first, at distance 0."""
    params = config.validate(tiny_params_dict())
    ref = Reference.load(prepared_dir / "digits", features_dir / "digits", params.evaluate)
    copies = ref.train[[5, 17, 42]]
    index, distance = nearest_training_rows(ref, copies, NEAREST_K)
    assert index.shape == (3, NEAREST_K)
    assert index[:, 0].tolist() == [5, 17, 42] or torch.equal(ref.train[index[:, 0]], copies)  # duplicates
    assert distance[:, 0].max() < 1e-6 and bool((distance[:, 1:] >= distance[:, :1]).all())


@pytest.fixture(scope="module")
def cvae_evaluated(conditional_dir, prepared_dir, features_dir, tmp_path_factory):
    root = tmp_path_factory.mktemp("cvae")
    params = config.validate(conditional_params_dict())
    evaluate_model(conditional_dir / "cvae_digits", prepared_dir / "digits", features_dir / "digits", params.evaluate,
                   root / "cvae.json", root / "samples" / "cvae.png", log=quiet)
    return root / "samples"


def _size(png):
    with Image.open(png) as image:
        image.load()
        return image.size


def test_conditional_samples_are_drawn_one_class_per_column(cvae_evaluated):
    # grid_size 4 of the tiny params: 4 rows x 10 classes of 8 px tiles, 1 px padding, x8 upscaled
    width, height = _size(cvae_evaluated / "cvae.png")
    assert (width, height) == ((10 * 9 + 1) * 8, (4 * 9 + 1) * 8)


def test_gallery_of_an_encoder_model_has_all_three_pictures(cvae_evaluated):
    gallery = gallery_dir(cvae_evaluated / "cvae.png")
    assert gallery.name == "cvae.gallery"
    assert sorted(p.name for p in gallery.iterdir()) == ["nearest.png", "real_vs_generated.png",
                                                         "reconstructions.png"]
    for png in gallery.iterdir():
        width, height = _size(png)
        assert width > 100 and height > 50


def test_reconstructions_of_a_reference_split_smaller_than_the_grid_leave_blank_tiles(tmp_path):
    """3 real rows for a 4-column grid of 2 row pairs: the 5 missing tiles are blank, not an
    IndexError (a tiny test split, or a small image folder of the user's)."""
    from types import SimpleNamespace

    from genflow.evaluate.gallery import reconstructions
    from genflow.models.registry import build

    params = config.validate(tiny_params_dict())
    model = build(params.models["vae_digits"], (1, 8, 8), 10).eval()
    ref = SimpleNamespace(real=torch.rand(3, 1, 8, 8) * 2 - 1, real_c=None)
    with torch.no_grad():
        reconstructions(model, ref, tmp_path / "r.png", "tiny", grid_size=4)
    full = SimpleNamespace(real=torch.rand(8, 1, 8, 8) * 2 - 1, real_c=None)
    with torch.no_grad():
        reconstructions(model, full, tmp_path / "full.png", "tiny", grid_size=4)
    assert _size(tmp_path / "r.png") == _size(tmp_path / "full.png")  # the same grid, partly blank
