"""Equal-budget studies (issue 28): the studies section's checks, and a tiny study run by real
`dvc repro` in a copy of presets/study with real Ray: killed mid-sweep and resumed, end to end,
a second run that does nothing, and a model added to the study that runs only its own stages
and the report. One shared project (module fixture) keeps the Ray and DVC runs few."""
from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pyarrow.parquet as pq
import pytest
import yaml

from conftest import REPO, kill_when, tiny_params_dict
from genflow import cli, config

PRESET = REPO / "presets" / "study"
BUDGET = {"search": "random", "scheduler": "fifo", "trials": 3, "steps": 300, "report_every": 100,
          "grace_steps": 100, "seed": 0, "preset": "narrow", "seeds": 2, "probe_samples": 100, "probe_real": 100,
          "max_concurrent": 1}  # one trial at a time: the kill lands between two trials' ends


def study_params(models: list[str]) -> dict:
    raw = tiny_params_dict()
    raw["data"] = {"digits": raw["data"]["digits"]}
    raw["models"] = {name: raw["models"][name] for name in ("gan_digits", "vae_digits")}
    raw["evaluate"].update(linear_probe=False, path_samples=50, augmentation_epochs=0)
    raw["studies"] = {"tiny": {"dataset": "digits", "models": models, "budget": dict(BUDGET)}}
    return raw


# -- the studies section (no Ray, no torch) ------------------------------------------------

@pytest.mark.parametrize("change,message", [
    (lambda s: s["models"].append("nope"), "studies.tiny.models.1: unknown model 'nope'"),
    (lambda s: s["models"].append("gan_ring8"), "studies.tiny.models.1: model 'gan_ring8' trains on 'ring8', not"),
    (lambda s: s.update(models=[]), "studies.tiny.models: List should have at least 1 item"),
    (lambda s: s["models"].append("gan_digits"), "studies.tiny.models: each model once; repeated: ['gan_digits']"),
    (lambda s: s.update(dataset="nope"), "studies.tiny.dataset: unknown dataset 'nope'"),
    (lambda s: s["budget"].update(grace_steps=400), "studies.tiny.budget.grace_steps: must not exceed steps"),
    (lambda s: s["budget"].update(metric="modes"), "studies.tiny.budget.metric: 'modes' needs a Gaussian-mixture"),
    (lambda s: s["budget"].pop("trials"), "studies.tiny.budget.trials: required key is missing"),
    # equal budget: a model entry cannot carry a budget of its own
    (lambda s: s["models"].__setitem__(0, {"gan_digits": {"trials": 9}}), "studies.tiny.models.0: Input should be"),
    (lambda s: s.update(trials=9), "studies.tiny.trials: unknown key; allowed keys: dataset, models, budget"),
])
def test_bad_studies_exit_2_naming_the_key(tmp_path, capsys, change, message):
    raw = study_params(["gan_digits"])
    raw["models"]["gan_ring8"] = tiny_params_dict()["models"]["gan_ring8"]
    raw["data"]["ring8"] = tiny_params_dict()["data"]["ring8"]
    change(raw["studies"]["tiny"])
    (tmp_path / "params.yaml").write_text(yaml.safe_dump(raw))
    assert cli.main(["validate", "--params", str(tmp_path / "params.yaml")]) == 2
    err = capsys.readouterr().err
    assert message in err and "Traceback" not in err


@pytest.mark.parametrize("argv,message", [
    (["report", "--study", "nope"], "unknown study 'nope'; params.yaml's studies section defines: tiny"),
    (["sweep", "--study", "tiny"], "genflow study sweep: give --model"),
    (["train", "--study", "tiny", "--model", "gan_digits"], "give --variant (tuned or default)"),
    (["sweep", "--study", "tiny", "--model", "vae_digits"], "studies.tiny.models: no model 'vae_digits'"),
    # a model added to params.yaml but not to dvc.yaml's stage lists: its outputs are missing
    (["report", "--study", "tiny"], "run python stages/study_blocks.py"),
])
def test_study_commands_refuse_bad_input_with_exit_2(tmp_path, monkeypatch, capsys, argv, message):
    (tmp_path / "params.yaml").write_text(yaml.safe_dump(study_params(["gan_digits"])))
    monkeypatch.chdir(tmp_path)
    assert cli.main(["study", *argv]) == 2
    err = capsys.readouterr().err
    assert message in err and "Traceback" not in err


def test_every_model_gets_the_same_budget_and_default_metric():
    from genflow.study.spec import sweep_spec

    params = config.validate(study_params(["gan_digits", "vae_digits"]))
    study = params.studies["tiny"]
    sweeps = [sweep_spec(study, model, "digits").model_dump() for model in study.models]
    assert [s.pop("model") for s in sweeps] == ["gan_digits", "vae_digits"] and sweeps[0] == sweeps[1]
    assert sweeps[0]["metric"] == "fid" and sweep_spec(study, "x", "ring8").metric == "modes"
    assert study.budget.retrain_seeds() == [1, 2]  # never the seed the trials were selected on


def test_the_default_study_is_valid_generated_and_its_own_dvc_project():
    params = config.load(PRESET / "params.yaml")
    study = params.studies["digits"]
    assert {params.models[m].model for m in study.models} == {"gan", "vae"} and study.budget.seeds >= 2
    assert (study.budget.search, study.budget.scheduler) == ("random", "fifo")
    check = subprocess.run([sys.executable, "stages/study_blocks.py", "--check"], cwd=REPO, capture_output=True,
                           text=True, timeout=120)
    assert check.returncode == 0, check.stderr
    assert (PRESET / ".dvc" / "config").is_file()
    status = subprocess.run([str(Path(sys.executable).parent / "dvc"), "status", "--json"], cwd=REPO,
                            capture_output=True, text=True, timeout=300)
    assert status.returncode == 0 and "presets/study" not in status.stdout, status.stderr  # not in the root's
    # its prepare and featurenet stages are the root's, listing at least the root's code deps
    root, preset = (yaml.safe_load((p / "dvc.yaml").read_text())["stages"] for p in (REPO, PRESET))
    for name in ("prepare", "featurenet"):
        code = {d for d in root[name]["do"]["deps"] if d.startswith(("genflow", "stages/"))}
        assert code <= {d.removeprefix("../../") for d in preset[name]["do"]["deps"]}, name
    # the per-model stages name one model's entry and the budget, never the study's model list
    for name in ("sweep", "train", "evaluate"):
        assert not [p for p in preset[name]["do"]["params"] if p.rstrip(".") in ("studies", "studies.${item.study}")]


# -- a tiny study with real Ray and real `dvc repro` ---------------------------------------

class Project:
    def __init__(self, root: Path, address: str):
        from test_pipeline_dvc import git_checkout

        self.root, self.repo = root, root / "repo"
        git_checkout(self.repo)
        self.dir = self.repo / "presets" / "study"
        bin_dir = str(Path(sys.executable).parent)
        self.env = {**os.environ, "PATH": f"{bin_dir}{os.pathsep}{os.environ.get('PATH', '')}",
                    "PYTHONPATH": str(self.repo), "PYTHONDONTWRITEBYTECODE": "1", "DVC_NO_ANALYTICS": "1",
                    "RAY_ADDRESS": address, "RAY_AUTH_MODE": "token", "RAY_DEDUP_LOGS": "0",
                    "PYTHONUNBUFFERED": "1", "OMP_NUM_THREADS": "1"}

    def write_params(self, raw: dict) -> None:
        raw["ray"]["storage_path"] = str(self.root / "storage")
        (self.dir / "params.yaml").write_text(yaml.safe_dump(raw, sort_keys=False))
        made = self.run("python", str(self.repo / "stages" / "study_blocks.py"), "--project", str(self.dir))
        assert made.returncode == 0, made.output

    def run(self, *args: str, timeout: int = 900) -> subprocess.CompletedProcess:
        proc = subprocess.run(list(args), cwd=self.dir, env=self.env, capture_output=True, text=True, timeout=timeout)
        proc.output = proc.stdout + proc.stderr
        return proc

    def killed_repro(self, after: str) -> list[str]:
        """`dvc repro`, SIGKILLed (with everything it started) once a line contains ``after``."""
        proc = subprocess.Popen(["dvc", "repro"], cwd=self.dir, env=self.env, stdout=subprocess.PIPE,
                                stderr=subprocess.STDOUT, text=True, start_new_session=True)
        return kill_when(proc, lambda lines: after in lines[-1], timeout=600)


def ran(output: str) -> set[str]:
    return {line.split("'")[1] for line in output.splitlines() if line.startswith("Running stage '")}


@pytest.fixture(scope="module")
def study(ray_session, tmp_path_factory):
    p = Project(tmp_path_factory.mktemp("study"), ray_session.get_runtime_context().gcs_address)
    p.write_params(study_params(["gan_digits"]))
    p.before_kill = p.killed_repro(after="[sweep tiny-gan_digits] trial trial_0001 finished at step")
    p.first = p.run("dvc", "repro")
    return p


@pytest.mark.slow
def test_a_killed_study_resumes_losing_and_repeating_no_finished_trial(study):
    assert study.first.returncode == 0, study.first.output[-5000:]
    assert "[sweep tiny-gan_digits] resuming" in study.first.output
    ended = {line.split(" trial ", 1)[1].split()[0]: float(line.split("fid=")[1].split()[0])
             for line in study.before_kill if "finished at step" in line}
    assert "trial_0001" in ended and len(ended) < 3  # killed mid-sweep
    sweep = study.dir / "studies" / "tiny" / "sweeps" / "gan_digits"
    table = pq.read_table(sweep / "trials.parquet").to_pylist()
    assert sorted(row["trial_id"] for row in table) == ["trial_0001", "trial_0002", "trial_0003"]  # none lost
    assert {row["status"] for row in table} == {"complete"}
    by_id = {row["trial_id"]: row for row in table}
    for trial_id, fid in ended.items():  # ended before the kill: kept, never started again
        assert by_id[trial_id]["runs"] == [1] and by_id[trial_id]["fid"] == pytest.approx(fid, rel=1e-4)
    assert all(row["runs"] in ([1], [1, 2], [2]) for row in table), table


@pytest.mark.slow
def test_the_study_runs_end_to_end_and_records_its_provenance(study):
    assert study.first.returncode == 0, study.first.output[-5000:]
    base = study.dir / "studies" / "tiny"
    summary = json.loads((base / "sweeps" / "gan_digits" / "summary.json").read_text())
    assert summary["study"] == "tiny" and summary["trials"] == 3 and summary["code_revision"]
    assert len(summary["params_fingerprint"]) == 12 and (summary["search"], summary["scheduler"]) == ("random", "fifo")
    best = yaml.safe_load((base / "sweeps" / "gan_digits" / "best_params.yaml").read_text())["overrides"]
    for variant in ("tuned", "default"):
        run = json.loads((base / "models" / "gan_digits" / variant / "study_run.json").read_text())
        assert run["params_fingerprint"] == summary["params_fingerprint"] and run["code_revision"]
        details = json.loads((base / "metrics" / f"gan_digits-{variant}.details.json").read_text())
        assert sorted(details["per_seed"]) == ["1", "2"] and details["fid"] > 0  # the study's seeds, on test
        assert details["protocol"]["code_revision"] and details["study_run"]["variant"] == variant
        assert details["study_run"]["params_fingerprint"] == summary["params_fingerprint"]
        trained = json.loads((base / "models" / "gan_digits" / variant / "seed_1" / "resolved_params.json").read_text())
        assert trained["train"]["steps"] == 300 and trained["train"]["eval_every"] == 0
        if variant == "tuned":  # the winner's values, not the hand-set ones
            assert trained["train"]["lr_g"] == best["train.lr_g"] and trained["train"]["beta1"] == best["train.beta1"]
        else:
            assert trained["train"]["lr_g"] == study_params([])["models"]["gan_digits"]["train"]["lr_g"]
    report = json.loads((base / "report" / "study.json").read_text())
    assert [m["name"] for m in report["models"]] == ["gan_digits"] and report["metric"] == "fid"
    assert report["provenance"]["code_revision"] and len(report["provenance"]["params_fingerprint"]) == 12


@pytest.mark.slow
def test_rerunning_the_study_is_a_noop(study):
    assert study.first.returncode == 0, study.first.output[-5000:]
    status = study.run("dvc", "status")
    assert "Data and pipelines are up to date" in status.output, status.output
    again = study.run("dvc", "repro")
    assert again.returncode == 0 and ran(again.output) == set(), again.output[-3000:]


@pytest.mark.slow
def test_adding_a_model_reruns_only_its_stages_and_the_report(study):
    assert study.first.returncode == 0, study.first.output[-5000:]
    study.write_params(study_params(["gan_digits", "vae_digits"]))
    added = study.run("dvc", "repro")
    assert added.returncode == 0, added.output[-5000:]
    runs = {f"{stage}@tiny-vae_digits-{variant}" for stage in ("train", "evaluate") for variant in ("tuned", "default")}
    assert ran(added.output) == {"sweep@tiny-vae_digits", "report@tiny", *runs}
    report = json.loads((study.dir / "studies" / "tiny" / "report" / "study.json").read_text())
    assert [m["name"] for m in report["models"]] == ["gan_digits", "vae_digits"]
    assert "Data and pipelines are up to date" in study.run("dvc", "status").output
