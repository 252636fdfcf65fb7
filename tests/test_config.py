"""params.yaml validation: every mistake is a ConfigError naming its dotted key path."""
from __future__ import annotations

import json
import re
import subprocess
from pathlib import Path

import pytest
import yaml

from conftest import PYTHON, REPO, tiny_params_dict
from genflow import config
from genflow.errors import ConfigError


def _set(raw: dict, dotted: str, value) -> dict:
    node = raw
    *parents, last = dotted.split(".")
    for part in parents:
        node = node.setdefault(part, {})
    node[last] = value
    return raw


def test_tiny_params_are_valid(params):
    assert set(params.models) == {"gan_digits", "vae_digits", "gan_ring8"}
    assert params.models["gan_ring8"].pac == 2
    assert params.models["vae_digits"].train.lr == pytest.approx(1e-3)
    assert params.data["ring8"].n_samples == 2000


def test_repo_params_yaml_is_valid():
    raw = config.read_yaml(REPO / "params.yaml")
    params = config.load(REPO / "params.yaml")
    assert set(params.models) == set(raw["models"]) and params.models
    assert set(params.data) == set(raw["data"])
    for name, spec in params.models.items():
        assert spec.dataset in params.data
        for key, value in raw["models"][name]["train"].items():
            assert getattr(spec.train, key) == value  # what DVC reads is what genflow trains with


BAD_VALUES = [
    # (dotted path to set, value, dotted path the message must name)
    ("bogus", 1, "bogus"),
    ("ray.bogus", 1, "ray.bogus"),
    ("data.ring8.bogus", 1, "data.ring8.bogus"),
    ("models.gan_digits.bogus", 1, "models.gan_digits.bogus"),
    ("models.gan_digits.train.bogus", 1, "models.gan_digits.train.bogus"),
    ("models.vae_digits.train.lr_g", 1e-3, "models.vae_digits.train.lr_g"),  # a GAN key on a VAE
    ("models.gan_digits.train.steps", "ten", "models.gan_digits.train.steps"),
    ("models.gan_digits.train.steps", 1.5, "models.gan_digits.train.steps"),
    ("models.gan_digits.train.lr_g", -1, "models.gan_digits.train.lr_g"),
    ("models.vae_digits.train.lr", -0.001, "models.vae_digits.train.lr"),
    ("models.gan_digits.loss", "l1", "models.gan_digits.loss"),
    ("models.gan_digits.dataset", "mnist", "models.gan_digits.dataset"),
    ("models.gan_ring8.arch", "conv", "models.gan_ring8.arch"),
    ("models.gan_digits.c_dim", 3, "models.gan_digits.c_dim"),
    ("ray.num_workers", -1, "ray.num_workers"),
    ("evaluate.reference_split", "holdout", "evaluate.reference_split"),
]


@pytest.mark.parametrize("key,value,path", BAD_VALUES, ids=[f"{k}={v!r}" for k, v, _ in BAD_VALUES])
def test_invalid_value_names_key_path(key, value, path):
    raw = _set(tiny_params_dict(), key, value)
    with pytest.raises(ConfigError) as info:
        config.validate(raw)
    assert re.search(rf"(^|\s){re.escape(path)}:", str(info.value)), str(info.value)


def test_unknown_key_lists_allowed_keys():
    raw = _set(tiny_params_dict(), "models.gan_digits.train.stepz", 10)
    with pytest.raises(ConfigError, match=r"models\.gan_digits\.train\.stepz: unknown key; allowed keys: .*\bsteps\b"):
        config.validate(raw)


def test_unknown_model_family():
    raw = _set(tiny_params_dict(), "models.gan_digits.model", "flow")
    with pytest.raises(ConfigError) as info:
        config.validate(raw)
    message = str(info.value)
    assert "models.gan_digits.model: unknown model 'flow'" in message and "'gan'" in message and "'vae'" in message


def test_every_error_is_reported_at_once():
    raw = tiny_params_dict()
    _set(raw, "models.gan_digits.train.lr_g", -1)
    _set(raw, "models.vae_digits.train.lr", -0.001)
    with pytest.raises(ConfigError) as info:
        config.validate(raw)
    assert "models.gan_digits.train.lr_g:" in str(info.value)
    assert "models.vae_digits.train.lr:" in str(info.value)


def test_batch_size_not_multiple_of_pac_is_rejected():
    raw = _set(tiny_params_dict(), "models.gan_ring8.train.batch_size", 33)
    with pytest.raises(ConfigError) as info:
        config.validate(raw)
    message = str(info.value)
    assert "models.gan_ring8" in message and "train.batch_size" in message and "pac" in message


def test_pac_error_names_full_dotted_path():
    raw = _set(tiny_params_dict(), "models.gan_ring8.train.batch_size", 33)
    with pytest.raises(ConfigError, match=r"models\.gan_ring8\.train\.batch_size"):
        config.validate(raw)


@pytest.mark.parametrize("raw", [
    {"data": {"ring8": {"source": "ring8"}}, "models": [{"m": {"model": "gan"}}]},
    {"data": [{"source": "ring8"}], "models": {}},
    {"data": {"ring8": {"source": "ring8"}}, "models": {"m": {"model": ["gan"], "dataset": "ring8"}}},
], ids=["models-is-a-list", "data-is-a-list", "model-is-a-list"])
def test_wrong_container_type_is_config_error(raw):
    try:
        config.validate(raw)
    except ConfigError:
        return
    except Exception as exc:  # noqa: BLE001
        raise AssertionError(f"{type(exc).__name__}: {exc}") from None
    raise RuntimeError("validate accepted an invalid params mapping")


def test_top_level_must_be_a_mapping():
    with pytest.raises(ConfigError, match="mapping"):
        config.validate(["not", "a", "mapping"])


def test_read_yaml_parses_exponent_floats(tmp_path):
    path = tmp_path / "p.yaml"
    path.write_text("a: 1e-4\nb: 2E3\nc: -1.5e+2\nd: 3\ne: .inf\nf: 0.5\n")
    data = config.read_yaml(path)
    assert data == {"a": 1e-4, "b": 2000.0, "c": -150.0, "d": 3, "e": float("inf"), "f": 0.5}
    assert isinstance(data["a"], float) and isinstance(data["b"], float) and isinstance(data["d"], int)
    # plain PyYAML would read '1e-4' as a string: the loader is what makes lr: 1e-4 valid
    assert yaml.safe_load("a: 1e-4")["a"] == "1e-4"


def test_yaml_exponent_lr_validates(tmp_path):
    raw = tiny_params_dict()
    raw["models"]["gan_digits"]["train"]["lr_g"] = "PLACEHOLDER"
    text = yaml.safe_dump(raw).replace("PLACEHOLDER", "1e-4")
    path = tmp_path / "params.yaml"
    path.write_text(text)
    assert config.load(path).models["gan_digits"].train.lr_g == pytest.approx(1e-4)


@pytest.mark.parametrize("text", [".NaN", ".INF"])
def test_yaml_special_floats(tmp_path, text):
    path = tmp_path / "p.yaml"
    path.write_text(f"x: {text}\n")
    try:
        value = config.read_yaml(path)["x"]
    except ValueError as exc:
        raise AssertionError(f"ValueError: {exc}") from None
    assert value != value or value == float("inf")


def test_read_yaml_errors(tmp_path):
    with pytest.raises(ConfigError, match="file not found"):
        config.read_yaml(tmp_path / "missing.yaml")
    bad = tmp_path / "bad.yaml"
    bad.write_text("a: [1, 2\n")
    with pytest.raises(ConfigError, match="not valid YAML"):
        config.read_yaml(bad)


def test_apply_overrides():
    raw = tiny_params_dict()
    raw = config.apply_overrides(raw, ["models.gan_digits.train.steps=7", "models.gan_digits.train.lr_g=1e-3",
                                 "ray.address=null"])
    params = config.validate(raw)
    assert params.models["gan_digits"].train.steps == 7
    assert params.models["gan_digits"].train.lr_g == pytest.approx(1e-3)
    assert params.ray.address is None


@pytest.mark.parametrize("override", ["models.gan_digits.train.steps", "=5", "models.gan_digits.train.steps.x=1"])
def test_apply_overrides_rejects_bad_strings(override):
    with pytest.raises(ConfigError, match="override"):
        config.apply_overrides(tiny_params_dict(), [override])


def test_apply_overrides_bad_yaml_value():
    try:
        config.apply_overrides(tiny_params_dict(), ["models.gan_digits.train.steps=["])
    except ConfigError:
        return
    except Exception as exc:  # noqa: BLE001
        raise AssertionError(f"{type(exc).__name__}: {exc}") from None
    raise RuntimeError("an unparsable override value was accepted")


def test_fingerprint_is_stable_and_sensitive(params):
    spec = params.models["gan_digits"]
    assert config.fingerprint(spec) == config.fingerprint(spec.model_dump(mode="json"))
    raw = _set(tiny_params_dict(), "models.gan_digits.train.steps", 21)
    assert config.fingerprint(config.validate(raw).models["gan_digits"]) != config.fingerprint(spec)


# -- the stage script rejects bad params fast, before torch or Ray ------------

def _write_params(tmp_path, key: str, value) -> str:
    path = tmp_path / "bad.yaml"
    path.write_text(yaml.safe_dump(_set(tiny_params_dict(), key, value)))
    return str(path)


@pytest.mark.parametrize("key,value", [("models.gan_ring8.train.bogus", 1), ("models.gan_ring8.train.lr_g", -1.0)])
def test_train_stage_rejects_bad_params_fast(tmp_path, key, value):
    bad = _write_params(tmp_path, key, value)
    cmd = [str(PYTHON), "stages/train.py", "--model", "gan_ring8", "--params", bad]
    proc = subprocess.run(cmd, cwd=REPO, capture_output=True, text=True, timeout=60)
    assert proc.returncode != 0
    assert f"{key}:" in proc.stderr
    assert "Traceback" not in proc.stderr
    out = proc.stdout + proc.stderr
    assert "Ray" not in out and "ray.init" not in out  # no Ray start-up lines

    # and neither torch nor ray was imported on the way
    proc = subprocess.run([str(PYTHON), "-X", "importtime", *cmd[1:]], cwd=REPO, capture_output=True,
                          text=True, timeout=60)
    assert proc.returncode != 0
    imported = {line.rsplit("|", 1)[-1].strip() for line in proc.stderr.splitlines() if line.startswith("import time:")}
    assert "genflow.config" in imported
    assert not {"torch", "ray"} & imported


def test_cli_validate_ok_and_unknown_model(tmp_path):
    good = tmp_path / "good.yaml"
    good.write_text(yaml.safe_dump(tiny_params_dict()))
    proc = subprocess.run([str(PYTHON), "-m", "genflow.cli", "validate", "--params", str(good)], cwd=REPO,
                          capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0 and "ok (2 datasets, 3 models)" in proc.stdout
    proc = subprocess.run([str(PYTHON), "stages/train.py", "--model", "nope", "--params", str(good)], cwd=REPO,
                          capture_output=True, text=True, timeout=60)
    assert proc.returncode == 2 and "unknown model 'nope'" in proc.stderr


@pytest.mark.parametrize("section,name", [("models", "vae.digits"), ("data", "ring.8")])
def test_names_that_dvc_cannot_address_are_rejected(section, name):
    raw = tiny_params_dict()
    if section == "models":
        raw["models"][name] = raw["models"].pop("vae_digits")
    else:
        raw["data"][name] = raw["data"].pop("ring8")
        raw["models"]["gan_ring8"]["dataset"] = name
    with pytest.raises(ConfigError, match=re.escape(name)):
        config.validate(raw)


def test_override_changes_only_the_key_it_names_through_yaml_aliases(tmp_path):
    """A user's params may share a block through an anchor; --set (and --best-params) still
    change one model only. genflow's own params files use no aliases, so `dvc exp run -S` works."""
    for path in (REPO / "params.yaml", *sorted(REPO.glob("presets/*/params.yaml"))):
        assert not [e for e in yaml.parse(path.read_text()) if isinstance(e, yaml.AliasEvent)], f"{path}: aliases"
    raw = yaml.safe_load((REPO / "params.yaml").read_text())
    shared = {**raw["models"]["gan_ring8"]["train"]}
    raw["models"]["gan_ring8"]["train"] = raw["models"]["pacgan_ring8"]["train"] = shared  # what *anchor loads as
    out = config.apply_overrides(raw, ["models.gan_ring8.train.batch_size=255"])
    assert out["models"]["gan_ring8"]["train"]["batch_size"] == 255
    assert out["models"]["pacgan_ring8"]["train"]["batch_size"] == shared["batch_size"] != 255


def test_alias_bomb_is_refused_when_expanded(tmp_path):
    bomb = "a: &a [x, x, x, x, x, x, x, x, x, x]\n" + "".join(
        f"{c}: &{c} [{', '.join(['*' + p] * 10)}]\n" for p, c in zip("abcdefg", "bcdefgh"))
    raw = yaml.safe_load(bomb)
    with pytest.raises(ConfigError, match="alias bomb"):
        config.apply_overrides(raw, ["a=1"])


# -- YAML that is silently wrong, and values quoted at length (issue #32) ---------------------

@pytest.mark.parametrize("text,key,line", [
    ("a: 1\nb: 2\na: 3\n", "a", 3),
    ("models:\n  m:\n    train: {steps: 1, lr: 2, steps: 3}\n", "models.m.train.steps", 3),
    ("sweeps:\n  s:\n    space:\n      width: {choice: [1]}\n      width: {int: [1, 2]}\n", "sweeps.s.space.width", 5),
    ("data:\n- {source: x, source: y}\n", "data.0.source", 2),
    ("base: &b {x: 1}\nm: *b\nn: {<<: *b, y: 1, y: 2}\n", "n.y", 3),
], ids=["top-level", "flow-mapping", "sweep-space", "inside-a-list", "beside-a-merge-key"])
def test_duplicate_keys_are_refused_at_any_depth(tmp_path, text, key, line):
    path = tmp_path / "p.yaml"
    path.write_text(text)
    with pytest.raises(ConfigError) as info:
        config.read_yaml(path)
    assert f"{path}: line {line}: {key}: duplicate key" in str(info.value)


def test_merge_keys_and_aliases_are_not_duplicates(tmp_path):
    path = tmp_path / "p.yaml"
    path.write_text("base: &b {x: 1, y: 2}\nm: {<<: *b, y: 3}\nn: *b\n")
    assert config.read_yaml(path) == {"base": {"x": 1, "y": 2}, "m": {"x": 1, "y": 3}, "n": {"x": 1, "y": 2}}


def test_every_duplicate_of_a_file_is_named_in_line_order(tmp_path):
    path = tmp_path / "p.yaml"
    path.write_text("models:\n  m: {model: gan}\n  m:\n    train:\n      steps: 1\n      steps: 2\n")
    message = str(pytest.raises(ConfigError, config.read_yaml, path).value)
    assert message.index("line 3: models.m: duplicate key") < message.index("line 6: models.m.train.steps")


def test_an_alias_bomb_is_refused_fast_with_a_short_message(tmp_path):
    import time

    path = tmp_path / "p.yaml"
    path.write_text("a: &a [x, x, x, x, x, x, x, x, x, x]\n" + "".join(
        f"{c}: &{c} [{', '.join(['*' + p] * 10)}]\n" for p, c in zip("abcdefgh", "bcdefghi")))
    started = time.perf_counter()
    with pytest.raises(ConfigError, match="more than 1,000,000 values") as info:
        config.read_yaml(path)
    assert time.perf_counter() - started < 1.0 and len(str(info.value)) < 300


def test_excerpt_quotes_at_most_200_characters_of_any_value():
    from genflow.errors import excerpt

    bomb = ["x"] * 10
    for _ in range(9):
        bomb = [bomb] * 10  # 10**10 items, shared
    for value in (bomb, "y" * 10**6, 10**5000, {str(i): i for i in range(10**5)}, b"z" * 10**6):
        text = excerpt(value)
        assert len(text) <= 200, text
    assert excerpt("ns") == "'ns'" and excerpt("y" * 1000).endswith("…")


def test_a_bad_value_is_never_quoted_at_length():
    raw = tiny_params_dict()
    raw["models"]["gan_digits"]["z_dim"] = list(range(10**5))
    raw["models"]["gan_digits"]["loss"] = "w" * 10**5
    raw["data"]["digits"]["source"] = "s" * 10**5
    message = str(pytest.raises(ConfigError, config.validate, raw).value)
    assert max(map(len, message.splitlines())) < 400, message


# -- every problem at once --------------------------------------------------------------------

def test_checks_across_entries_run_on_the_entries_that_validate():
    raw = tiny_params_dict()
    _set(raw, "models.gan_digits.width", "wide")                  # a field
    _set(raw, "models.gan_digits.c_dim", 7)                       # ... and the same model against its data
    _set(raw, "models.gan_ring8.train.batch_size", 33)            # another model against its data
    _set(raw, "models.vae_digits.dataset", "faces")               # a reference to nothing
    raw["report"] = {"baselines": {"ring8": "vae_digits"}}        # a report against the models
    raw["sweeps"] = {"s": {"model": "gan_ring8", "dataset": "ring8", "trials": 0,
                           "space": {"train.lr_g": {"uniform": [0.0, 2.0]}}}}
    message = str(pytest.raises(ConfigError, config.validate, raw).value)
    for key in ("models.gan_digits.width:", "models.gan_digits.c_dim: a conditional model",
                "models.gan_ring8.train.batch_size: must be a multiple of pac", "models.vae_digits.dataset: unknown",
                "report.baselines.ring8:", "sweeps.s.trials:"):
        assert key in message, f"{key} not in {message}"


def test_a_default_standing_in_for_a_refused_key_reports_nothing_false():
    """domain_a refused: its default (0) must not be reported as clashing with domain_b 0; a
    refused batch size must not be reported against pac; a sweep of an invalid model waits."""
    raw = tiny_params_dict()
    raw["models"]["cg"] = {"model": "cyclegan", "dataset": "digits", "domain_a": "zero", "domain_b": 0}
    _set(raw, "models.gan_ring8.train.batch_size", "many")
    _set(raw, "models.gan_ring8.pac", 3)
    raw["sweeps"] = {"s": {"model": "gan_ring8", "dataset": "ring8", "space": {"arch": {"choice": ["conv"]}}}}
    lines = str(pytest.raises(ConfigError, config.validate, raw).value).splitlines()[1:]
    assert [line.split(":")[0].strip() for line in lines] == ["models.gan_ring8.train.batch_size",
                                                              "models.cg.domain_a"], lines


# -- what params tell of the data -------------------------------------------------------------

def test_split_rows_known_from_params_match_the_prepared_manifests(prepared_dir):
    from genflow.data.specs import DataFacts

    params = config.validate(tiny_params_dict())
    for name, spec in params.data.items():
        manifest = json.loads((prepared_dir / name / "manifest.json").read_text())
        assert DataFacts.from_params(name, spec).split_rows == {s: v["rows"] for s, v in manifest["splits"].items()}
        assert config.prepared_facts(name, prepared_dir) == DataFacts.from_manifest(name, manifest)


@pytest.mark.parametrize("changes,message", [
    ({"ray.num_workers": 2, "models.gan_ring8.train.batch_size": 1000}, "1000 x 2 workers; at most 800"),
    ({"evaluate.n_samples": 10, "evaluate.k_precision_recall": 10}, "evaluate.k_precision_recall"),
    ({"data.ring8.test_fraction": 0.01, "data.ring8.n_samples": 500, "evaluate.k_density_coverage": 5},
     "the 'test' split of dataset 'ring8' gives 5"),
])
def test_run_time_sizes_are_checked_up_front(changes, message):
    raw = tiny_params_dict()
    for key, value in changes.items():
        _set(raw, key, value)
    assert message in str(pytest.raises(ConfigError, config.validate, raw).value)


def test_a_translation_model_is_not_held_to_the_sampling_metrics():
    raw = tiny_params_dict()
    raw["models"] = {"cg": {"model": "cyclegan", "dataset": "digits"}}
    raw["evaluate"].update(n_real=10, n_samples=10, k_density_coverage=5)
    _set(raw, "data.digits.test_fraction", 0.002)  # 4 test rows: fewer than k, but no PRDC is computed
    config.validate(raw)


# -- an override changes exactly the key it names ---------------------------------------------

ANCHORED = """\
  gan_ring8:
    model: gan
    dataset: ring8
    arch: mlp
    pac: 2
    z_dim: 2
    train: &shared {steps: 20, batch_size: 32, lr_g: 0.0005, lr_d: 0.0005, ema_decay: 0.0}
  pacgan_ring8:
    model: gan
    dataset: ring8
    arch: mlp
    pac: 4
    z_dim: 2
    train: *shared
"""


def _anchored_params(tmp_path) -> Path:
    raw = tiny_params_dict()
    raw["models"] = {}
    text = yaml.safe_dump(raw).replace("models: {}\n", "models:\n" + ANCHORED)
    path = tmp_path / "params.yaml"
    path.write_text(text)
    return path


@pytest.mark.parametrize("how", ["set", "best-params"])
def test_set_and_best_params_change_one_model_through_an_anchor(tmp_path, monkeypatch, how):
    """The train command as the user runs it (launch.train replaced): an override of a block two
    models share through an anchor changes only the model it names."""
    from genflow import cli, launch

    trained = {}
    monkeypatch.setattr(launch, "train", lambda name, params, *rest, **options: trained.update(params=params))
    args = ["train", "--model", "gan_ring8", "--params", str(_anchored_params(tmp_path)),
            "--data-root", str(tmp_path / "none")]
    if how == "set":
        args += ["--set", "models.gan_ring8.train.batch_size=36", "--set", "models.gan_ring8.train.steps=7"]
    else:
        best = tmp_path / "best_params.yaml"
        best.write_text("model: gan_ring8\noverrides: {train.batch_size: 36, train.steps: 7}\n")
        args += ["--best-params", str(best)]
    assert cli.main(args) == 0
    models = trained["params"].models
    assert (models["gan_ring8"].train.batch_size, models["gan_ring8"].train.steps) == (36, 7)
    assert (models["pacgan_ring8"].train.batch_size, models["pacgan_ring8"].train.steps) == (32, 20)


def test_a_params_file_that_cannot_be_read_is_named(tmp_path, monkeypatch):
    """(Permissions do not stop root, who runs the suite here: the read itself is made to fail.)"""
    path = tmp_path / "params.yaml"
    path.write_text("a: 1\n")

    def refuse(self):
        raise PermissionError(13, "Permission denied")

    monkeypatch.setattr(Path, "read_bytes", refuse)
    with pytest.raises(ConfigError, match=r"params\.yaml: cannot be read \(Permission denied\)"):
        config.read_yaml(path)
