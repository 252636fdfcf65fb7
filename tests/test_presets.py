"""The systems preset (presets/systems): a valid params file, a DVC pipeline that matches it,
and a DVC project of its own so the root pipeline never runs or reports it."""
from __future__ import annotations

import subprocess

import yaml

from genflow import config
from genflow.models import registry

from conftest import PYTHON, REPO

PRESET = REPO / "presets" / "systems"


def _stages() -> dict:
    return yaml.safe_load((PRESET / "dvc.yaml").read_text())["stages"]


def test_preset_params_are_valid():
    proc = subprocess.run([str(PYTHON), "-m", "genflow.cli", "validate"], cwd=PRESET, capture_output=True,
                          text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    assert "params.yaml: ok" in proc.stdout


def test_evaluate_lists_match_the_models_by_task():
    """dvc.yaml's two evaluate lists (generators write an interpolation picture, the others do
    not) hold every model of the preset's params.yaml once, with its dataset."""
    params = config.load(PRESET / "params.yaml")
    stages = _stages()
    generators, others = stages["evaluate-generator"]["foreach"], stages["evaluate-task"]["foreach"]
    assert not set(generators) & set(others)
    assert {**generators, **others} == {name: spec.dataset for name, spec in params.models.items()}
    for name in generators:
        assert registry.model_class(params.models[name].model).task == "generate", name
    for name in others:
        assert registry.model_class(params.models[name].model).task != "generate", name


def test_preset_covers_the_three_systems_and_their_baselines():
    params = config.load(PRESET / "params.yaml")
    families = {spec.model for spec in params.models.values()}
    assert {"stylegan", "cyclegan", "srgan", "gan"} <= families
    for dataset in ("sprites", "stacked"):  # StyleGAN next to the DCGAN baseline on both datasets
        on_it = {spec.model for spec in params.models.values() if spec.dataset == dataset}
        assert {"stylegan", "gan"} <= on_it, dataset
        assert params.models[params.report.baselines[dataset]].model == "gan"
    assert all(len(spec.seeds) >= 2 for spec in params.models.values())  # CIs need two


def test_preset_is_its_own_dvc_project():
    """`dvc status` at the root lists only the root pipeline's stages: the preset is a subrepo."""
    assert (PRESET / ".dvc" / "config").is_file()
    proc = subprocess.run([str(REPO / ".venv" / "bin" / "dvc"), "status", "--json"], cwd=REPO,
                          capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr
    assert "presets/systems" not in proc.stdout
