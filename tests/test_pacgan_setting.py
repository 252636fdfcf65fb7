"""PacGAN's Table 1 setting (issue #27): the maxout D and BatchNorm G of the MLP GAN family, the
paper's ring as a dataset option, and the presets/mixtures DVC project that runs them."""
from __future__ import annotations

import subprocess

import numpy as np
import pytest
import torch
import yaml
from pydantic import ValidationError

from genflow import config
from genflow.data.embedded import mixture, mixture_centers
from genflow.data.specs import MixtureData
from genflow.models import registry
from genflow.models.blocks import Maxout, MaxoutTrunk
from genflow.models.specs import GanSpec

from conftest import REPO

PRESET = REPO / "presets" / "mixtures"
PAPER = {"model": "gan", "dataset": "grid25", "arch": "mlp", "z_dim": 2, "width": 40, "depth": 4,
         "g_batchnorm": True, "d_act": "maxout", "d_width": 20, "d_depth": 3, "maxout_pieces": 5}


def test_maxout_takes_the_max_over_each_units_pieces():
    layer = Maxout(3, 4, pieces=5)
    x = torch.randn(7, 3)
    pieces = layer.linear(x).reshape(7, 4, 5)
    torch.testing.assert_close(layer(x), pieces.max(dim=2).values)
    assert MaxoutTrunk(in_dim=8, width=20, depth=3, pieces=5)(torch.randn(6, 8)).shape == (6, 20)


@pytest.mark.parametrize("pac", [1, 2, 4])
def test_paper_networks_have_the_papers_shapes(pac):
    spec = GanSpec.model_validate({**PAPER, "pac": pac})
    model = registry.build(spec, (2,), 0)
    linears = [m for m in model.G.modules() if isinstance(m, torch.nn.Linear)]
    assert [m.out_features for m in linears] == [40, 40, 40, 40, 2]
    assert sum(isinstance(m, torch.nn.BatchNorm1d) for m in model.G.modules()) == 4
    maxouts = [m for m in model.D.modules() if isinstance(m, Maxout)]
    assert [(m.linear.in_features, m.out_dim, m.pieces) for m in maxouts] == [(2 * pac, 20, 5), (20, 20, 5),
                                                                              (20, 20, 5)]
    assert not any(isinstance(m, torch.nn.BatchNorm1d) for m in model.D.modules())  # the paper's D has none
    x = model.G(torch.randn(4 * pac, 2))
    assert x.shape == (4 * pac, 2) and model.D(x).shape == (4,)  # one score per pack


@pytest.mark.parametrize("bad, key", [
    ({"arch": "conv", "dataset": "digits", "d_act": "maxout", "g_batchnorm": False, "d_width": None,
      "d_depth": None}, "d_act"),
    ({"d_act": "leaky_relu", "maxout_pieces": 3}, "maxout_pieces"),
    ({"arch": "conv", "dataset": "digits", "d_act": "leaky_relu", "g_batchnorm": True, "d_width": None,
      "d_depth": None}, "g_batchnorm"),
    ({"arch": "conv", "dataset": "digits", "d_act": "leaky_relu", "g_batchnorm": False, "d_depth": None}, "d_width"),
    ({"maxout_pieces": 1}, "maxout_pieces"),
    ({"d_act": "relu"}, "d_act"),
    ({"d_width": 2}, "d_width"),
    ({"pac_embed": True, "d_depth": 1}, "pac_embed"),
    ({"arch": "conv", "dataset": "digits", "d_act": "leaky_relu", "g_batchnorm": False, "d_width": None,
      "d_depth": None, "pac_embed": True}, "pac_embed"),
])
def test_bad_paper_settings_are_refused_naming_the_key(bad, key):
    with pytest.raises(ValidationError) as err:
        GanSpec.model_validate({**PAPER, **bad})
    assert key in str(err.value)


def test_a_saved_paper_spec_validates_again():
    spec = GanSpec.model_validate(PAPER)
    assert GanSpec.model_validate(spec.model_dump()) == spec


def test_ring_radius_option():
    ring = mixture_centers("ring8", radius=1.0)
    np.testing.assert_allclose(np.linalg.norm(ring, axis=1), 1.0, atol=1e-12)
    raw = mixture("ring8", 4000, 0.01, seed=0, radius=1.0)
    assert abs(np.linalg.norm(raw.x, axis=1).mean() - 1.0) < 0.01
    assert abs((raw.x - raw.centers[raw.components]).std() - 0.01) < 0.001
    assert MixtureData.model_validate({"source": "ring8"}).radius == 2.0  # the default ring is unchanged
    np.testing.assert_array_equal(mixture("ring8", 100, 0.05, seed=0).x, mixture("ring8", 100, 0.05, 0, 2.0).x)
    with pytest.raises(ValidationError, match="radius"):
        MixtureData.model_validate({"source": "grid25", "radius": 1.0})
    with pytest.raises(ValidationError, match="radius"):
        MixtureData.model_validate({"source": "ring8", "radius": 0.0})


def test_mixtures_preset_params_are_valid_and_hold_table_1():
    params = config.load(PRESET / "params.yaml")
    assert params.ray.num_workers == 0  # in-process: the preset is sized for 2 cores
    ring = params.data[[n for n, d in params.data.items() if d.source == "ring8"][0]]
    assert (ring.radius, ring.std) == (1.0, 0.01)
    for dataset in params.data:
        rows = {spec.pac: spec for spec in params.models.values() if spec.dataset == dataset}
        assert sorted(rows) == [1, 2, 3, 4], dataset
        for pac, spec in rows.items():
            assert len(spec.seeds) >= 5 and spec.d_act == "maxout" and spec.g_batchnorm
            assert spec.train.batch_size == 100 * pac  # the paper's batch: 100 packs


def test_mixtures_preset_dvc_yaml_matches_its_params():
    stages = yaml.safe_load((PRESET / "dvc.yaml").read_text())["stages"]
    assert {"prepare", "featurenet", "train", "evaluate", "report"} <= set(stages)
    assert stages["train"]["foreach"] == "${models}" and stages["evaluate"]["foreach"] == "${models}"
    for stage in stages.values():
        deps = stage.get("do", stage)["deps"]
        assert all(not d.startswith("genflow") and not d.startswith("stages") for d in deps)  # ../../ paths
        for dep in deps:
            if dep.startswith("../../"):
                assert (PRESET / dep).resolve().exists(), dep
    assert (PRESET / ".dvc" / "config").is_file()
    assert "repro-mixtures:" in (REPO / "Makefile").read_text()


@pytest.mark.parametrize("pac_embed", [False, True])
def test_a_pack_is_pac_consecutive_samples(pac_embed):
    """The diagnosis ruled out a packing bug: pack i is samples i*pac..i*pac+pac-1, whole, and
    with pac_embed each sample passes the shared per-sample layers alone."""
    spec = GanSpec.model_validate({**PAPER, "pac": 3, "pac_embed": pac_embed})
    D = registry.build(spec, (2,), 0).D
    x = torch.randn(6, 2)
    if pac_embed:
        packs = D.per_sample(x).reshape(2, -1)
    else:
        packs = torch.stack([x[0:3].flatten(), x[3:6].flatten()])
    torch.testing.assert_close(D(x), D.head(D.trunk(packs)).squeeze(1))
    moved = x.clone()
    moved[4] += 1.0  # a sample of the second pack changes only the second pack's score
    changed = D(moved) != D(x)
    assert changed.tolist() == [False, True]


def test_dvc_reads_the_mixtures_preset_as_a_project_of_its_own():
    """DVC itself parses the preset's dvc.yaml against its params.yaml: one train and one
    evaluate stage per model, run from the preset's folder."""
    proc = subprocess.run([str(REPO / ".venv" / "bin" / "dvc"), "stage", "list"], cwd=PRESET,
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    listed = {line.split()[0] for line in proc.stdout.splitlines() if line.strip()}
    models = config.load(PRESET / "params.yaml").models
    assert {f"{stage}@{name}" for stage in ("train", "evaluate") for name in models} <= listed
    assert {"prepare@ring", "prepare@grid", "report"} <= listed
