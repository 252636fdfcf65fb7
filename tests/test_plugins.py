"""Model families as plugins: the example package (examples/genflow-plugin-example) installed for
real (``pip install --target`` into a temporary folder put on PYTHONPATH: its entry point is found
by importlib.metadata, as for any installed package; the shared venv is left untouched), then
listed, validated, refused when misused, and trained through ``dvc repro``."""
from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from conftest import REPO
from test_pipeline_dvc import Pipeline, git_checkout

EXAMPLE = REPO / "examples" / "genflow-plugin-example"
PLUGIN_PARAMS = {
    "data": {"ring8": {"source": "ring8", "seed": 0, "n_samples": 2000, "std": 0.05}},
    "featurenet": {"epochs": 1, "batch_size": 128, "lr": 0.001, "width": 4, "seed": 0},
    "ray": {"num_workers": 0, "use_gpu": False, "cpus_per_worker": 1.0, "threads_per_worker": 1,
            "address": None, "storage_path": "STORAGE", "max_failures": 0},
    "evaluate": {"n_samples": 200, "n_real": 200, "reference_split": "test", "seed": 0, "grid_size": 4},
    "models": {"tinygan_ring8": {"model": "tinygan", "dataset": "ring8", "z_dim": 2, "width": 16, "depth": 2,
                                 "loss": "hinge", "train": {"steps": 20, "batch_size": 32, "log_every": 5,
                                                            "checkpoint_every": 10, "ema_decay": 0.0}}},
    "sweeps": {},  # dvc.yaml's sweep stage iterates over it
}


@pytest.fixture(scope="module")
def plugin_site(tmp_path_factory) -> Path:
    """The example package installed into a folder of its own (built from a copy, so that no build
    files land in the repository)."""
    root = tmp_path_factory.mktemp("plugin")
    source = shutil.copytree(EXAMPLE, root / "src")
    proc = subprocess.run([sys.executable, "-m", "pip", "install", "--quiet", "--no-deps", "--no-index",
                           "--no-build-isolation", "--target", str(root / "site"), str(source)],
                          capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert (root / "site" / "genflow_plugin_example-0.1.0.dist-info" / "entry_points.txt").exists()
    return root / "site"


def genflow(*args: str, path: list[Path], cwd: Path | None = None) -> subprocess.CompletedProcess:
    """``genflow ...`` in a fresh process whose import path is this checkout plus ``path``."""
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(map(str, [REPO, *path])), "PYTHONDONTWRITEBYTECODE": "1"}
    return subprocess.run([sys.executable, "-m", "genflow.cli", *args], capture_output=True, text=True,
                          env=env, cwd=cwd or REPO, timeout=120)


def write_params(tmp_path: Path, models: dict) -> Path:
    path = tmp_path / "params.yaml"
    path.write_text(json.dumps({**PLUGIN_PARAMS, "models": models}))  # JSON is YAML
    return path


def test_models_lists_the_installed_plugin_family(plugin_site):
    with_plugin = genflow("models", path=[plugin_site])
    assert with_plugin.returncode == 0, with_plugin.stderr
    assert "tinygan" in with_plugin.stdout.split() and "gan" in with_plugin.stdout.split()
    assert "tinygan" not in genflow("models", path=[]).stdout.split()
    described = genflow("describe", "tinygan", path=[plugin_site])
    assert "plugin 'tinygan'" in described.stdout and "genflow-plugin-example 0.1.0" in described.stdout
    assert "loss = 'lsgan'  [one of lsgan, hinge]" in described.stdout


def test_plugin_spec_is_typed_and_strict(plugin_site, tmp_path):
    good = write_params(tmp_path, PLUGIN_PARAMS["models"])
    assert genflow("validate", "--params", str(good), path=[plugin_site]).returncode == 0
    entry = PLUGIN_PARAMS["models"]["tinygan_ring8"]
    bad = write_params(tmp_path, {"t": {**entry, "bogus": 1, "loss": "wgan", "c_dim": 3}})
    proc = genflow("validate", "--params", str(bad), path=[plugin_site])
    assert proc.returncode == 2 and "Traceback" not in proc.stderr
    assert "models.t.bogus: unknown key; allowed keys: " in proc.stderr and "models.t.loss: " in proc.stderr
    # the family's own check runs too, once its keys are valid
    proc = genflow("validate", "--params", str(write_params(tmp_path, {"t": {**entry, "c_dim": 3}})),
                   path=[plugin_site])
    assert proc.returncode == 2 and "models.t.c_dim: tinygan is unconditional" in proc.stderr


def test_unknown_family_names_the_installed_plugins(plugin_site, tmp_path):
    params = write_params(tmp_path, {"t": {**PLUGIN_PARAMS["models"]["tinygan_ring8"], "model": "tinygann"}})
    proc = genflow("validate", "--params", str(params), path=[plugin_site])
    assert proc.returncode == 2 and "Traceback" not in proc.stderr
    assert "models.t.model: unknown model 'tinygann'" in proc.stderr
    assert "installed model plugins: tinygan (genflow-plugin-example 0.1.0)" in proc.stderr
    proc = genflow("validate", "--params", str(params), path=[])  # without the plugin: says there is none
    assert proc.returncode == 2 and "no model plugins installed" in proc.stderr and "'tinygan'" not in proc.stderr


def fake_plugin(site: Path, name: str, target: str, module: str = "") -> Path:
    """An installed distribution ``broken-plugin`` declaring ``name = target`` (and ``module``'s
    source as broken_plugin.py), as pip would leave it."""
    info = site / "broken_plugin-1.0.dist-info"
    info.mkdir(parents=True)
    (info / "METADATA").write_text("Metadata-Version: 2.1\nName: broken-plugin\nVersion: 1.0\n")
    (info / "entry_points.txt").write_text(f"[genflow.models]\n{name} = {target}\n")
    (site / "broken_plugin.py").write_text(module)
    return site


@pytest.mark.parametrize("name,target,module,says", [
    ("oops", "broken_plugin:Spec", "raise ImportError('needs torchvision')",
     "plugin 'oops' (broken_plugin:Spec, from broken-plugin 1.0; entry point group genflow.models) cannot be "
     "loaded: ImportError: needs torchvision; fix or uninstall broken-plugin 1.0"),
    ("oops", "broken_plugin:Spec", "Spec = dict", "not a subclass of genflow.models.specs.NetworkSpec"),
    ("oops", "broken_plugin:Spec", "from typing import Literal\nfrom genflow.models.specs import NetworkSpec\n"
     "class Spec(NetworkSpec):\n    model: Literal['other']\n", "must declare the field model: Literal['oops']"),
    ("gan", "broken_plugin:Spec", "", "'gan' is a built-in family of genflow"),
])
def test_a_broken_plugin_is_named_without_a_traceback(tmp_path, name, target, module, says):
    site = fake_plugin(tmp_path / "site", name, target, module)
    params = write_params(tmp_path, PLUGIN_PARAMS["models"])
    proc = genflow("validate", "--params", str(params), path=[site])
    assert proc.returncode == 2 and "Traceback" not in proc.stderr
    assert says in proc.stderr and "broken-plugin 1.0" in proc.stderr


@pytest.mark.slow
def test_plugin_family_trains_through_dvc_repro(plugin_site, tmp_path):
    """The plugin's family through the real pipeline: prepare, train (genflow's engine driving the
    plugin's phases), evaluate and export, with the plugin found by the stages' own processes."""
    p = Pipeline(tmp_path)
    git_checkout(p.repo)
    p.env["PYTHONPATH"] = os.pathsep.join([str(p.repo), str(plugin_site)])
    params = json.loads(json.dumps(PLUGIN_PARAMS))
    params["ray"]["storage_path"] = str(tmp_path / "ray_storage")
    p.write_params(params)
    proc = p.dvc("repro", "export@tinygan_ring8", timeout=600)
    assert proc.returncode == 0, proc.output[-5000:]
    for stage in ("prepare@ring8", "train@tinygan_ring8", "evaluate@tinygan_ring8", "export@tinygan_ring8"):
        assert f"Running stage '{stage}'" in proc.output, stage
    run = p.repo / "models" / "tinygan_ring8" / "seed_0"
    meta = json.loads((run / "meta.json").read_text())
    assert meta["model"] == "tinygan" and meta["step"] == 20
    # the plugin's code is no DVC dependency: the run says which package trained it
    assert meta["plugin"] == {"family": "tinygan", "package": "genflow-plugin-example 0.1.0",
                              "target": "genflow_plugin_example.spec:TinyGanSpec"}
    log = (run / "train_log.csv").read_text().splitlines()
    assert {"step", "D_loss", "G_loss"} <= set(log[0].split(",")) and len(log) == 1 + 20 // 5
    card = json.loads((p.repo / "export" / "tinygan_ring8" / "model_card.json").read_text())
    assert card["model"] == "tinygan" and (p.repo / "export" / "tinygan_ring8" / "generator.onnx").exists()
    assert "modes" in json.loads((p.repo / "metrics" / "tinygan_ring8.json").read_text())
    assert "Running stage" not in p.dvc("repro", "export@tinygan_ring8").output  # and it is up to date
