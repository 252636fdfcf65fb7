"""Data augmentation (issue 29): CAS and the augmentation gain against cases with known answers,
their place in the evaluate protocol, and `genflow augment` writing a dataset prepare accepts."""
from __future__ import annotations

import json

import numpy as np
import pyarrow.parquet as pq
import pytest
import torch

from genflow import cli, config
from genflow.config import FeatureNetSpec
from genflow.data.loader import load_split
from genflow.data.prepare import prepare
from genflow.data.shards import read_manifest
from genflow.evaluate.augmentation import SUBSET_FRACTION, Augmentation, stratified_subset
from genflow.evaluate.protocol import evaluate_model
from genflow.export.write import export_model
from genflow.metrics import catalog
from genflow.report.build import build_report
from genflow.train import worker as training
from genflow.train.worker_config import worker_config

from conftest import quiet, tiny_params_dict

pytestmark = pytest.mark.filterwarnings("ignore:`torch.jit:DeprecationWarning")

CLASSIFIER = FeatureNetSpec(epochs=1, batch_size=128, lr=1e-2, width=8, seed=0)


@pytest.fixture(scope="module")
def protocol(prepared_dir) -> Augmentation:
    return Augmentation(prepared_dir / "digits", CLASSIFIER, epochs=4, seed=0)


def real_rows(split, rows=None):
    """Rows of a split as a generator would give them: floats in [-1, 1], and their labels."""
    return split.batch(torch.arange(len(split)) if rows is None else rows)


def test_a_perfect_generator_scores_the_cas_floor_exactly(protocol):
    x, labels = real_rows(protocol.train)  # the real train split fed through the CAS code path
    assert protocol.cas(x, labels) == protocol.floors()["cas_floor"]
    assert protocol.floors()["cas_floor"] > 0.8  # the classifier learns digits at these settings


def test_the_left_out_real_rows_gain_exactly_the_floor(protocol):
    x, _ = real_rows(protocol.train, protocol.left_out)
    floor = protocol.floors()["augmentation_gain_floor"]
    assert protocol.gain(x) == floor
    assert floor == protocol.real_accuracy - protocol.subset_accuracy and floor > 0  # 10 % of digits is worse


def test_samples_with_the_wrong_labels_score_far_below_chance(protocol):
    x, labels = real_rows(protocol.train)
    # every digit labelled as the next one: the classifier learns a consistent wrong mapping
    assert protocol.cas(x, (labels + 1) % 10) < 0.05


def test_the_subset_is_a_seeded_tenth_of_every_class(protocol):
    labels = protocol.train.labels
    subset = stratified_subset(labels, SUBSET_FRACTION, seed=0)
    assert torch.equal(subset, protocol.subset) and torch.equal(subset, subset.sort().values)
    for k in range(10):
        assert (labels[subset] == k).sum() == max(1, round(SUBSET_FRACTION * (labels == k).sum().item()))
    assert not torch.equal(subset, stratified_subset(labels, SUBSET_FRACTION, seed=1))
    assert len(protocol.left_out) + len(subset) == len(labels)
    assert not set(protocol.left_out.tolist()) & set(subset.tolist())


@pytest.fixture(scope="module")
def cgan(prepared_dir, tmp_path_factory):
    """A tiny conditional GAN (two seeds), trained in-process, and its export."""
    root = tmp_path_factory.mktemp("augment")
    raw = tiny_params_dict()
    raw["models"] = {"cgan_digits": {**raw["models"]["gan_digits"], "c_dim": 10, "seeds": [0, 1]}}
    raw["models"]["cgan_digits"]["train"].update(steps=10, log_every=5, checkpoint_every=10)
    params = config.validate(raw)
    for seed in (0, 1):
        training.train_in_process(worker_config("cgan_digits", params, prepared_dir, seed),
                                  root / "models" / "cgan_digits" / f"seed_{seed}", root / "work")
    export_model(root / "models" / "cgan_digits", root / "export" / "cgan_digits", data_dir=prepared_dir / "digits",
                 log=quiet)
    return params, root


def _evaluate(params, root, prepared_dir, features_dir, name="cgan_digits"):
    out = root / "metrics" / f"{name}.json"
    evaluate_model(root / "models" / name, prepared_dir / "digits", features_dir / "digits", params.evaluate, out,
                   root / "samples" / f"{name}.png", log=quiet)
    return json.loads(out.read_text()), json.loads(catalog.details_path(out).read_text())


@pytest.fixture(scope="module")
def evaluated(cgan, prepared_dir, features_dir):
    params, root = cgan
    return _evaluate(params, root, prepared_dir, features_dir)


def test_evaluate_measures_conditional_models_per_seed_with_floors(cgan, evaluated, prepared_dir, features_dir):
    params, _ = cgan
    head, details = evaluated
    for seed in ("0", "1"):
        assert 0 <= details["per_seed"][seed]["cas"] <= 1 and -1 <= details["per_seed"][seed]["augmentation_gain"] <= 1
    assert details["cas"] == pytest.approx(np.mean([details["per_seed"][s]["cas"] for s in ("0", "1")]), abs=1e-6)
    assert "cas_std" in details and 0 < details["cas_floor"] <= 1 and "augmentation_gain_floor" in details
    # CAS is a headline number (the DVC metrics file); the gain stays in the details and the report
    assert {"cas", "cas_std", "cas_floor"} <= set(head) and "augmentation_gain" not in head
    used = details["protocol"]["augmentation"]
    featurenet = json.loads((features_dir / "digits" / "featurenet.json").read_text())["spec"]
    assert used["settings"] == {**featurenet, "epochs": params.evaluate.augmentation_epochs}
    train_rows = len(load_split(prepared_dir / "digits", "train"))
    assert used["cas_samples"] == train_rows and used["n_subset"] + used["gain_samples"] == train_rows
    assert used["subset_fraction"] == SUBSET_FRACTION and used["threads"] == 1


def test_the_report_shows_cas_and_gain_with_their_floors_and_bars(cgan, evaluated, features_dir):
    params, root = cgan
    text = build_report(params.models, root / "metrics", root / "samples", root / "reports", features_dir,
                        models_dir=root / "models")
    header = next(line for line in text.splitlines() if line.startswith("| model |")).split(" | ")
    row = next(line for line in text.splitlines() if line.startswith("| cgan_digits |")).split(" | ")
    floor = next(line for line in text.splitlines() if line.startswith("| real data (floor) |")).split(" | ")
    _, details = evaluated
    for label, key in (("CAS ↑", "cas"), ("augmentation gain ↑", "augmentation_gain")):
        column = header.index(label)
        assert row[column].startswith(f"{details[key]:.4g} ± ")  # mean ± 95 % CI over the two seeds
        assert floor[column] == f"{details[key + '_floor']:.4g}"
    assert "Ravuri & Vinyals" in text
    assert (root / "reports" / "plots" / "digits-metrics.png").exists()


def test_unconditional_models_and_epochs_0_have_no_augmentation_metrics(cgan, trained_dir, prepared_dir, features_dir,
                                                                       tmp_path):
    params, root = cgan
    out = tmp_path / "gan_digits.json"
    evaluate_model(trained_dir / "gan_digits", prepared_dir / "digits", features_dir / "digits", params.evaluate, out,
                   tmp_path / "gan_digits.png", log=quiet)
    details = json.loads(catalog.details_path(out).read_text())
    assert "cas" not in details and "augmentation" not in details["protocol"]
    off = params.evaluate.model_copy(update={"augmentation_epochs": 0})
    out = tmp_path / "cgan_digits.json"
    evaluate_model(root / "models" / "cgan_digits", prepared_dir / "digits", features_dir / "digits", off, out,
                   tmp_path / "cgan_digits.png", log=quiet)
    assert "cas" not in json.loads(catalog.details_path(out).read_text())


def run(*argv) -> int:
    return cli.main([str(a) for a in argv])


def test_augment_writes_a_dataset_prepare_accepts(cgan, tmp_path, capsys):
    _, root = cgan
    out = tmp_path / "generated.parquet"
    assert run("augment", root / "export" / "cgan_digits", "--per-class", 7, "--out", out, "--seed", 3) == 0
    assert "70 samples" in capsys.readouterr().out
    provenance = json.loads(pq.read_schema(out).metadata[b"genflow.generated_by"])
    assert provenance["model"] == "cgan_digits" and provenance["per_class"] == 7
    raw = tiny_params_dict()
    raw["data"]["generated"] = {"source": "parquet", "path": str(out), "seed": 0, "val_fraction": 0.1,
                                "test_fraction": 0.2}
    spec = config.validate(raw).data["generated"]
    prepare(spec, tmp_path / "prepared", log=quiet)
    manifest = read_manifest(tmp_path / "prepared")
    assert manifest["kind"] == "image" and manifest["shape"] == [8, 8, 1] and manifest["num_classes"] == 10
    labels = torch.cat([load_split(tmp_path / "prepared", split).labels for split in ("train", "val", "test")])
    assert torch.bincount(labels, minlength=10).tolist() == [7] * 10
    # the same images the exported generator draws for those latents, rounded as the card's to_uint8 says
    from genflow.export.exported import ExportedModel

    z = np.random.default_rng(3).standard_normal((70, 8))
    expected = ExportedModel(root / "export" / "cgan_digits").generate(z, np.repeat(np.arange(10), 7))
    pixels = np.frombuffer(b"".join(pq.read_table(out).column("image").to_pylist()), np.uint8).reshape(70, 8, 8, 1)
    assert np.array_equal(pixels.transpose(0, 3, 1, 2), np.clip(np.rint((expected + 1) * 127.5), 0, 255))


@pytest.mark.parametrize("argv,message", [
    (["{gan}", "--per-class", "5", "--out", "{tmp}/a.parquet"], "is unconditional (c_dim 0)"),
    (["{tmp}/no_such_export", "--per-class", "5", "--out", "{tmp}/a.parquet"], "no such export folder"),
    (["{cgan}", "--per-class", "0", "--out", "{tmp}/a.parquet"], "--per-class 0: give at least 1"),
    (["{cgan}", "--per-class", "5", "--out", "{tmp}/a.csv"], "ending in .parquet"),
    (["{cgan}", "--per-class", "5", "--out", "{tmp}/missing/a.parquet"], "does not exist"),
])
def test_bad_input_exits_2_naming_the_problem(argv, message, cgan, trained_dir, prepared_dir, tmp_path, capsys):
    _, root = cgan
    if "{gan}" in argv:
        export_model(trained_dir / "gan_digits", tmp_path / "gan_digits", data_dir=prepared_dir / "digits", log=quiet)
    names = {"gan": tmp_path / "gan_digits", "cgan": root / "export" / "cgan_digits", "tmp": tmp_path}
    assert run("augment", *(a.format(**names) for a in argv)) == 2
    err = capsys.readouterr().err
    assert message in err and "Traceback" not in err
    assert not list(tmp_path.glob("*.parquet"))


def test_augment_has_help(capsys):
    with pytest.raises(SystemExit) as stop:
        run("augment", "--help")
    assert stop.value.code == 0 and "--per-class" in capsys.readouterr().out
