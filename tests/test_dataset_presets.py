"""The dataset presets (presets/mnist, presets/fashion_mnist, presets/cifar10): valid params sized for a
GPU cluster and checked against the real datasets' sizes; one shared dvc.yaml; and the real pipeline,
`dvc exp run` with the README's CPU override plus a shrink, on tiny files written in the official
formats at the paths the README names (gzipped IDX; CIFAR-10's binary batches)."""
from __future__ import annotations

import gzip
import json
import os
import subprocess

import numpy as np
import pytest
import yaml

from genflow import config
from genflow.data.specs import DataFacts

from conftest import REPO, copy_checkout

PRESETS = {"mnist": "mnist", "fashion_mnist": "fashion_mnist", "cifar10": "cifar10"}  # folder -> dataset
# the downloads' own file names (yann.lecun.com/exdb/mnist, zalandoresearch/fashion-mnist, the CIFAR-10
# binary tarball): the tests write these, so a preset that reads another name fails here
IDX_FILES = ("train-images-idx3-ubyte.gz", "train-labels-idx1-ubyte.gz", "t10k-images-idx3-ubyte.gz",
             "t10k-labels-idx1-ubyte.gz")
CIFAR_FILES = (*(f"data_batch_{i}.bin" for i in range(1, 6)), "test_batch.bin")
CIFAR_DIR = "cifar-10-batches-bin"
# the official datasets' rows with the presets' val_fraction 0.1, as the prepare step will cut them
FULL_SIZE = {"mnist": {"train": 54_000, "val": 6_000, "test": 10_000},
             "fashion_mnist": {"train": 54_000, "val": 6_000, "test": 10_000},
             "cifar10": {"train": 45_000, "val": 5_000, "test": 10_000}}
# README.md's smoke run on a machine without a GPU (test_readme_says_how_to_run_on_real_files checks
# the README gives exactly this)
CPU_OVERRIDES = ("ray.use_gpu=false", "ray.num_workers=1")
DVC = REPO / ".venv" / "bin" / "dvc"


def _params(preset: str) -> config.Params:
    return config.load(REPO / "presets" / preset / "params.yaml")


@pytest.mark.parametrize("preset", PRESETS)
def test_each_preset_is_valid_and_sized_for_a_gpu_cluster(preset):
    """`genflow validate` passes; Ray asks for GPUs and data-parallel workers; and every model, with
    its per-worker batch times the workers, fits the real dataset (32x32 after MNIST's pad_to)."""
    proc = subprocess.run([str(REPO / ".venv" / "bin" / "python"), "-m", "genflow.cli", "validate"],
                          cwd=REPO / "presets" / preset, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0 and "params.yaml: ok" in proc.stdout, proc.stderr
    params, dataset = _params(preset), PRESETS[preset]
    assert params.ray.use_gpu and params.ray.num_workers > 1
    assert list(params.data) == [dataset] and params.report.baselines == {dataset: f"dcgan_{dataset}"}
    facts = DataFacts(dataset, "image", (32, 32), 10, FULL_SIZE[dataset])
    assert params.evaluate.check_data(facts) == []
    assert params.evaluate.n_real == FULL_SIZE[dataset]["test"]  # the whole official test split
    families = set()
    for name, spec in params.models.items():
        assert spec.dataset == dataset and len(spec.seeds) >= 2, name
        assert spec.check_data(name, facts, world_size=params.ray.num_workers) == [], name
        families.add(spec.model if spec.model == "vae" else spec.loss)
    assert families == {"ns", "wgan-gp", "vae"}


def test_the_presets_share_one_dvc_yaml_that_lists_the_roots_code_deps():
    """One dvc.yaml for the three (a fix reaches all); each stage depends on at least the genflow
    code the root pipeline's same stage lists, and prepare on the preset's raw files."""
    texts = {preset: (REPO / "presets" / preset / "dvc.yaml").read_text() for preset in PRESETS}
    assert len(set(texts.values())) == 1
    stages = yaml.safe_load(texts["mnist"])["stages"]
    root = yaml.safe_load((REPO / "dvc.yaml").read_text())["stages"]
    for name, spec in stages.items():
        deps = {dep.removeprefix("../../") for dep in (spec.get("do") or spec)["deps"]}
        root_spec = root[name].get("do") or root[name]
        code = {dep for dep in root_spec["deps"] if dep.startswith(("genflow", "stages/"))}
        assert code <= deps, (name, code - deps)
    assert "data/raw/${key}" in stages["prepare"]["do"]["deps"]


def test_fashion_mnist_preset_is_the_mnist_preset_renamed():
    """Fashion-MNIST is MNIST's drop-in replacement: the same models and settings, its own files."""
    def renamed(preset: str) -> dict:
        raw = yaml.safe_load((REPO / "presets" / preset / "params.yaml").read_text())
        text = json.dumps(raw).replace(preset, "DATASET")
        return json.loads(text)

    mnist, fashion = renamed("mnist"), renamed("fashion_mnist")
    assert mnist == fashion  # file paths included: data/raw/DATASET/<the same official names>
    assert {os.path.basename(v) for k, v in mnist["data"]["DATASET"].items() if "images" in k or "labels" in k} \
        == set(IDX_FILES)


def test_each_preset_is_a_dvc_project_of_its_own():
    for preset, dataset in PRESETS.items():
        folder = REPO / "presets" / preset
        assert (folder / ".dvc" / "config").is_file()
        proc = subprocess.run([str(DVC), "stage", "list"], cwd=folder, capture_output=True, text=True, timeout=120)
        assert proc.returncode == 0, proc.stderr
        listed = {line.split()[0] for line in proc.stdout.splitlines() if line.strip()}
        models = _params(preset).models
        assert {f"{stage}@{name}" for stage in ("train", "evaluate", "export") for name in models} <= listed
        assert {f"prepare@{dataset}", f"featurenet@{dataset}", "report"} <= listed


def test_readme_says_how_to_run_on_real_files():
    """Each preset's README names the folder and the exact files it reads, its make target and the
    CPU override the end-to-end test below runs; the Makefile has the targets."""
    for preset, dataset in PRESETS.items():
        readme = (REPO / "presets" / preset / "README.md").read_text()
        files = IDX_FILES if dataset != "cifar10" else (*CIFAR_FILES, CIFAR_DIR)
        for needed in (f"data/raw/{dataset}/", *files, f"make repro-{preset.replace('_', '-')}",
                       " ".join(f"-S {o}" for o in CPU_OVERRIDES)):
            assert needed in readme, (preset, needed)
        dry = subprocess.run(["make", "-n", f"repro-{preset.replace('_', '-')}"], cwd=REPO, capture_output=True,
                             text=True, timeout=60)
        assert dry.returncode == 0 and f"cd presets/{preset} && " in dry.stdout and "dvc repro" in dry.stdout


# -- the real pipeline on tiny files ------------------------------------------------------------------

RNG = np.random.default_rng(30)
N_TRAIN, N_TEST = 120, 16  # val_fraction 0.1 keeps 12 for the val probes; labels cycle through 0..9


def _idx(array: np.ndarray) -> bytes:
    header = bytes([0, 0, 0x08, array.ndim]) + np.asarray(array.shape, dtype=">u4").tobytes()
    return header + np.ascontiguousarray(array, dtype=np.uint8).tobytes()


def write_idx_download(raw) -> dict[str, np.ndarray]:
    """MNIST's four gzipped IDX files (28x28 uint8 images, uint8 labels) as the download names them."""
    raw.mkdir(parents=True)
    arrays = {"train_x": RNG.integers(0, 256, (N_TRAIN, 28, 28)), "train_y": np.arange(N_TRAIN) % 10,
              "test_x": RNG.integers(0, 256, (N_TEST, 28, 28)), "test_y": (np.arange(N_TEST) + 3) % 10}
    for name, key in zip(IDX_FILES, ("train_x", "train_y", "test_x", "test_y")):
        (raw / name).write_bytes(gzip.compress(_idx(arrays[key])))
    return arrays


def write_cifar_download(raw) -> dict[str, np.ndarray]:
    """CIFAR-10's binary batches: per record a label byte, then 1024 red, 1024 green, 1024 blue."""
    folder = raw / CIFAR_DIR
    folder.mkdir(parents=True)
    per_batch = N_TRAIN // 5
    planar = RNG.integers(0, 256, (N_TRAIN + N_TEST, 3, 32, 32), dtype=np.uint8)
    labels = np.concatenate([np.arange(N_TRAIN) % 10, (np.arange(N_TEST) + 3) % 10]).astype(np.uint8)
    for i, name in enumerate(CIFAR_FILES):
        rows = slice(i * per_batch, (i + 1) * per_batch) if i < 5 else slice(N_TRAIN, None)
        (folder / name).write_bytes(np.concatenate([labels[rows, None], planar[rows].reshape(-1, 3072)], 1).tobytes())
    hwc = planar.transpose(0, 2, 3, 1)
    return {"train_x": hwc[:N_TRAIN], "train_y": labels[:N_TRAIN], "test_x": hwc[N_TRAIN:], "test_y": labels[N_TRAIN:]}


def shrink(preset: str) -> list[str]:
    """`-S` overrides that make a preset a seconds-long run: the README's CPU override, then tiny
    networks, budgets and sample counts. Nothing about the data: the preset reads its own paths."""
    keys = [*CPU_OVERRIDES, "featurenet.epochs=1", "featurenet.width=4", "evaluate.n_samples=32",
            "evaluate.n_real=16", "evaluate.kid_subsets=2", "evaluate.kid_subset_size=16",
            "evaluate.path_samples=4", "evaluate.iwae_samples=2", "evaluate.grid_size=2",
            # the linear probes are test_representation's and the end-to-end pipeline test's (the
            # presets' params.yaml do not name the key: `+` adds it)
            "+evaluate.linear_probe=false"]
    for name in _params(preset).models:
        keys += [f"models.{name}.seeds=[0]", f"models.{name}.width=8"]
        keys += [f"models.{name}.train.{key}" for key in ("steps=2", "batch_size=8", "checkpoint_every=2",
                                                            "log_every=1", "eval_every=2", "eval_samples=10")]
    return [arg for key in keys for arg in ("-S", key)]


# What each preset runs, cheapest first that still covers both formats and every kind of network:
# cifar10 whole (all its stages: the conv GANs, the conv VAE, export, report); mnist through one model
# (prepare -> featurenet -> train -> evaluate of its MLP VAE: the IDX reader, pad_to, the 1-channel
# feature network); fashion_mnist up to prepare (the rest of it is mnist's: test_fashion_mnist_...).
TARGETS = {"cifar10": [], "mnist": ["evaluate@vae_mnist"]}


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    """A copy of the checkout (a Git repo: `dvc exp run` needs one) with tiny downloads in place; the
    presets run under one local Ray head, as `make repro-<preset>` runs them."""
    root = tmp_path_factory.mktemp("dataset_presets")
    repo = copy_checkout(root / "repo")
    written = {"mnist": write_idx_download(repo / "presets/mnist/data/raw/mnist"),
               "fashion_mnist": write_idx_download(repo / "presets/fashion_mnist/data/raw/fashion_mnist"),
               "cifar10": write_cifar_download(repo / "presets/cifar10/data/raw/cifar10")}
    env = {**os.environ, "PATH": f"{REPO / '.venv' / 'bin'}{os.pathsep}{os.environ['PATH']}", "HOME": str(root),
           "PYTHONPATH": str(repo), "PYTHONDONTWRITEBYTECODE": "1", "OMP_NUM_THREADS": "1",
           "DVC_NO_ANALYTICS": "1", "RAY_USAGE_STATS_ENABLED": "0"}
    env.pop("RAY_ADDRESS", None)
    for cmd in (["git", "init", "-q"], ["git", "config", "user.name", "genflow tests"],
                ["git", "config", "user.email", "tests@example.invalid"], ["git", "add", "-A"],
                ["git", "commit", "-qm", "presets under test"]):
        subprocess.run(cmd, cwd=repo, check=True, env=env, capture_output=True)
    script = " ; ".join(
        [f"(cd presets/{p} && dvc exp run {' '.join(shrink(p) + targets)} > {root}/{p}.log 2>&1; "
         f"echo $? > {root}/{p}.rc)" for p, targets in TARGETS.items()]
        + [f"(cd presets/fashion_mnist && dvc repro prepare@fashion_mnist > {root}/fashion_mnist.log 2>&1; "
           f"echo $? > {root}/fashion_mnist.rc)"])
    subprocess.run([str(repo / "infra/local/with-ray.sh"), "bash", "-c", script], cwd=repo, env=env,
                   capture_output=True, text=True, timeout=900)
    return {"repo": repo, "root": root, "env": env, "written": written}


def _ran(runs, preset: str) -> str:
    log = (runs["root"] / f"{preset}.log").read_text()
    assert (runs["root"] / f"{preset}.rc").read_text().strip() == "0", log[-5000:]
    return log


def _check_read_back(folder, written: dict, channels: int, pad: int) -> None:
    """The prepared splits hold the written pixels (MNIST: centred in a black 32x32) and labels; the
    official test files are the test split, the training files train + val."""
    from genflow.data.loader import load_split

    manifest = json.loads((folder / "manifest.json").read_text())
    assert manifest["shape"] == [32, 32, channels] and manifest["num_classes"] == 10
    rows = {split: entry["rows"] for split, entry in manifest["splits"].items()}
    assert rows == {"train": N_TRAIN - N_TRAIN // 10, "val": N_TRAIN // 10, "test": N_TEST}
    test = load_split(folder, "test")
    assert tuple(test.x.shape) == (N_TEST, channels, 32, 32)
    inner = test.x.numpy().transpose(0, 2, 3, 1)[:, pad:32 - pad, pad:32 - pad]
    np.testing.assert_array_equal(inner.reshape(written["test_x"].shape), written["test_x"])
    np.testing.assert_array_equal(test.labels.numpy(), written["test_y"])
    seen = np.concatenate([load_split(folder, split).labels.numpy() for split in ("train", "val")])
    assert np.bincount(seen, minlength=10).tolist() == np.bincount(written["train_y"], minlength=10).tolist()


def _check_trained_and_evaluated(folder, name: str, channels: int) -> None:
    meta = json.loads((folder / "models" / name / "seed_0" / "meta.json").read_text())
    assert meta["step"] == 2 and meta["data_shape"] == [channels, 32, 32]
    details = json.loads((folder / "metrics" / f"{name}.details.json").read_text())
    assert details["protocol"]["n_generated"] == 32 and np.isfinite(details["fid"])
    assert (folder / "samples" / f"{name}.png").stat().st_size > 0


@pytest.mark.slow
def test_cifar10_preset_runs_whole_on_tiny_binary_batches(runs):
    log = _ran(runs, "cifar10")
    folder, models = runs["repo"] / "presets" / "cifar10", _params("cifar10").models
    stages = ["prepare@cifar10", "featurenet@cifar10", "report",
              *(f"{stage}@{name}" for stage in ("train", "evaluate", "export") for name in models)]
    for stage in stages:
        assert f"Running stage '{stage}'" in log, stage
    assert "a Ray task per seed" in log and "[ray] attached to the Ray cluster" in log  # one CPU worker, on Ray
    _check_read_back(folder / "data" / "prepared" / "cifar10", runs["written"]["cifar10"], 3, 0)
    assert json.loads((folder / "metrics" / "featurenet" / "cifar10.json").read_text())["feature_dim"] > 0
    report = (folder / "reports" / "comparison.md").read_text()
    for name in models:
        _check_trained_and_evaluated(folder, name, 3)
        assert json.loads((folder / "export" / name / "model_card.json").read_text())["name"] == name
        assert f"| {name} |" in report
    assert (folder / "dvc.lock").is_file()


@pytest.mark.slow
def test_mnist_preset_trains_and_evaluates_on_tiny_idx_files(runs):
    log = _ran(runs, "mnist")
    folder = runs["repo"] / "presets" / "mnist"
    for stage in ("prepare@mnist", "featurenet@mnist", "train@vae_mnist", "evaluate@vae_mnist"):
        assert f"Running stage '{stage}'" in log, stage
    _check_read_back(folder / "data" / "prepared" / "mnist", runs["written"]["mnist"], 1, 2)
    _check_trained_and_evaluated(folder, "vae_mnist", 1)
    assert np.isfinite(json.loads((folder / "metrics" / "vae_mnist.json").read_text())["nll_iwae"])


@pytest.mark.slow
def test_fashion_mnist_prepares_from_its_idx_files(runs):
    _ran(runs, "fashion_mnist")
    folder = runs["repo"] / "presets" / "fashion_mnist" / "data" / "prepared" / "fashion_mnist"
    _check_read_back(folder, runs["written"]["fashion_mnist"], 1, 2)


@pytest.mark.slow
def test_gpu_setting_is_refused_before_training_on_a_machine_without_one(runs):
    """The preset as shipped (use_gpu true, 2 workers) on this CPU machine: the train stage stops
    with exit 2 and the key named, before Ray starts, rather than leaving GPU tasks pending."""
    import torch

    if torch.cuda.is_available():
        pytest.skip("this machine has a GPU")
    _ran(runs, "mnist")
    folder = runs["repo"] / "presets" / "mnist"
    (folder / "params.yaml").write_bytes((REPO / "presets" / "mnist" / "params.yaml").read_bytes())
    proc = subprocess.run(["python", "../../stages/train.py", "--model", "dcgan_mnist", "--out",
                           str(runs["root"] / "gpu_refused"), "--set", "models.dcgan_mnist.train.batch_size=8"],
                          cwd=folder, env=runs["env"], capture_output=True, text=True, timeout=300)
    assert proc.returncode == 2, (proc.stdout[-2000:], proc.stderr[-3000:])
    assert "ray.use_gpu: true, but this machine has no CUDA GPU" in proc.stderr and "Traceback" not in proc.stderr
    assert "[ray]" not in proc.stdout  # refused before a Ray instance was started or attached
    assert not (runs["root"] / "gpu_refused").exists()
