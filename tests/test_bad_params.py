"""Bad params, end to end: each case runs the real train (or sweep) stage command on a broken
params file and must exit 2 with a message naming the key and what is allowed, without a
traceback and before torch or Ray is even imported (so before Ray could start).

How long each case takes is measured by bench/bad_input_latency.py (goal: under 2 s),
not asserted here. docs/reliability.md lists every case.
"""
from __future__ import annotations

import copy
import json
import os
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
    # a bad value is quoted in at most ~200 characters, however long it is
    ("long-bad-value-is-cut", {"models.gan_digits.loss": "x" * 100_000},
     ["models.gan_digits.loss", "'wgan-gp'", "…"]),
    ("long-dataset-name-is-cut", {"models.gan_digits.dataset": "d" * 100_000},
     ["models.gan_digits.dataset: unknown dataset 'ddd", "…", "allowed: ['digits', 'ring8']"]),
    ("long-list-for-int", {"models.gan_digits.z_dim": list(range(20_000))}, ["models.gan_digits.z_dim", "integer",
                                                                             "..."]),
    ("long-override-of-seeds", {"models.gan_digits.seeds": [1] * 1000}, ["models.gan_digits.seeds", "repeated: [1]"]),
    # every problem at once: fields refused, and the checks across entries on what did validate
    ("several-kinds-at-once", {"models.gan_digits.train.lr_g": -1.0, "models.gan_digits.c_dim": 7,
                               "models.vae_digits.holdout_class": 12, "report": {"baselines": {"digits": "gan_ring8"}},
                               "sweeps.s.space": {"train.batch_size": {"uniform": [16, 64]}},
                               "evaluate.n_samples": 5, "featurenet.seed": -1},
     ["models.gan_digits.train.lr_g: Input should be greater than 0", "models.gan_digits.c_dim: a conditional model",
      "models.vae_digits.holdout_class: dataset 'digits' has 10 classes", "report.baselines.digits: 'gan_ring8'",
      "sweeps.s.space.train.batch_size: uniform proposes real numbers", "evaluate.n_samples", "featurenet.seed"]),
    ("bad-field-and-cross-check-in-one-model", {"models.gan_ring8.train.lr_g": -1.0,
                                                "models.gan_ring8.train.batch_size": 33},
     ["models.gan_ring8.train.lr_g", "models.gan_ring8.train.batch_size: must be a multiple of pac (2)"]),
    ("bad-field-and-entry-check-in-one-model", {"models.vae_digits.train.lr": -1.0, "models.vae_digits.c_dim": 10,
                                                "models.vae_digits.holdout_class": 3},
     ["models.vae_digits.train.lr", "models.vae_digits.holdout_class: anomaly detection needs an unconditional"]),
    ("bad-model-and-bad-sweep-of-another", {"models.gan_digits.z_dim": 0,
                                            "sweeps.s.space": {"arch": {"choice": ["mlp", "conv"]}}},
     ["models.gan_digits.z_dim", "sweeps.s.space.arch: value 'conv'"]),
    ("bad-data-and-bad-model", {"data.digits.val_fraction": 0.9, "models.gan_ring8.arch": "conv"},
     ["data.digits.val_fraction", "models.gan_ring8.arch: dataset 'ring8' holds 2-D points"]),
    # what would fail only at run time: the data's size, nearest neighbours, seeds, sizes
    ("batch-larger-than-the-train-split", {"models.gan_ring8.train.batch_size": 2000},
     ["models.gan_ring8.train.batch_size: dataset 'ring8' has 1600 training rows", "at most 1600"]),
    ("batch-times-workers-larger-than-the-train-split",
     {"ray.num_workers": 8, "models.gan_digits.train.batch_size": 256},
     ["models.gan_digits.train.batch_size: dataset 'digits' has 1258 training rows", "256 x 8 workers",
      "at most 157"]),
    ("k-not-below-the-samples", {"evaluate.n_samples": 50, "evaluate.k_density_coverage": 50},
     ["evaluate.k_density_coverage", "evaluate.n_samples gives 50, so k must be below 50"]),
    ("k-not-below-the-reference-rows", {"data.ring8.n_samples": 200, "evaluate.k_precision_recall": 30},
     ["evaluate.k_precision_recall", "the 'test' split of dataset 'ring8' gives 20"]),
    ("empty-reference-split", {"evaluate.reference_split": "val", "data.digits.val_fraction": 0.0},
     ["evaluate.reference_split: dataset 'digits' has no 'val' rows"]),
    ("negative-data-seed", {"data.digits.seed": -1}, ["data.digits.seed", "greater than or equal to 0"]),
    ("huge-featurenet-seed", {"featurenet.seed": 2**32}, ["featurenet.seed", "less than or equal to 2147483647"]),
    ("negative-evaluate-seed", {"evaluate.seed": -3}, ["evaluate.seed", "greater than or equal to 0"]),
    ("huge-model-seed", {"models.gan_digits.seeds": [0, 2**63]}, ["models.gan_digits.seeds.1",
                                                                  "less than or equal to 2147483647"]),
    ("huge-sweep-seed", {"sweeps.s.seed": 2**40}, ["sweeps.s.seed", "less than or equal to 2147483647"]),
    ("generated-data-too-large", {"data.big": {"source": "sprites", "n_samples": 10_000_000, "resolution": 64,
                                               "color": True}},
     ["data.big.n_samples: 10,000,000 images of 64x64x3 are 114 GiB", "at most 349,525"]),
    ("kid-subset-too-large", {"evaluate.kid_subset_size": 100_000}, ["evaluate.kid_subset_size",
                                                                     "less than or equal to 10000"]),
    ("huge-checkpoint-interval", {"models.gan_digits.train.checkpoint_every": 10**20},
     ["models.gan_digits.train.checkpoint_every", "less than or equal to 100000000"]),
    ("huge-sweep-steps", {"sweeps.s.steps": 10**12}, ["sweeps.s.steps", "less than or equal to 100000000"]),
    ("huge-holdout-class", {"models.vae_digits.holdout_class": 10**30}, ["models.vae_digits.holdout_class",
                                                                         "less than or equal to 100000"]),
    ("negative-parquet-shape", {"data.pq": {"source": "parquet", "path": "x.parquet", "shape": [-8, 8, 1]}},
     ["data.pq.shape.0", "greater than or equal to 1"]),
    ("nan-learning-rate", {"models.gan_digits.train.lr_g": float("nan")}, ["models.gan_digits.train.lr_g",
                                                                           "(got nan)"]),
    # search spaces, each dimension tried on the model it sweeps (and its data) before Ray
    ("sweep-uniform-on-an-integer-key", {"sweeps.s.space": {"train.batch_size": {"uniform": [16, 64]}}},
     ["sweeps.s.space.train.batch_size: uniform proposes real numbers", "{int: [16, 64]}"]),
    ("sweep-loguniform-on-an-integer-key", {"sweeps.s.space": {"width": {"loguniform": [8, 64]}}},
     ["sweeps.s.space.width: loguniform proposes real numbers", "takes integers"]),
    ("sweep-uniform-on-a-choice-key", {"sweeps.s.model": "gan_digits", "sweeps.s.dataset": "digits",
                                       "sweeps.s.space": {"pac": {"uniform": [1, 4]}}},
     ["sweeps.s.space.pac: uniform proposes real numbers"]),
    ("sweep-batch-choice-pac-does-not-divide", {"sweeps.s.space": {"train.batch_size": {"choice": [32, 33]}}},
     ["sweeps.s.space.train.batch_size: value 33", "multiple of pac (2)"]),
    ("sweep-pac-choice-does-not-divide-the-batch", {"sweeps.s.space": {"pac": {"choice": [2, 3]}}},
     ["sweeps.s.space.pac: value 3", "multiple of pac (3)"]),
    ("sweep-int-range-of-batches-with-pac", {"sweeps.s.space": {"train.batch_size": {"int": [16, 64]}}},
     ["sweeps.s.space.train.batch_size: value 17", "multiple of pac (2)"]),
    ("sweep-pac-and-batch-clash-together", {"sweeps.s.space": {"pac": {"choice": [1, 4]},
                                                               "train.batch_size": {"choice": [32, 34]}}},
     ["sweeps.s.space.pac: value 4 with train.batch_size = 34", "multiple of pac (4)"]),
    ("sweep-c-dim-not-the-class-count", {"sweeps.s.model": "gan_digits", "sweeps.s.dataset": "digits",
                                         "sweeps.s.space": {"c_dim": {"choice": [0, 7]}}},
     ["sweeps.s.space.c_dim: value 7", "10 classes of dataset 'digits'"]),
    ("sweep-conv-on-2d-points", {"sweeps.s.space": {"arch": {"choice": ["mlp", "conv"]}}},
     ["sweeps.s.space.arch: value 'conv'", "only arch 'mlp'"]),
    ("sweep-batch-larger-than-the-data", {"sweeps.s.space": {"train.batch_size": {"choice": [32, 4096]}}},
     ["sweeps.s.space.train.batch_size: value 4096", "1600 training rows"]),
    ("sweep-holdout-class-with-pac", {"sweeps.s.model": "gan_digits", "sweeps.s.dataset": "digits",
                                      "sweeps.s.space": {"holdout_class": {"choice": [1]}, "pac": {"choice": [1, 2]}}},
     ["sweeps.s.space.holdout_class: value 1 with pac = 2", "single images"]),
    ("sweep-mixture-metric-on-images", {"sweeps.s.model": "gan_digits", "sweeps.s.dataset": "digits",
                                        "sweeps.s.metric": "modes"},
     ["sweeps.s.metric: 'modes' needs a Gaussian-mixture dataset"]),
    ("sweep-without-validation-rows", {"data.ring8.val_fraction": 0.0},
     ["sweeps.s.dataset: dataset 'ring8' has 0 validation rows"]),
    ("sweep-searches-what-the-sweep-sets", {"sweeps.s.space": {"train.checkpoint_every": {"choice": [5, 10]}}},
     ["sweeps.s.space.train.checkpoint_every: cannot be searched", "report_every"]),
]


# Cases a params mapping cannot express: the file's own text (duplicate keys, aliases, encoding),
# what --params / --set / --best-params are given, and what only the prepared data tells. Each
# builds its files in a folder and returns the stage command's arguments (the script first,
# relative to the repository); bench/bad_input_latency.py times them too.
def _text(extra: dict[str, str] | None = None, changes: dict | None = None) -> str:
    """The tiny params as YAML, each section followed by ``extra[section]`` (raw YAML lines: the
    last key of a section is its last line, so an appended line can repeat a key)."""
    raw, extra = _with(changes or {}), extra or {}
    return "".join(yaml.safe_dump({key: value}, sort_keys=False) + extra.get(key, "") for key, value in raw.items())


def _train(text: str | bytes, *more: str, stage: str = "train", target: str = "gan_digits"):
    """Build: write ``text`` as the params file; the stage command on it, with ``more`` args."""
    def build(folder) -> list[str]:
        path = folder / "params.yaml"
        path.write_bytes(text if isinstance(text, bytes) else text.encode())
        option = "--sweep" if stage == "sweep" else "--model"
        return [f"stages/{stage}.py", option, target, "--params", str(path), *more]
    return build


def _given(make_path) -> object:
    """Build: --params is what ``make_path(folder)`` makes (a folder, a pipe...)."""
    def build(folder) -> list[str]:
        return ["stages/train.py", "--model", "gan_digits", "--params", str(make_path(folder))]
    return build


def _best_params(text: str):
    """Build: valid params, and a --best-params file holding ``text``."""
    def build(folder) -> list[str]:
        (folder / "best.yaml").write_text(text)
        return [*_train(_text())(folder), "--best-params", str(folder / "best.yaml")]
    return build


def _prepared(stage: str, target: str, changes: dict, rows: dict[str, int]):
    """Build: params whose model ``gan_ring8`` trains on a Parquet dataset 'pts' (its size known only
    once prepared) and that dataset's manifest, as prepare writes it, with ``rows`` per split."""
    def build(folder) -> list[str]:
        manifest = {"format_version": 1, "kind": "points", "shape": [2], "num_classes": 0,
                    "splits": {split: {"rows": n, "shards": []} for split, n in rows.items()}}
        (folder / "prepared" / "pts").mkdir(parents=True, exist_ok=True)
        (folder / "prepared" / "pts" / "manifest.json").write_text(json.dumps(manifest))
        entry = {"source": "parquet", "path": str(folder / "pts.parquet")}
        text = _text(changes={"data.pts": entry, "models.gan_ring8.dataset": "pts", "sweeps.s.dataset": "pts",
                              **changes})
        return [*_train(text, stage=stage, target=target)(folder), "--data-root", str(folder / "prepared")]
    return build


def _fifo(folder):
    os.mkfifo(folder / "pipe.yaml")
    return folder / "pipe.yaml"


ALIAS_BOMB = "a: &a [x, x, x, x, x, x, x, x, x, x]\n" + "".join(
    f"{c}: &{c} [{', '.join(['*' + p] * 10)}]\n" for p, c in zip("abcdefgh", "bcdefghi"))  # 10**9 values
INLINE_BOMB = "{" + ALIAS_BOMB.strip().replace("\n", ", ") + "}"
UTF16 = _text().encode("utf-16")

FILE_CASES = [
    # duplicate keys, at any depth: YAML itself would keep the last one silently
    ("duplicate-model-name", _train(_text({"models": "  gan_digits: {model: vae, dataset: digits}\n"})),
     ["params.yaml: line", "models.gan_digits: duplicate key (first at line"]),
    ("duplicate-key-inside-train", _train(_text({"models": "      steps: 99\n"})),
     ["models.gan_ring8.train.steps: duplicate key"]),
    ("duplicate-top-level-section", _train(_text({"sweeps": "evaluate: {n_samples: 100}\n"})),
     ["evaluate: duplicate key"]),
    ("duplicate-dataset-name", _train(_text({"data": "  ring8: {source: ring8}\n"})), ["data.ring8: duplicate key"]),
    ("duplicate-sweep-space-key", _train(_text({"sweeps": "      width: {choice: [32]}\n"})),
     ["sweeps.s.space.width: duplicate key"]),
    ("duplicate-key-in-a-set-value", _train(_text(), "--set", "models.gan_digits.train={steps: 1, steps: 2}"),
     ["override 'models.gan_digits.train=", "models.gan_digits.train.steps: duplicate key"]),
    ("duplicate-key-in-best-params", _best_params("model: gan_digits\noverrides: {z_dim: 8, z_dim: 16}\n"),
     ["best.yaml: line 2: overrides.z_dim: duplicate key"]),
    # YAML that would expand, nest or recurse without end
    ("alias-bomb", _train(_text() + ALIAS_BOMB), ["params.yaml: f: more than 1,000,000 values", "alias bomb"]),
    ("alias-bomb-in-a-set-value", _train(_text(), "--set", f"models.gan_digits.z_dim={INLINE_BOMB}"),
     ["models.gan_digits.z_dim.", "more than 1,000,000 values"]),
    ("alias-bomb-in-best-params", _best_params(f"model: gan_digits\noverrides: {INLINE_BOMB}\n"),
     ["best.yaml: overrides: more than 1,000,000 values"]),
    ("recursive-alias", _train(_text() + "loop: &loop [1, *loop]\n"), ["loop.1: refers to itself"]),
    ("nested-too-deeply", _train(_text() + "deep: " + "[" * 5000 + "]" * 5000 + "\n"), ["nested too deeply"]),
    ("integer-of-5000-digits", _train(_text() + "big: 1" + "0" * 5000 + "\n"), ["a value cannot be read",
                                                                                "4300 digits"]),
    # files that are not UTF-8 YAML, and --params given what is not a file
    ("latin-1-params-file", _train(b"# caf\xe9\n" + _text().encode()),
     ["params.yaml: not UTF-8 text: byte 0xe9 at offset 5 (line 1)"]),
    ("utf-16-params-file", _train(UTF16), ["params.yaml: not UTF-8 text: byte 0xff at offset 0 (line 1)"]),
    ("params-is-a-directory", _given(lambda folder: folder), ["is a directory; give a params file"]),
    ("params-is-a-pipe", _given(_fifo), ["pipe.yaml: not a regular file"]),
    ("params-file-missing", _given(lambda folder: folder / "nope.yaml"), ["nope.yaml: file not found"]),
    ("params-file-of-2-mib", _train(_text() + "# padding\n" * 200_000), ["params.yaml: 2,", "at most 1,048,576 bytes"]),
    ("best-params-is-a-directory", lambda folder: [*_best_params("")(folder)[:-1], str(folder)],
     ["is a directory"]),
    # the sweep stage: its space is checked before Ray, not in failed trials
    ("sweep-stage-uniform-on-an-integer-key",
     _train(_text(changes={"sweeps.s.space": {"z_dim": {"uniform": [2, 8]}}}), stage="sweep", target="s"),
     ["sweeps.s.space.z_dim: uniform proposes real numbers"]),
    ("sweep-stage-pac-does-not-divide-the-batch",
     _train(_text(changes={"sweeps.s.space": {"train.batch_size": {"choice": [32, 50]}, "pac": {"choice": [2, 4]}}}),
            stage="sweep", target="s"),
     ["sweeps.s.space.pac: value 4 with train.batch_size = 50"]),
    ("sweep-stage-conv-on-2d-points",
     _train(_text(changes={"sweeps.s.space": {"arch": {"choice": ["conv"]}}}), stage="sweep", target="s"),
     ["sweeps.s.space.arch: value 'conv'", "only arch 'mlp'"]),
    # what only the prepared data tells (here a Parquet dataset): checked before torch or Ray
    ("batch-larger-than-the-prepared-train-split", _prepared("train", "gan_ring8", {}, {"train": 20, "test": 5}),
     ["params do not fit the prepared data", "models.gan_ring8.train.batch_size: dataset 'pts' has 20 training rows"]),
    ("sweep-batch-larger-than-the-prepared-train-split",
     _prepared("sweep", "s", {"sweeps.s.space": {"train.batch_size": {"choice": [16, 64]}}},
               {"train": 40, "val": 10, "test": 10}),
     ["sweeps.s.space.train.batch_size: value 64", "dataset 'pts' has 40 training rows"]),
    ("evaluate-k-above-the-prepared-reference-rows", _prepared("evaluate", "gan_ring8", {}, {"train": 100, "test": 4}),
     ["evaluate.k_density_coverage", "the 'test' split of dataset 'pts' gives 4"]),
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
    assert max(map(len, message.splitlines()), default=0) <= 1000, "a value was quoted at length"
    assert "Traceback" not in message
    assert "genflow.config" in _imported(proc)
    assert not {"torch", "ray"} & _imported(proc), "torch or Ray was imported before the params were rejected"


@pytest.mark.parametrize("build,fragments", [c[1:] for c in FILE_CASES], ids=[c[0] for c in FILE_CASES])
def test_bad_params_files_and_arguments_stop_the_stage_before_ray(tmp_path, build, fragments):
    script, *args = build(tmp_path)
    proc = subprocess.run([str(PYTHON), "-X", "importtime", str(REPO / script), *args], cwd=REPO, capture_output=True,
                          text=True, timeout=60)
    _assert_rejected_early(proc, fragments)


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


def test_the_prepared_rows_are_checked_before_ray(tmp_path):
    """A real prepared manifest (60 Parquet points: 42 train, 12 test): a batch the train split
    cannot fill stops the train stage, and a k the test split cannot hold the evaluate stage."""
    import numpy as np
    import pyarrow as pa
    import pyarrow.parquet as pq

    from genflow.data.prepare import prepare
    from genflow.data.specs import ParquetData

    points = np.random.default_rng(0).normal(size=(60, 2)).astype(np.float32)
    column = pa.FixedSizeListArray.from_arrays(pa.array(points.reshape(-1), type=pa.float32()), 2)
    pq.write_table(pa.table({"x": column}), tmp_path / "points.parquet")
    entry = {"source": "parquet", "path": str(tmp_path / "points.parquet")}
    manifest = prepare(ParquetData(**entry), tmp_path / "prepared" / "pts", log=lambda *_: None)
    assert {split: manifest["splits"][split]["rows"] for split in ("train", "test")} == {"train": 42, "test": 12}
    changes = {"data.pts": entry, "models.gan_ring8.dataset": "pts", "models.gan_ring8.train.batch_size": 64,
               "evaluate.k_density_coverage": 12, "sweeps": {}}
    root = ["--data-root", str(tmp_path / "prepared")]
    proc = _run(tmp_path, yaml.safe_dump(_with(changes)), "stages/train.py", "--model", "gan_ring8", *root)
    _assert_rejected_early(proc, ["models.gan_ring8.train.batch_size: dataset 'pts' has 42 training rows, fewer "
                                  "than one batch of 64"])
    proc = _run(tmp_path, yaml.safe_dump(_with(changes)), "stages/evaluate.py", "--model", "gan_ring8", *root)
    _assert_rejected_early(proc, ["evaluate.k_density_coverage", "the 'test' split of dataset 'pts' gives 12, so k "
                                  "must be below 12 (got 12)"])
