"""``train.init_from``: model B starts from model A's trained weights (its checkpoint or its export),
with fresh optimizers; a source of another architecture exits 2 naming the key and the parameter."""
from __future__ import annotations

import json

import pytest
import torch

from conftest import quiet, tiny_params_dict
from genflow import config
from genflow.cli import main
from genflow.train import checkpoint
from genflow.train.worker import build_engine
from genflow.train.worker_config import worker_config


def params_with_b(source: str, base: str = "gan_digits", **changes) -> config.Params:
    """The tiny params plus model ``b``: model ``base``'s entry starting from ``source``."""
    raw = tiny_params_dict()
    entry = json.loads(json.dumps(raw["models"][base]))
    entry["train"].update(init_from=source, lr_g=1e-3) if "lr_g" in entry["train"] else entry["train"].update(
        init_from=source)
    raw["models"]["b"] = {**entry, **changes}
    return config.validate(raw)


def assert_same_weights(got: dict[str, torch.Tensor], want: dict[str, torch.Tensor]) -> None:
    assert set(got) == set(want) and len(got) > 4
    different = [key for key in got if not torch.equal(got[key], want[key])]
    assert different == []


@pytest.mark.parametrize("base", ["gan_digits", "vae_digits"])
def test_b_starts_from_a_checkpoint(trained_dir, prepared_dir, base):
    a_state, _, _ = checkpoint.load(trained_dir / base / "seed_0")
    params = params_with_b(str(trained_dir / base / "seed_0"), base)
    engine, _ = build_engine(worker_config("b", params, prepared_dir))
    assert_same_weights(engine.model.state_dict(), a_state["model"])  # G, D or E, and G's EMA
    assert engine.step == 0 and all(not opt.state for opt in engine.optimizers)  # fresh optimizers
    # without init_from, the same seed starts elsewhere: the equality above is the source's doing
    fresh, _ = build_engine(worker_config(base, params, prepared_dir))
    key = "G_ema.fc.0.weight" if base == "gan_digits" else "E.head.weight"
    assert not torch.equal(fresh.model.state_dict()[key], a_state["model"][key])


def test_b_starts_from_a_model_folder_and_an_export(trained_dir, prepared_dir, tmp_path):
    from genflow.export.write import export_model

    a_state, _, _ = checkpoint.load(trained_dir / "gan_digits" / "seed_0")
    export_model(trained_dir / "gan_digits", tmp_path / "export", data_dir=prepared_dir / "digits", log=quiet)
    for source in (trained_dir / "gan_digits", tmp_path / "export"):  # models/<a> = its first seed
        engine, _ = build_engine(worker_config("b", params_with_b(str(source)), prepared_dir))
        assert_same_weights(engine.model.state_dict(), a_state["model"])


def test_init_is_recorded_and_names_the_run(trained_dir, prepared_dir, tmp_path):
    """Training B records the source's path and content hash in its checkpoint's metadata; the run
    name changes with the source's content, so a changed source never resumes a stale run."""
    from genflow.launch import train

    source = trained_dir / "gan_ring8" / "seed_0"
    raw = tiny_params_dict()
    raw["ray"]["storage_path"] = str(tmp_path / "work")
    entry = raw["models"]["gan_ring8"]
    raw["models"]["b"] = {**entry, "train": {**entry["train"], "steps": 10, "init_from": str(source)}}
    params = config.validate(raw)
    train("b", params, prepared_dir, tmp_path / "models" / "b")
    meta = json.loads((tmp_path / "models" / "b" / "seed_0" / checkpoint.META_FILE).read_text())
    assert meta["init_from"]["path"] == str(source) and meta["init_from"]["kind"] == "checkpoint"
    assert meta["init_from"]["sha256"] == checkpoint.sha256_file(source / checkpoint.STATE_FILE)
    plain = dict(raw, models={**raw["models"], "b": {**entry, "train": {**entry["train"], "steps": 10}}})
    assert worker_config("b", params, prepared_dir).fingerprint != \
        worker_config("b", config.validate(plain), prepared_dir).fingerprint


def write(tmp_path, params: config.Params):
    path = tmp_path / "params.yaml"
    path.write_text(json.dumps(params.model_dump(mode="json")))
    return path


@pytest.mark.parametrize("changes,says", [
    ({"width": 16}, "parameter G.fc.0.weight is [128, 8] there and [256, 8] here"),
    ({"z_dim": 4}, "parameter G.fc.0.weight is [128, 8] there and [128, 4] here"),
])
def test_another_architecture_exits_2_naming_init_from(trained_dir, prepared_dir, tmp_path, capsys, changes, says):
    params = params_with_b(str(trained_dir / "gan_digits" / "seed_0"), **changes)
    argv = ["train", "--model", "b", "--params", str(write(tmp_path, params)), "--data-root", str(prepared_dir),
            "--out", str(tmp_path / "out")]
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert "models.b.train.init_from: " in err and "does not fit model 'b'" in err and "Traceback" not in err
    assert says in err
    assert not (tmp_path / "out").exists()


@pytest.mark.parametrize("source,says", [
    ("nowhere", "nowhere is not a folder"),
    (".", "holds neither an export"),
])
def test_a_missing_source_exits_2_naming_init_from(prepared_dir, tmp_path, capsys, source, says):
    params = params_with_b(str(tmp_path / source))
    argv = ["train", "--model", "b", "--params", str(write(tmp_path, params)), "--data-root", str(prepared_dir)]
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert "models.b.train.init_from: " in err and says in err


@pytest.mark.slow
def test_init_from_is_a_dvc_dependency_of_the_train_stage(tmp_path):
    """dvc.yaml's train@b depends on b's init_from (a's output): dvc repro trains a first, a change
    of a retrains b, and a params.yaml whose init_from dvc.yaml does not track yet is refused."""
    from test_pipeline_dvc import Pipeline, git_checkout

    p = Pipeline(tmp_path)
    git_checkout(p.repo)
    raw = {key: value for key, value in tiny_params_dict().items() if key != "models"}
    raw["data"] = {"ring8": raw["data"]["ring8"]}
    raw["ray"] = {**raw["ray"], "storage_path": str(tmp_path / "ray_storage")}
    a = {**tiny_params_dict()["models"]["gan_ring8"]}
    a["train"] = {**a["train"], "steps": 10, "checkpoint_every": 10}
    raw.update(sweeps={}, models={"a": a, "b": {**a, "train": {**a["train"], "init_from": "models/a"}}})
    p.write_params(raw)
    first = p.dvc("repro", "train@b")
    assert first.returncode == 0, first.output[-5000:]
    assert first.output.index("Running stage 'train@a'") < first.output.index("Running stage 'train@b'")
    meta = json.loads((p.repo / "models" / "b" / "seed_0" / checkpoint.META_FILE).read_text())
    assert meta["init_from"]["path"] == str((p.repo / "models" / "a").resolve())
    assert "Running stage" not in p.dvc("repro", "train@b").output

    raw["models"]["a"]["train"]["steps"] = 12  # a changes: b, which starts from it, retrains
    p.write_params(raw)
    again = p.dvc("repro", "train@b")
    assert "Running stage 'train@a'" in again.output and "Running stage 'train@b'" in again.output, again.output

    raw["models"]["b"]["train"]["init_from"] = "models/a/seed_0"  # as `dvc exp run -S` would: dvc.yaml not updated
    (p.repo / "params.yaml").write_text(json.dumps(raw))
    stale = p.dvc("repro", "train@b")
    assert stale.returncode != 0 and "models.b.train.init_from: params.yaml says models/a/seed_0" in stale.output
    assert "run python stages/dvc_yaml_blocks.py" in stale.output
