"""Security: nothing is unpickled or evaluated from data, params, checkpoints or exports, and
services genflow starts listen on localhost unless configured otherwise (docs/reliability.md).
The secrets check over a whole pipeline run is in test_pipeline_dvc.py."""
from __future__ import annotations

import ast
import json
from pathlib import Path

import pytest
import torch

from genflow import config

from genflow.errors import ConfigError, DataError
from genflow.io import sha256_file, write_json
from genflow.train import checkpoint

from conftest import REPO

SOURCES = sorted([*(REPO / "genflow").rglob("*.py"), *(REPO / "stages").glob("*.py")])


def _calls(tree: ast.AST):
    for node in ast.walk(tree):
        if isinstance(node, ast.Call):
            func = node.func
            name = func.attr if isinstance(func, ast.Attribute) else getattr(func, "id", "")
            owner = getattr(func.value, "id", "") if isinstance(func, ast.Attribute) else ""
            yield node, owner, name


@pytest.mark.parametrize("path", SOURCES, ids=lambda p: str(p.relative_to(REPO)))
def test_no_pickle_eval_or_unsafe_loading_in_the_code(path):
    tree = ast.parse(path.read_text(), str(path))
    for node in ast.walk(tree):
        if isinstance(node, (ast.Import, ast.ImportFrom)):
            names = [a.name for a in node.names] + [getattr(node, "module", None) or ""]
            assert not {"pickle", "dill", "cloudpickle", "marshal", "shelve"} & set(names), f"{path}: imports pickle"
    for node, owner, name in _calls(tree):
        where = f"{path}:{node.lineno}"
        bare = isinstance(node.func, ast.Name)
        assert not (bare and name in ("eval", "exec", "compile", "__import__")), f"{where}: {name}()"
        assert not (owner == "yaml" and name in ("unsafe_load", "full_load", "load_all")), where
        if owner == "torch" and name == "load":
            weights_only = [k for k in node.keywords if k.arg == "weights_only"]
            assert weights_only and getattr(weights_only[0].value, "value", None) is True, \
                f"{where}: torch.load without weights_only=True"
        if owner == "yaml" and name == "load":
            loader = [k for k in node.keywords if k.arg == "Loader"]
            assert loader and getattr(loader[0].value, "id", "") == "_Loader", f"{where}: yaml.load needs _Loader"
        if owner == "np" and name == "load":
            # the default (False) is safe, and so is saying it; anything else may unpickle
            assert all(getattr(k.value, "value", None) is False for k in node.keywords if k.arg == "allow_pickle"), \
                f"{where}: np.load(allow_pickle)"


def test_yaml_tags_that_build_python_objects_are_refused(tmp_path):
    marker = tmp_path / "pwned"
    path = tmp_path / "params.yaml"
    path.write_text(f"data: !!python/object/apply:os.system ['touch {marker}']\n")
    with pytest.raises(ConfigError, match=str(path)):
        config.load(path)
    assert not marker.exists()


def test_a_pickled_object_in_a_checkpoint_is_refused(tmp_path):
    """A checkpoint whose state.pt carries a pickled callable (the classic torch.load exploit) is
    rejected by the weights-only unpickler, even with a matching sha256 in meta.json: a DataError
    naming the file (so a resume skips it for the previous checkpoint), and nothing ran."""
    marker = tmp_path / "pwned"

    class Payload:
        def __reduce__(self):
            return (Path.touch, (marker,))

    state = {"model": {"w": torch.zeros(1)}, "optimizers": [], "step": 1, "rng": {}, "evil": Payload()}
    checkpoint.save(tmp_path, {k: v for k, v in state.items() if k != "evil"}, [], {})
    torch.save(state, tmp_path / "state.pt")  # a forged state file...
    meta = json.loads((tmp_path / "meta.json").read_text())
    write_json(tmp_path / "meta.json", {**meta, "state_sha256": sha256_file(tmp_path / "state.pt")})
    with pytest.raises(DataError, match=r"state\.pt: refused by the weights-only unpickler \(.*Unsupported global"):
        checkpoint.load(tmp_path)  # ...with a matching hash still does not run
    assert not marker.exists()


def test_ray_dashboard_listens_on_localhost_only(ray_session):
    """The conftest's Ray instance is started by genflow's own init_ray (ray.dashboard_host)."""
    from ray._private.worker import global_worker

    url = global_worker.node.address_info["webui_url"]
    assert url.split(":")[0] in ("127.0.0.1", "localhost"), url
    assert config.RaySpec.model_fields["dashboard_host"].default == "127.0.0.1"
    script = (REPO / "infra" / "local" / "with-ray.sh").read_text()
    assert '--dashboard-host="${GENFLOW_RAY_DASHBOARD_HOST:-127.0.0.1}"' in script


def test_no_checkpoint_means_data_error_not_a_crash(tmp_path):
    with pytest.raises(DataError, match="not a genflow checkpoint"):
        checkpoint.load(Path(tmp_path))
