"""The real DVC pipeline on a copy of the repository with a tiny params.yaml.

One `dvc repro` builds everything (train stages on Ray Train, 1 worker); then a second
run must be a no-op, and changing one model's params must rerun only that model's
stages and the report.
"""
from __future__ import annotations

import ast
import json
import os
import shutil
import subprocess
from pathlib import Path

import pytest
import yaml

from conftest import REPO, copy_checkout
from genflow.models.specs import SPEC_BY_MODEL

pytestmark = pytest.mark.slow

MODELS = ("gan_ring8", "vae_digits")
PARAMS = {
    "data": {
        "digits": {"source": "digits", "seed": 0, "val_fraction": 0.1, "test_fraction": 0.2},
        "ring8": {"source": "ring8", "seed": 0, "n_samples": 2000, "std": 0.05},
    },
    "featurenet": {"epochs": 1, "batch_size": 128, "lr": 0.001, "width": 4, "seed": 0},
    # dvc.yaml lists ray.use_gpu / ray.threads_per_worker as stage params: they must be spelled out
    "ray": {"num_workers": 1, "use_gpu": False, "cpus_per_worker": 1.0, "threads_per_worker": 1,
            "address": None, "storage_path": "STORAGE", "max_failures": 0},
    "evaluate": {"n_samples": 200, "n_real": 200, "reference_split": "test", "seed": 0, "grid_size": 4},
    "models": {
        "gan_ring8": {"model": "gan", "dataset": "ring8", "arch": "mlp", "loss": "ns", "z_dim": 2, "width": 16,
                      "depth": 2, "train": {"steps": 10, "batch_size": 32, "lr_g": 0.001, "lr_d": 0.001,
                                            "ema_decay": 0.0, "log_every": 5, "checkpoint_every": 10}},
        "vae_digits": {"model": "vae", "dataset": "digits", "arch": "conv", "z_dim": 4, "width": 8,
                       "train": {"steps": 10, "batch_size": 32, "lr": 0.001, "log_every": 5,
                                 "checkpoint_every": 10}},
    },
    "report": {"baselines": {"ring8": "gan_ring8"}},
    "sweeps": {
        "gan_ring8": {"model": "gan_ring8", "dataset": "ring8", "preset": "narrow", "trials": 2, "steps": 10,
                      "report_every": 5, "grace_steps": 5, "probe_samples": 100, "probe_real": 100,
                      # one trial at a time: which trial reaches an ASHA rung first, and so which is
                      # stopped, would otherwise vary from run to run (docs/sweeps.md, "Reproducibility")
                      "max_concurrent": 1},
    },
}


# credentials a user may have in the environment: none may reach an artifact, a params dump or a log
CANARIES = {"AWS_SECRET_ACCESS_KEY": "canary-aws-5f3b9c", "HF_TOKEN": "canary-hf-81d2aa",
            "GENFLOW_TEST_PASSWORD": "canary-pw-0c47e1"}


class Pipeline:
    def __init__(self, root: Path):
        self.root = root
        self.repo = root / "repo"
        self.env = {
            **os.environ,
            "PATH": f"{REPO / '.venv' / 'bin'}{os.pathsep}{os.environ.get('PATH', '')}",
            "DVC_NO_ANALYTICS": "1",
            "RAY_USAGE_STATS_ENABLED": "0",
            "PYTHONPATH": str(self.repo),  # stages import the copy's genflow, not /work/main's
            # keep __pycache__ out of the `genflow` dependency (see test_bytecode_does_not_invalidate_pipeline)
            "PYTHONDONTWRITEBYTECODE": "1",
            "OMP_NUM_THREADS": "1",
            **CANARIES,
        }
        self.env.pop("RAY_ADDRESS", None)

    def run(self, *args: str, timeout: int = 400, env: dict | None = None) -> subprocess.CompletedProcess:
        return subprocess.run(list(args), cwd=self.repo, env=env or self.env, capture_output=True, text=True,
                              timeout=timeout)

    def dvc(self, *args: str, timeout: int = 400) -> subprocess.CompletedProcess:
        proc = self.run("dvc", *args, timeout=timeout)
        proc.output = proc.stdout + proc.stderr
        return proc

    def write_params(self, params: dict) -> None:
        """params.yaml, and dvc.yaml's blocks generated from it (the train stages' inputs among them)."""
        (self.repo / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))
        proc = self.run("python", "stages/dvc_yaml_blocks.py")
        assert proc.returncode == 0, proc.stdout + proc.stderr


def git_checkout(repo: Path) -> None:
    """The repository's files as they are now (conftest.copy_checkout) in a fresh Git repo ``repo``."""
    copy_checkout(repo)
    assert (repo / ".dvc" / "config").exists() and not (repo / ".venv").exists()
    for cmd in (["git", "init", "-q"], ["git", "config", "user.name", "genflow tests"],
                ["git", "config", "user.email", "tests@example.invalid"]):
        subprocess.run(cmd, cwd=repo, check=True)


@pytest.fixture(scope="module")
def pipeline(tmp_path_factory):
    root = tmp_path_factory.mktemp("pipeline")
    p = Pipeline(root)
    git_checkout(p.repo)
    params = json.loads(json.dumps(PARAMS))
    params["ray"]["storage_path"] = str(root / "ray_storage")
    p.params = params
    p.write_params(params)
    # as `make repro` runs it: one local Ray head for the whole pipeline (infra/local/with-ray.sh),
    # started on an empty HOME, as on a machine that has never run Ray (no ~/.ray/auth_token)
    (root / "home").mkdir()
    p.env["HOME"] = str(root / "home")
    # (the token the head made is copied aside, so test_no_secret_reaches_an_artifact_or_a_log can look for it)
    p.first = p.run(str(p.repo / "infra" / "local" / "with-ray.sh"), "bash", "-c",
                    f'cp "$RAY_AUTH_TOKEN_PATH" {root / "head_token"} && dvc repro')
    p.first.output = p.first.stdout + p.first.stderr
    # what test_forced_rerun_gives_byte_identical_metrics_and_report compares a `dvc repro -f` with (at
    # the same commit: models record the code revision)
    p.first_hashes, p.first_commit = _hashes(p.repo, FORCED_RERUN_OUTPUTS), _head(p)
    return p


def _head(pipeline: Pipeline) -> str:
    """The test repo's commit ('' before the first one)."""
    return pipeline.run("git", "rev-parse", "-q", "--verify", "HEAD").stdout.strip()


def test_repro_builds_everything(pipeline):
    first = pipeline.first
    assert first.returncode == 0, first.output[-5000:]
    assert "[with-ray] local Ray head on 127.0.0.1:" in first.output and "dashboard http://127.0.0.1:" in first.output
    stages = [f"{s}@{d}" for s in ("prepare", "featurenet") for d in ("digits", "ring8")]
    stages += [f"{s}@{m}" for s in ("train", "evaluate", "export") for m in MODELS] + ["report", "sweep@gan_ring8"]
    for stage in stages:
        assert f"Running stage '{stage}'" in first.output, stage
    repo = pipeline.repo
    for model in MODELS:
        metrics = json.loads((repo / "metrics" / f"{model}.details.json").read_text())
        assert {"fid", "fid_floor", "protocol", "per_seed"} <= set(metrics)
        assert (repo / "samples" / f"{model}.png").stat().st_size > 0
        assert (repo / "samples" / f"{model}.interpolation.png").stat().st_size > 0
        assert (repo / "samples" / f"{model}.gallery" / "real_vs_generated.png").stat().st_size > 0
        assert (repo / "export" / model / "generator.torchscript.pt").exists()
        assert (repo / "export" / model / "generator.onnx").exists()
        card = json.loads((repo / "export" / model / "model_card.json").read_text())
        assert card["name"] == model and card["metrics"]["values"]["fid"] == metrics["fid"]
        meta = json.loads((repo / "models" / model / "seed_0" / "meta.json").read_text())
        assert meta["step"] == 10 and meta["world_size"] == 1
    assert "modes" in json.loads((repo / "metrics" / "gan_ring8.json").read_text())
    assert "nll_iwae" in json.loads((repo / "metrics" / "vae_digits.json").read_text())
    assert "elbo" in json.loads((repo / "metrics" / "vae_digits.details.json").read_text())
    report = (repo / "reports" / "comparison.md").read_text()
    assert all(f"| {m} |" in report for m in MODELS)
    html = (repo / "reports" / "comparison.html").read_text()
    assert all(f"<td>{m}</td>" in html for m in MODELS) and "data:image/png;base64," in html
    plots = {p.name for p in (repo / "reports" / "plots").iterdir()}
    assert {"ring8-metrics.png", "ring8-training.png", "sweeps.png"} <= plots
    assert (repo / "dvc.lock").exists()
    trials = (repo / "sweeps" / "gan_ring8" / "trials.parquet")
    assert trials.exists() and (repo / "sweeps" / "gan_ring8" / "best_params.yaml").exists()
    assert_optuna_plots_drawn(repo / "sweeps" / "gan_ring8", html, pipeline.first.output)


# the outputs a forced rerun must reproduce byte for byte
FORCED_RERUN_OUTPUTS = ("metrics/*.json", "reports/comparison.md", "reports/plots/*.png", "samples/*.png",
                        "models/*/seed_*/*", "export/*/*")


def test_forced_rerun_gives_byte_identical_metrics_and_report(pipeline):
    """`dvc repro -f` on the machine and code revision of the first run, as `make repro` runs it
    (one local Ray head): the same metric files, report tables and pictures, checkpoints and
    exports as the first run, byte for byte. (Placed before the tests that commit: the models,
    metrics details and model cards record the commit.)"""
    if _head(pipeline) != pipeline.first_commit:
        raise RuntimeError("precondition: the test repo must be at the commit of the first run")
    assert pipeline.first.returncode == 0, pipeline.first.output[-5000:]
    forced = pipeline.run(str(pipeline.repo / "infra" / "local" / "with-ray.sh"), "dvc", "repro", "-f")
    forced.output = forced.stdout + forced.stderr
    assert forced.returncode == 0, forced.output[-3000:]
    before, after = pipeline.first_hashes, _hashes(pipeline.repo, FORCED_RERUN_OUTPUTS)
    assert len(before) > 20 and before.keys() == after.keys()
    changed = sorted(k for k in before if before[k] != after[k])
    assert not changed, changed


def assert_optuna_plots_drawn(sweep: Path, html: str, output: str) -> None:
    """The sweep stage drew Optuna's plots of its study into sweeps/<name>/optuna/: the rungs
    always; the importances and parameter plots when 2 trials completed (ASHA may stop the
    second of this 2-trial sweep), else their reason is given; the report shows what was drawn."""
    from html import escape as html_escape

    import pyarrow.parquet as pq

    from test_sweep import assert_journal_holds_every_trial

    table = pq.read_table(sweep / "trials.parquet").to_pylist()
    assert_journal_holds_every_trial(sweep, table)
    listing = json.loads((sweep / "optuna" / "plots.json").read_text())
    complete = sum(row["status"] == "complete" for row in table)
    drawn = {d["plot"] for d in listing["drawn"]}
    params = {"param_importances", "parallel_coordinate", "slice", "contour"}
    assert listing["complete"] == complete and drawn == {"intermediate_values"} | (params if complete >= 2 else set())
    assert {s["plot"] for s in listing["skipped"]} == params - drawn
    for plot in listing["drawn"]:
        assert (sweep / "optuna" / plot["file"]).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
        assert html_escape(f"sweep gan_ring8 (Optuna): {plot['shows']}") in html
    logged = next(line for line in output.splitlines() if line.startswith("[sweep gan_ring8] Optuna plots: "))
    assert all(plot in logged for plot in drawn) and all(f"skipped {plot} (" in logged for plot in params - drawn)


IMPORTED = """import json, runpy, sys
sys.argv = sys.argv[1:]
try:
    runpy.run_path(sys.argv[0], run_name="__main__")
except SystemExit as exc:
    assert exc.code in (0, None), exc.code
print(json.dumps(sorted(m.__file__ for n, m in list(sys.modules.items()) if n.startswith("genflow"))))
"""


def _inert(path: Path) -> bool:
    """A package __init__ that only documents (a docstring, maybe __version__): nothing a stage
    writes can depend on it, so no stage needs to list it."""
    body = ast.parse(path.read_text()).body
    return path.name == "__init__.py" and all(
        isinstance(node, ast.Expr) and isinstance(node.value, ast.Constant)
        or isinstance(node, ast.Assign) and [t.id for t in node.targets if isinstance(t, ast.Name)] == ["__version__"]
        for node in body)


@pytest.mark.parametrize("stage,args", [
    ("prepare", ["--dataset", "ring8", "--out", "{tmp}/prepared"]),
    ("featurenet", ["--dataset", "digits", "--out", "{tmp}/featurenet", "--metrics-root", "{tmp}/metrics"]),
    ("report", ["--out", "{tmp}/reports"]),
])
def test_stage_deps_cover_every_genflow_module_it_imports(pipeline, tmp_path, stage, args):
    """dvc.yaml lists packages and a few single modules as each stage's code deps, not all of
    genflow (a model change must not retrain the feature networks): the stage, run for real, imports
    nothing from genflow that its deps leave out, so a change to what it runs always reruns it."""
    argv = [f"stages/{stage}.py", *(a.format(tmp=tmp_path) for a in args)]
    proc = pipeline.run("python", "-c", IMPORTED, *argv)
    assert proc.returncode == 0, (proc.stdout + proc.stderr)[-3000:]
    imported = {str(Path(f).resolve().relative_to(pipeline.repo)) for f in json.loads(proc.stdout.splitlines()[-1])}
    imported = {f for f in imported if not _inert(pipeline.repo / f)}
    spec = yaml.safe_load((pipeline.repo / "dvc.yaml").read_text())["stages"][stage]
    deps = (spec.get("do") or spec)["deps"]
    missed = sorted(f for f in imported if not any(f == d or f.startswith(d.rstrip("/") + "/") for d in deps))
    assert len(imported) > 5 and missed == []


def test_local_head_starts_on_an_empty_home(pipeline):
    """The head made its own token in its temp dir: nothing was read from or left in HOME."""
    assert pipeline.first.returncode == 0, pipeline.first.output[-5000:]
    assert "AuthenticationError" not in pipeline.first.output
    assert not (Path(pipeline.env["HOME"]) / ".ray").exists()


def test_no_secret_reaches_an_artifact_or_a_log(pipeline):
    """Every file the run wrote (outputs, DVC cache, dvc.lock, Ray's storage) and its console output
    are free of the environment's credentials and of Ray's cluster auth token."""
    secrets = set(CANARIES.values())
    for token_file in (Path.home() / ".ray" / "auth_token", pipeline.root / "head_token"):
        if token_file.exists() and token_file.read_text().strip():
            secrets.add(token_file.read_text().strip())
    assert len(secrets) > len(CANARIES)  # the head's own token is among them
    assert not [s for s in secrets if s in pipeline.first.output]
    roots = [pipeline.repo, pipeline.root / "ray_storage"]
    files = [f for root in roots if root.exists() for f in root.rglob("*")
             if f.is_file() and ".git" not in f.relative_to(pipeline.root).parts]
    assert len(files) > 50
    leaks = [(str(f), s) for f in files for s in secrets if s.encode() in f.read_bytes()]
    assert not leaks, leaks


def test_second_run_is_a_noop(pipeline):
    status = pipeline.dvc("status")
    assert status.returncode == 0 and "Data and pipelines are up to date" in status.output, status.output
    again = pipeline.dvc("repro")
    assert again.returncode == 0, again.output[-3000:]
    assert "Running stage" not in again.output


def _leaves(tree) -> list:
    if isinstance(tree, dict):
        return [leaf for value in tree.values() for leaf in _leaves(value)]
    return [tree]


def test_dvc_metrics_are_headline_numbers(pipeline):
    """metrics/<model>.json: flat numbers (mean, std, floor, n_seeds), a few per model; the feature
    networks' accuracy and the sweep's best score are DVC metrics too."""
    shown = pipeline.dvc("metrics", "show", "--json")
    assert shown.returncode == 0, shown.output
    files = next(iter(json.loads(shown.stdout).values()))["data"]
    for model in MODELS:
        values = files[f"metrics/{model}.json"]["data"]
        assert all(isinstance(v, (int, float)) for v in values.values()), values  # flat
        assert 5 <= len(values) <= 25 and values["n_seeds"] == 1 and "fid_floor" in values
    assert 0 <= files["metrics/featurenet/digits.json"]["data"]["test_accuracy"] <= 1
    assert files["metrics/featurenet/ring8.json"]["data"] == {"feature_dim": 2}
    assert {"best_fid", "trials", "complete"} <= set(files["metrics/sweeps/gan_ring8.json"]["data"])
    assert len(_leaves(files)) <= 25 * len(MODELS) + 10


def test_changed_model_params_rerun_only_that_model(pipeline):
    for cmd in (["git", "add", "-A"], ["git", "commit", "-qm", "before changing gan_ring8"]):
        assert pipeline.run(*cmd).returncode == 0
    params = json.loads(json.dumps(pipeline.params))
    params["models"]["gan_ring8"]["train"]["steps"] = 12
    pipeline.write_params(params)
    status = pipeline.dvc("status")
    assert "train@gan_ring8" in status.output and "train@vae_digits" not in status.output
    rerun = pipeline.dvc("repro")
    assert rerun.returncode == 0, rerun.output[-5000:]
    for stage in ("train@gan_ring8", "evaluate@gan_ring8", "export@gan_ring8", "report", "sweep@gan_ring8"):
        assert f"Running stage '{stage}'" in rerun.output, stage
    for stage in ("train@vae_digits", "evaluate@vae_digits", "export@vae_digits", "prepare@ring8",
                  "featurenet@ring8"):
        assert f"Running stage '{stage}'" not in rerun.output, stage
    repo = pipeline.repo
    assert json.loads((repo / "models" / "gan_ring8" / "seed_0" / "meta.json").read_text())["step"] == 12
    assert "| gan_ring8 | gan | 12 | 1 |" in (repo / "reports" / "comparison.md").read_text()
    assert "Data and pipelines are up to date" in pipeline.dvc("status").output
    # `dvc metrics diff` against the commit before the change: only gan_ring8's numbers (and the
    # sweep of gan_ring8, which starts from its params) moved
    diff = pipeline.dvc("metrics", "diff", "--json")
    assert diff.returncode == 0, diff.output
    changed = {path for path, values in json.loads(diff.stdout).items() if values}
    assert changed and changed <= {"metrics/gan_ring8.json", "metrics/sweeps/gan_ring8.json"}, changed


def test_metrics_show_lists_both_models(pipeline):
    shown = pipeline.dvc("metrics", "show")
    assert shown.returncode == 0, shown.output
    for model in MODELS:
        assert f"metrics/{model}.json" in shown.output
    assert "fid" in shown.output and "nll_iwae" in shown.output


# the loss columns each family's training log has: dvc.yaml's plots are generated from these, and
# test_plots_show_renders_training_curves checks them against real logs
FAMILY_LOSSES = {family: list(spec.log_losses) for family, spec in SPEC_BY_MODEL.items()}


def _y_fields(content: dict) -> set[str]:
    """The columns a rendered DVC plot draws: one is named in the y encoding; several become
    datapoints labelled by "field" under an inferred y."""
    y = content["layer"][0]["encoding"]["y"]["field"]
    return {v["field"] for v in content["data"]["values"]} if y == "dvc_inferred_y_value" else {y}


def test_plots_show_renders_training_curves(pipeline):
    """`dvc plots show --json`: every model's training losses against the step (from its first
    seed's train_log.csv), and its samples and latent interpolation."""
    shown = pipeline.dvc("plots", "show", "--json")
    assert shown.returncode == 0, shown.output[-3000:]
    plots = json.loads(shown.stdout)
    for model in MODELS:
        family = pipeline.params["models"][model]["model"]
        source = f"models/{model}/seed_0/train_log.csv"
        assert not [e for e in plots.get("errors") or [] if e.get("source") == source], plots["errors"]
        content = plots["data"][f"training/{model}"][0]["content"]
        assert _y_fields(content) == set(FAMILY_LOSSES[family])
        assert len({v["step"] for v in content["data"]["values"]}) >= 2  # log_every 5 of 10 steps: a curve
        assert {f"samples/{model}.png", f"samples/{model}.interpolation.png",
                f"samples/{model}.gallery/real_vs_generated.png"} <= set(plots["data"])


def test_dvc_yaml_per_model_blocks_are_generated_from_params():
    """stages/dvc_yaml_blocks.py wrote dvc.yaml's plots and artifacts from the params.yaml of this commit."""
    proc = subprocess.run([str(REPO / ".venv" / "bin" / "python"), "stages/dvc_yaml_blocks.py", "--check"], cwd=REPO,
                          capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0, proc.stderr


def test_every_model_of_params_has_a_training_curve_plot():
    """dvc.yaml's training/<model> plots follow params.yaml: the model's first seed, its family's losses."""
    listed = [entry for entry in yaml.safe_load((REPO / "dvc.yaml").read_text())["plots"] if isinstance(entry, dict)]
    plots = {plot_id: props for entry in listed for plot_id, props in entry.items()}
    models = yaml.safe_load((REPO / "params.yaml").read_text())["models"]
    expected = {f"training/{name}": {f"models/{name}/seed_{spec.get('seeds', [0])[0]}/train_log.csv":
                                     FAMILY_LOSSES[spec["model"]]} for name, spec in models.items()}
    assert {plot_id: props["y"] for plot_id, props in plots.items() if plot_id.startswith("training/")} == expected
    # a model probed during training (train.eval_every) draws its val probes beside its losses
    probed = {name for name, spec in models.items() if spec["train"].get("eval_every")}
    assert {plot_id.split("/", 1)[1] for plot_id in plots if plot_id.startswith("probes/")} == probed
    assert set(plots) == set(expected) | {f"probes/{name}" for name in probed}
    assert all(props["x"] == "step" and props["template"] == "linear" for props in plots.values())


def test_bytecode_does_not_invalidate_pipeline(pipeline):
    if "Data and pipelines are up to date" not in pipeline.dvc("status").output:
        raise RuntimeError("precondition: the pipeline must be up to date before this test")
    env = {k: v for k, v in pipeline.env.items() if k != "PYTHONDONTWRITEBYTECODE"}
    try:
        proc = pipeline.run("python", "-c", "import genflow.cli, genflow.evaluate.protocol, genflow.data.loader", env=env)
        if proc.returncode != 0 or not list((pipeline.repo / "genflow").rglob("*.pyc")):
            raise RuntimeError(f"precondition: bytecode was not written: {proc.stderr}")
        status = pipeline.dvc("status")
        assert "Data and pipelines are up to date" in status.output, status.output
    finally:
        for cache in list((pipeline.repo / "genflow").rglob("__pycache__")):
            shutil.rmtree(cache)


def test_dvc_exp_run_sets_a_train_param(pipeline):
    for cmd in (["git", "add", "-A"], ["git", "commit", "-qm", "pipeline under test"]):
        assert pipeline.run(*cmd).returncode == 0
    exp = pipeline.dvc("exp", "run", "-S", "models.gan_ring8.train.steps=14")
    assert exp.returncode == 0, exp.output[-5000:]
    assert "Running stage 'train@gan_ring8'" in exp.output and "Running stage 'train@vae_digits'" not in exp.output
    repo = pipeline.repo
    assert json.loads((repo / "models" / "gan_ring8" / "seed_0" / "meta.json").read_text())["step"] == 14
    shown = pipeline.dvc("exp", "show", "--csv")
    assert shown.returncode == 0 and "14" in shown.output, shown.output


def _write_idx(path: Path, array) -> None:
    """An IDX file (MNIST format) of uint8 values."""
    import numpy as np

    header = bytes([0, 0, 0x08, array.ndim]) + np.asarray(array.shape, dtype=">u4").tobytes()
    path.write_bytes(header + np.ascontiguousarray(array, dtype=np.uint8).tobytes())


def test_dvc_tracked_raw_folder_feeds_prepare(pipeline):
    """The data/raw/README.md recipe: `dvc add` raw IDX files, name them in params, repro prepare."""
    import numpy as np

    repo, raw = pipeline.repo, pipeline.repo / "data" / "raw" / "tinymnist"
    raw.mkdir(parents=True)
    rng = np.random.default_rng(0)
    _write_idx(raw / "images-idx3-ubyte", rng.integers(0, 256, size=(50, 6, 6)))
    _write_idx(raw / "labels-idx1-ubyte", rng.integers(0, 10, size=50))
    added = pipeline.dvc("add", "data/raw/tinymnist")
    assert added.returncode == 0, added.output
    assert (repo / "data" / "raw" / "tinymnist.dvc").exists()
    assert "/tinymnist" in (repo / "data" / "raw" / ".gitignore").read_text()
    params = json.loads(json.dumps(pipeline.params))
    params["data"]["tinymnist"] = {"source": "idx", "images": "data/raw/tinymnist/images-idx3-ubyte",
                                   "labels": "data/raw/tinymnist/labels-idx1-ubyte", "test_fraction": 0.2}
    pipeline.write_params(params)

    first = pipeline.dvc("repro", "prepare@tinymnist")
    assert first.returncode == 0, first.output[-3000:]
    manifest = json.loads((repo / "data" / "prepared" / "tinymnist" / "manifest.json").read_text())
    assert manifest["shape"] == [6, 6, 1] and sum(s["rows"] for s in manifest["splits"].values()) == 50
    assert "Running stage" not in pipeline.dvc("repro", "prepare@tinymnist").output

    # new raw bytes: DVC sees the tracked folder change, and prepare reruns on the new files
    _write_idx(raw / "images-idx3-ubyte", rng.integers(0, 256, size=(80, 6, 6)))
    _write_idx(raw / "labels-idx1-ubyte", rng.integers(0, 10, size=80))
    assert "modified" in pipeline.dvc("status", "data/raw/tinymnist.dvc").output
    assert pipeline.dvc("add", "data/raw/tinymnist").returncode == 0
    again = pipeline.dvc("repro", "prepare@tinymnist")
    assert "Running stage 'prepare@tinymnist'" in again.output, again.output[-3000:]
    manifest = json.loads((repo / "data" / "prepared" / "tinymnist" / "manifest.json").read_text())
    assert sum(s["rows"] for s in manifest["splits"].values()) == 80


def test_every_model_of_params_is_a_dvc_artifact():
    artifacts = yaml.safe_load((REPO / "dvc.yaml").read_text())["artifacts"]
    models = yaml.safe_load((REPO / "params.yaml").read_text())["models"]
    assert {name: entry["path"] for name, entry in artifacts.items()} == {name: f"export/{name}" for name in models}
    assert {entry["type"] for entry in artifacts.values()} == {"model"}


def test_exported_model_is_fetched_with_dvc_artifacts_get(pipeline, tmp_path):
    """The README's flow: push the export to a DVC remote, tag it GTO-style, fetch it elsewhere."""
    from genflow import cli

    remote = pipeline.root / "remote"
    assert pipeline.dvc("remote", "add", "-d", "shared", str(remote)).returncode == 0
    for cmd in (["git", "add", "-A"], ["git", "commit", "-qm", "export gan_ring8"]):
        assert pipeline.run(*cmd).returncode == 0
    pushed = pipeline.dvc("push", "export@gan_ring8")
    assert pushed.returncode == 0, pushed.output[-2000:]
    # GTO-style tags are annotated: `dvc artifacts get` ignores lightweight ones
    assert pipeline.run("git", "tag", "-a", "gan_ring8@v0.1.0", "-m", "gan_ring8 v0.1.0").returncode == 0
    fetched = tmp_path / "fetched"
    got = pipeline.dvc("artifacts", "get", str(pipeline.repo), "gan_ring8", "-o", str(fetched))
    assert got.returncode == 0, got.output[-2000:]
    card = json.loads((fetched / "model_card.json").read_text())
    assert card["name"] == "gan_ring8" and (fetched / "generator.onnx").exists()
    assert cli.main(["sample", str(fetched), "--out", str(tmp_path / "s.png")]) == 0  # usable on its own


ROUND_TRIP = ("export/*/*", "sweeps/*/*", "sweeps/*/*/*")


def test_push_pull_round_trips_exports_and_sweeps(pipeline):
    """infra/README.md's remote flow with a local DVC remote: push everything, lose the exported
    models, the sweep results and the cache, pull them back byte for byte."""
    repo = pipeline.repo
    pipeline.write_params(pipeline.params)  # the params of the first run (other tests changed them)
    if (repo / "data" / "raw" / "tinymnist.dvc").exists():  # test_dvc_tracked_raw_folder_feeds_prepare's
        assert pipeline.dvc("remove", "data/raw/tinymnist.dvc").returncode == 0
        shutil.rmtree(repo / "data" / "raw" / "tinymnist", ignore_errors=True)
    rebuilt = pipeline.dvc("repro")  # the committed state below must be the built one
    assert rebuilt.returncode == 0, rebuilt.output[-3000:]
    for cmd in (["git", "add", "-A"], ["git", "commit", "-qm", "state to push", "--allow-empty"]):
        assert pipeline.run(*cmd).returncode == 0
    remote = pipeline.root / "remote-roundtrip"
    assert pipeline.dvc("remote", "add", "--local", "--force", "--default", "roundtrip", str(remote)).returncode == 0
    pushed = pipeline.dvc("push")
    assert pushed.returncode == 0, pushed.output[-3000:]
    before = _hashes(repo, ROUND_TRIP)
    assert any(k.startswith("export/gan_ring8/") for k in before) and "sweeps/gan_ring8/trials.parquet" in before
    aside = pipeline.root / "aside"
    outputs = [p.relative_to(repo) for p in [*(repo / "export").iterdir(), *(repo / "sweeps").iterdir()] if p.is_dir()]
    for rel in [*outputs, Path(".dvc/cache")]:
        (aside / rel).parent.mkdir(parents=True, exist_ok=True)
        shutil.move(repo / rel, aside / rel)
    assert not (repo / "export" / "gan_ring8").exists() and not (repo / "sweeps" / "gan_ring8").exists()
    assert "Data and pipelines are up to date" not in pipeline.dvc("status").output
    pulled = pipeline.dvc("pull")
    assert pulled.returncode == 0, pulled.output[-3000:]
    assert _hashes(repo, ROUND_TRIP) == before
    assert "Data and pipelines are up to date" in pipeline.dvc("status").output


def test_cluster_entrypoint_on_a_fresh_clone_pulls_instead_of_rebuilding(pipeline, tmp_path):
    """infra/remote/dvc-repro.sh, as a RayJob runs it: clone the revision, pull from the remote,
    `dvc repro` (nothing left to build), push."""
    remote = pipeline.root / "remote-roundtrip"
    if not remote.is_dir():
        raise RuntimeError("precondition: test_push_pull_round_trips_exports_and_sweeps pushed to this remote")
    workdir = tmp_path / "workspace"
    env = {**pipeline.env, "GENFLOW_GIT_URL": str(pipeline.repo), "GENFLOW_GIT_REV": "HEAD",
           "GENFLOW_WORKDIR": str(workdir), "GENFLOW_DVC_REMOTE": str(remote)}
    env.pop("PYTHONPATH")  # the script points it at the clone
    run = pipeline.run("bash", str(REPO / "infra" / "remote" / "dvc-repro.sh"), env=env, timeout=600)
    output = run.stdout + run.stderr
    assert run.returncode == 0, output[-3000:]
    assert "Running stage" not in output and "[dvc-repro] done: code " in output
    head = pipeline.run("git", "rev-parse", "HEAD").stdout.strip()
    assert f"done: code {head}" in output
    assert _hashes(workdir, ROUND_TRIP) == _hashes(pipeline.repo, ROUND_TRIP)


def _hashes(repo: Path, patterns: tuple[str, ...]) -> dict[str, str]:
    import hashlib

    return {str(p.relative_to(repo)): hashlib.sha256(p.read_bytes()).hexdigest()
            for pattern in patterns for p in sorted(repo.glob(pattern)) if p.is_file()}
