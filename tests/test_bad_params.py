"""Bad params, end to end: each case runs the real train (or sweep) stage command on a broken
params file and must exit 2 with a message naming the key and what is allowed, without a
traceback and before torch or Ray is even imported (so before Ray could start).

How long each case takes is measured by bench/bad_input_latency.py (goal: under 2 s),
not asserted here. docs/reliability.md lists every case.
"""
from __future__ import annotations

import copy
import subprocess

import pytest
import yaml

from conftest import PYTHON, REPO, tiny_params_dict

SWEEP = {"model": "gan_ring8", "dataset": "ring8", "preset": "narrow", "trials": 4, "steps": 60,
         "report_every": 20, "grace_steps": 20, "space": {"width": {"choice": [8, 16]}}}
UNLABELED = {"source": "imagefolder", "path": "data/raw/faces", "labels": "none", "size": 16}
DELETE = object()


def _with(changes: dict[str, object]) -> dict:
    """The tiny params with dotted keys set (or deleted), plus one sweep to break."""
    raw = copy.deepcopy(tiny_params_dict())
    raw["sweeps"] = {"s": copy.deepcopy(SWEEP)}
    for dotted, value in changes.items():
        *parents, last = dotted.split(".")
        node = raw
        for part in parents:
            node = node.setdefault(part, {})
        if value is DELETE:
            del node[last]
        else:
            node[last] = value
    return raw


# (case id, changes, fragments the one-line error must contain: the key, then what is allowed)
CASES = [
    # numbers Ray would accept and then wait on forever (a worker no node can hold)
    ("cpus-per-worker-infinite", {"ray.cpus_per_worker": float("inf")}, ["ray.cpus_per_worker"]),
    ("cpus-per-trial-infinite", {"sweeps.s.cpus_per_trial": float("inf")}, ["sweeps.s.cpus_per_trial"]),
    # unknown keys, at every level
    ("unknown-top-level-key", {"trainer": {}}, ["trainer: unknown key", "allowed keys: data, featurenet, ray"]),
    ("unknown-data-key", {"data.digits.shuffle": True}, ["data.digits.shuffle: unknown key", "val_fraction"]),
    ("unknown-featurenet-key", {"featurenet.depth": 3}, ["featurenet.depth: unknown key", "epochs"]),
    ("unknown-ray-key", {"ray.num_gpus": 1}, ["ray.num_gpus: unknown key", "num_workers"]),
    ("unknown-evaluate-key", {"evaluate.samples": 10}, ["evaluate.samples: unknown key", "n_samples"]),
    ("unknown-model-key", {"models.gan_digits.lr": 1e-3}, ["models.gan_digits.lr: unknown key", "z_dim"]),
    ("unknown-train-key", {"models.gan_digits.train.epochs": 3}, ["models.gan_digits.train.epochs: unknown key",
                                                                  "steps"]),
    ("unknown-sweep-key", {"sweeps.s.budget": 3}, ["sweeps.s.budget: unknown key", "trials"]),
    ("missing-required-section", {"ray": DELETE}, ["ray: required key is missing"]),
    # wrong types
    ("string-for-int", {"models.gan_digits.z_dim": "big"}, ["models.gan_digits.z_dim", "valid integer"]),
    ("float-for-int", {"models.gan_digits.train.steps": 1.5}, ["models.gan_digits.train.steps", "integer"]),
    ("string-for-bool", {"ray.use_gpu": "yes"}, ["ray.use_gpu", "boolean"]),
    ("scalar-for-list", {"models.gan_digits.seeds": 3}, ["models.gan_digits.seeds", "list"]),
    ("list-for-int", {"evaluate.n_samples": [1, 2]}, ["evaluate.n_samples", "integer"]),
    ("mapping-for-section", {"models": ["gan_digits"]}, ["models", "dictionary"]),
    # out-of-range values
    ("negative-learning-rate", {"models.gan_digits.train.lr_g": -1.0}, ["models.gan_digits.train.lr_g",
                                                                       "greater than 0"]),
    ("zero-batch-size", {"models.gan_digits.train.batch_size": 0}, ["models.gan_digits.train.batch_size",
                                                                    "greater than or equal to"]),
    ("fraction-over-one", {"data.digits.val_fraction": 1.5}, ["data.digits.val_fraction", "less than"]),
    ("too-few-eval-samples", {"evaluate.n_samples": 0}, ["evaluate.n_samples", "greater than or equal to 10"]),
    ("negative-beta", {"models.vae_digits.beta": -1.0}, ["models.vae_digits.beta", "greater than"]),
    ("ema-decay-over-one", {"models.gan_digits.train.ema_decay": 1.5}, ["models.gan_digits.train.ema_decay",
                                                                        "less than"]),
    ("negative-workers", {"ray.num_workers": -1}, ["ray.num_workers", "greater than or equal to 0"]),
    ("credentials-in-storage-url", {"ray.storage_path": "s3://AKIAEXAMPLE:s3cr3t-value@bucket/runs"},
     ["ray.storage_path: credentials in a URL", "AWS_SECRET_ACCESS_KEY"]),
    # unknown names
    ("unknown-model-family", {"models.gan_digits.model": "diffusion"},
     ["models.gan_digits.model: unknown model 'diffusion'", "allowed: 'gan'"]),
    ("unknown-dataset-name", {"models.gan_digits.dataset": "imagenet"}, ["models.gan_digits.dataset",
                                                                         "allowed: ['digits', 'ring8']"]),
    ("unknown-data-source", {"data.digits.source": "mnist_online"},
     ["data.digits.source: unknown source 'mnist_online'", "'idx'"]),
    ("unknown-loss", {"models.gan_digits.loss": "wasserstein"}, ["models.gan_digits.loss", "'wgan-gp'"]),
    ("unknown-arch", {"models.gan_digits.arch": "transformer"}, ["models.gan_digits.arch", "'conv'", "'mlp'"]),
    ("unknown-reference-split", {"evaluate.reference_split": "holdout"}, ["evaluate.reference_split", "'test'"]),
    ("unknown-placement-strategy", {"ray.placement_strategy": "spread"}, ["ray.placement_strategy",
                                                                         "'STRICT_SPREAD'"]),
    # bad search spaces
    ("sweep-unknown-space-key", {"sweeps.s.space": {"train.momentum": {"choice": [0.9]}}},
     ["sweeps.s.space.train.momentum: not a key of a gan model"]),
    ("sweep-reversed-range", {"sweeps.s.space": {"train.lr_g": {"loguniform": [1e-2, 1e-4]}}},
     ["sweeps.s.space.train.lr_g", "low must be below high"]),
    ("sweep-value-out-of-range", {"sweeps.s.space": {"train.lr_g": {"loguniform": [1e-4, 5.0]}}},
     ["sweeps.s.space.train.lr_g", "value 5.0 is invalid"]),
    ("sweep-unknown-metric", {"sweeps.s.metric": "inception_score"}, ["sweeps.s.metric", "'fid'"]),
    ("sweep-unknown-model", {"sweeps.s.model": "stylegan"}, ["sweeps.s.model: unknown model 'stylegan'",
                                                            "allowed"]),
    # inconsistent settings
    ("conditional-on-unlabeled-data", {"data.faces": UNLABELED, "models.gan_digits.dataset": "faces",
                                       "models.gan_digits.c_dim": 10},
     ["models.gan_digits.c_dim: dataset 'faces' has no labels", "use c_dim 0"]),
    ("c-dim-not-the-class-count", {"models.gan_digits.c_dim": 7}, ["models.gan_digits.c_dim",
                                                                   "10 classes of dataset 'digits'"]),
    ("conv-on-2d-points", {"models.gan_ring8.arch": "conv"}, ["models.gan_ring8.arch", "only arch 'mlp'"]),
    ("batch-not-multiple-of-pac", {"models.gan_ring8.train.batch_size": 33},
     ["models.gan_ring8.train.batch_size: must be a multiple of pac (2)"]),
    ("holdout-class-out-of-range", {"models.vae_digits.holdout_class": 12}, ["models.vae_digits.holdout_class",
                                                                            "10 classes"]),
    ("report-baseline-on-another-dataset", {"report": {"baselines": {"digits": "gan_ring8"}}},
     ["report.baselines.digits: 'gan_ring8' is not a model trained on 'digits'", "allowed: ['gan_digits'"]),
    ("sweep-dataset-mismatch", {"sweeps.s.dataset": "digits"}, ["sweeps.s.dataset",
                                                                "model 'gan_ring8' trains on 'ring8'"]),
]


def _run(tmp_path, raw_text: str, *args: str) -> subprocess.CompletedProcess:
    path = tmp_path / "params.yaml"
    path.write_text(raw_text)
    cmd = [str(PYTHON), "-X", "importtime", *args, "--params", str(path)]
    return subprocess.run(cmd, cwd=REPO, capture_output=True, text=True, timeout=60)


def _messages(proc: subprocess.CompletedProcess) -> str:
    return "\n".join(line for line in proc.stderr.splitlines() if not line.startswith("import time:"))


def _imported(proc: subprocess.CompletedProcess) -> set[str]:
    return {line.rsplit("|", 1)[-1].strip() for line in proc.stderr.splitlines() if line.startswith("import time:")}


def _assert_rejected_early(proc: subprocess.CompletedProcess, fragments: list[str]) -> None:
    message = _messages(proc)
    assert proc.returncode == 2, (proc.returncode, message)
    for fragment in fragments:
        assert fragment in message, f"{fragment!r} not in:\n{message}"
    assert "s3cr3t-value" not in message  # a rejected secret is not echoed back
    assert "Traceback" not in message
    assert "genflow.config" in _imported(proc)
    assert not {"torch", "ray"} & _imported(proc), "torch or Ray was imported before the params were rejected"


def test_there_are_at_least_25_cases():
    assert len(CASES) >= 25 and len({case_id for case_id, _, _ in CASES}) == len(CASES)


@pytest.mark.parametrize("changes,fragments", [c[1:] for c in CASES], ids=[c[0] for c in CASES])
def test_bad_params_stop_the_train_stage_before_ray(tmp_path, changes, fragments):
    proc = _run(tmp_path, yaml.safe_dump(_with(changes)), "stages/train.py", "--model", "gan_digits")
    _assert_rejected_early(proc, fragments)


@pytest.mark.parametrize("text,fragments", [
    ("models: {gan_digits: {model: gan\n", ["params.yaml", "line"]),           # YAML syntax error
    ("- just\n- a list\n", ["expected a mapping at the top level, got list"]),
], ids=["yaml-syntax-error", "not-a-mapping"])
def test_unparseable_params_file(tmp_path, text, fragments):
    _assert_rejected_early(_run(tmp_path, text, "stages/train.py", "--model", "gan_digits"), fragments)


def test_sweep_stage_and_overrides_are_checked_the_same_way(tmp_path):
    text = yaml.safe_dump(_with({}))
    proc = _run(tmp_path, text, "stages/sweep.py", "--sweep", "s", "--set", "sweeps.s.trials=0")
    _assert_rejected_early(proc, ["sweeps.s.trials", "greater than or equal to 1"])
    proc = _run(tmp_path, text, "stages/train.py", "--model", "gan_digits", "--set", "models.gan_digits.train.lr=1")
    _assert_rejected_early(proc, ["models.gan_digits.train.lr: unknown key"])


def test_what_only_the_prepared_data_tells_is_checked_before_ray(tmp_path):
    """A Parquet file's kind (points) is known once prepared: the train stage still stops before Ray."""
    import numpy as np
    import pyarrow as pa
    import pyarrow.parquet as pq

    from genflow.data.prepare import prepare
    from genflow.data.specs import ParquetData

    points = np.random.default_rng(0).normal(size=(60, 2)).astype(np.float32)
    column = pa.FixedSizeListArray.from_arrays(pa.array(points.reshape(-1), type=pa.float32()), 2)
    pq.write_table(pa.table({"x": column}), tmp_path / "points.parquet")
    entry = {"source": "parquet", "path": str(tmp_path / "points.parquet")}
    prepare(ParquetData(**entry), tmp_path / "data" / "prepared" / "pts", log=lambda *_: None)
    text = yaml.safe_dump(_with({"data.pts": entry, "models.gan_digits.dataset": "pts", "ray.num_workers": 1}))
    proc = _run(tmp_path, text, "stages/train.py", "--model", "gan_digits",
                "--data-root", str(tmp_path / "data" / "prepared"))
    message = _messages(proc)
    assert proc.returncode == 2, message
    assert "models.gan_digits.arch: dataset 'pts' holds 2-D points; only arch 'mlp' fits it" in message
    assert "ray" not in _imported(proc) and "Traceback" not in message


def test_images_a_conv_net_cannot_take_are_named_not_a_traceback(tmp_path):
    """6x6 IDX images: the featurenet stage and a conv model's train stage say why, naming the file / key."""
    import subprocess as sp

    import numpy as np

    from genflow.data.prepare import prepare
    from genflow.data.specs import IdxData

    images = tmp_path / "images-idx3-ubyte"
    x = np.random.default_rng(0).integers(0, 256, size=(40, 6, 6), dtype=np.uint8)
    images.write_bytes(bytes([0, 0, 8, 3]) + b"".join(d.to_bytes(4, "big") for d in x.shape) + x.tobytes())
    entry = {"source": "idx", "images": str(images)}
    prepare(IdxData(**entry), tmp_path / "data" / "prepared" / "tiny6", log=lambda *_: None)
    text = yaml.safe_dump(_with({"data.tiny6": entry, "models.gan_digits.dataset": "tiny6"}))
    (tmp_path / "params.yaml").write_text(text)
    root = ["--params", str(tmp_path / "params.yaml"), "--data-root", str(tmp_path / "data" / "prepared")]
    proc = sp.run([str(PYTHON), "stages/featurenet.py", "--dataset", "tiny6", "--out", str(tmp_path / "fn"), *root],
                  cwd=REPO, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 2 and "Traceback" not in proc.stderr, proc.stderr
    assert "tiny6/manifest.json: 6x6 images" in proc.stderr
    proc = sp.run([str(PYTHON), "stages/train.py", "--model", "gan_digits", *root], cwd=REPO, capture_output=True,
                  text=True, timeout=120)
    assert proc.returncode == 2 and "models.gan_digits.arch: dataset 'tiny6' has 6x6 images" in proc.stderr
