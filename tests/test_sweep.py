"""Sweeps: search-space validation, trial configs, how Optuna is told about ASHA-stopped and
failed trials, and real Ray Tune sweeps (outputs, a diverging trial, resume after a kill)."""
from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import yaml

from genflow import config
from genflow.errors import ConfigError
from genflow.sweep.space import SweepSpec, resolved_space, set_dotted

from conftest import REPO, kill_when, quiet, sweep_stage, tiny_params_dict

SWEEP = {"model": "gan_ring8", "dataset": "ring8", "preset": "narrow", "trials": 6, "steps": 60,
         "report_every": 20, "grace_steps": 20, "probe_samples": 200, "probe_real": 200,
         "space": {"width": {"choice": [8, 16]}}}


def with_sweep(**changes) -> dict:
    raw = tiny_params_dict()
    raw["sweeps"] = {"gan_ring8": {**SWEEP, **changes}}
    return raw


# -- validation (no Ray, no torch) -------------------------------------------------------

@pytest.mark.parametrize("changes,message", [
    ({"model": "nope"}, "sweeps.gan_ring8.model: unknown model 'nope'"),
    ({"dataset": "digits"}, "sweeps.gan_ring8.dataset: model 'gan_ring8' trains on 'ring8'"),
    ({"space": {"train.bogus": {"choice": [1]}}}, "sweeps.gan_ring8.space.train.bogus: not a key of a gan model"),
    ({"space": {"train.lr_g": {"loguniform": [1e-4, 2.0]}}}, "sweeps.gan_ring8.space.train.lr_g: value 2.0 is invalid"),
    ({"space": {"loss": {"choice": ["ns", "wasserstein"]}}}, "sweeps.gan_ring8.space.loss: value 'wasserstein'"),
    ({"space": {"seeds": {"choice": [0, 1]}}}, "'seeds' cannot be searched"),
    ({"space": {"width": {"choice": [[8], [16]]}}}, "space.width.choice.0: must be a number, a string or a boolean"),
    ({"space": {"width": {"uniform": [64, 8]}}}, "low must be below high"),
    ({"space": {"train.lr_g": {"loguniform": [0.0, 1e-3]}}}, "bounds must be positive"),
    ({"space": {"width": {"choice": [8], "int": [8, 16]}}}, "give exactly one of"),
    ({"space": {"width": {"range": [8, 16]}}}, "sweeps.gan_ring8.space.width.range: unknown key"),
    ({"preset": "none", "space": {}}, "sweeps.gan_ring8.space: nothing to search"),
    ({"steps": 10}, "grace_steps: must not exceed"),
    ({"metric": "inception_score"}, "sweeps.gan_ring8.metric"),
    ({"trials": 0}, "sweeps.gan_ring8.trials"),
    ({"bogus": 1}, "sweeps.gan_ring8.bogus: unknown key; allowed keys: model, dataset"),
])
def test_bad_sweeps_are_rejected_naming_the_key(changes, message):
    with pytest.raises(ConfigError) as err:
        config.validate(with_sweep(**changes))
    assert message in str(err.value), str(err.value)


def test_presets_search_only_what_the_model_uses():
    params = config.validate(with_sweep(space={}))
    ns = resolved_space(params.sweeps["gan_ring8"], params.models["gan_ring8"].model_dump(mode="json"))
    assert set(ns) == {"train.lr_g", "train.lr_d", "train.beta1", "train.beta2"}  # no penalty, no critic steps
    wgan = {**params.models["gan_ring8"].model_dump(mode="json"), "loss": "wgan-gp"}
    assert {"gp_lambda", "train.n_critic"} <= set(resolved_space(params.sweeps["gan_ring8"], wgan))
    vae = params.models["vae_digits"].model_dump(mode="json")
    assert set(resolved_space(SweepSpec(model="vae_digits", dataset="digits", preset="wide"), vae)) == {
        "train.lr", "beta"}


def test_set_dotted_copies_and_rejects_unknown_paths():
    spec = {"width": 8, "train": {"lr_g": 1.0}}
    out = set_dotted(spec, "train.lr_g", 2.0)
    assert out == {"width": 8, "train": {"lr_g": 2.0}} and spec["train"]["lr_g"] == 1.0
    with pytest.raises(KeyError):
        set_dotted(spec, "train.nope", 1)


def test_repo_sweep_is_valid_and_searches_what_the_issue_names():
    params = config.load(REPO / "params.yaml")
    sweep = params.sweeps["gan_ring8"]
    space = resolved_space(sweep, params.models[sweep.model].model_dump(mode="json"))
    assert {"train.lr_g", "train.lr_d", "train.beta1", "train.beta2", "z_dim", "pac", "train.batch_size",
            "train.ema_decay"} <= set(space)


def test_trial_config_applies_overrides_and_checks_the_combination(prepared_dir):
    from genflow.sweep.trial import trial_config
    from genflow.train.worker_config import worker_config

    params = config.validate(with_sweep())
    base = worker_config("gan_ring8", params, prepared_dir)
    sweep = params.sweeps["gan_ring8"]
    cfg = trial_config(base, {"width": 8, "train.lr_g": 0.001}, sweep)
    assert cfg.spec["width"] == 8 and cfg.spec["train"]["lr_g"] == 0.001
    assert cfg.spec["train"]["steps"] == 60 and cfg.spec["train"]["checkpoint_every"] == 20
    assert cfg.fingerprint != base.fingerprint
    with pytest.raises(ConfigError, match="must be a multiple of pac"):
        trial_config(base, {"pac": 2, "train.batch_size": 33}, sweep)


# -- how Optuna is told (genflow's searcher over a real Optuna study, no trials run) -----------

def _searcher(opened, asha_stopped: str = "pruned", trials: int = 10, rerun=()):
    from genflow.integrations.tune_ledger import JournalSearcher
    from genflow.sweep.dimension import Dimension

    sweep = SweepSpec(model="gan_ring8", dataset="ring8", asha_stopped=asha_stopped, trials=trials, search="random")
    return JournalSearcher(opened, {"x": Dimension(uniform=[0.0, 1.0]), "width": Dimension(choice=[8, 16])}, sweep,
                           full_steps=100, rerun=list(rerun))


def _told(asha_stopped: str, result: dict, error: bool = False):
    import optuna

    from genflow.integrations.tune_ledger import OpenStudy

    storage = optuna.storages.InMemoryStorage()
    study = optuna.create_study(storage=storage, direction="minimize", sampler=optuna.samplers.RandomSampler(seed=0))
    searcher = _searcher(OpenStudy(study, storage), asha_stopped)
    searcher.suggest("t1")
    searcher.on_trial_result("t1", {"fid": 3.0, "training_iteration": 1, "step": 50})
    searcher.on_trial_complete("t1", result, error=error)
    return study.trials[0]


def test_asha_stopped_trial_is_pruned_with_its_last_value():
    from optuna.trial import TrialState

    trial = _told("pruned", {"fid": 3.0, "step": 50})
    assert trial.state == TrialState.PRUNED and trial.value == 3.0 and trial.intermediate_values == {50: 3.0}
    assert _told("complete", {"fid": 3.0, "step": 50}).state == TrialState.COMPLETE
    assert _told("pruned", {"fid": 1.0, "step": 100}).state == TrialState.COMPLETE


def test_the_result_a_trial_is_stopped_on_reaches_the_journal():
    """Tune hands the result ASHA stops a trial on (at a rung or at the last step) to the
    searcher's on_trial_complete only: it is the last of the trial's intermediate values, and the
    value of a pruned trial, as of a complete one."""
    from optuna.trial import TrialState

    stopped = _told("pruned", {"fid": 2.5, "step": 75})  # reported: step 50 only
    assert stopped.state == TrialState.PRUNED and stopped.intermediate_values == {50: 3.0, 75: 2.5}
    assert stopped.value == 2.5
    complete = _told("pruned", {"fid": 1.0, "step": 100})
    assert complete.intermediate_values == {50: 3.0, 100: 1.0} and complete.value == 1.0


def test_failed_trial_is_fail_even_after_reporting():
    from optuna.trial import TrialState

    trial = _told("pruned", {"fid": 3.0, "step": 50}, error=True)
    assert trial.state == TrialState.FAIL and trial.value is None


def test_a_rerun_proposes_what_an_uninterrupted_sweep_would_and_reruns_what_had_not_ended(tmp_path):
    """The journal decides: a rerun hands out again, under the same number and values, every
    proposal that did not end, and its new proposals are those an uninterrupted sweep would make
    (the sampler is seeded per trial number, not once per run)."""
    from genflow.integrations.tune_ledger import TRIAL_KEY, open_study, reconcile

    sweep = SweepSpec(model="gan_ring8", dataset="ring8", trials=5, search="random", seed=3)
    straight = _searcher(open_study(tmp_path / "a.journal", "s", sweep), trials=5)
    expected = [straight.suggest(f"a{i}") for i in range(5)]
    assert straight.suggest("a5") == "FINISHED"

    first = _searcher(open_study(tmp_path / "b.journal", "s", sweep), trials=5)
    proposed = [first.suggest(f"b{i}") for i in range(3)]
    first.on_trial_result("b0", {"fid": 2.0, "step": 100})
    first.on_trial_complete("b0", {"fid": 2.0, "step": 100})  # then the sweep is killed: 1 and 2 were running
    (tmp_path / "ledger").mkdir()
    opened = open_study(tmp_path / "b.journal", "s", sweep)
    rerun = reconcile(opened, tmp_path / "ledger", sweep, 100)
    assert rerun == [1, 2]
    second = _searcher(opened, trials=5, rerun=rerun)
    resumed = [second.suggest(f"c{i}") for i in range(4)]
    assert second.suggest("c4") == "FINISHED"
    assert proposed == expected[:3] and resumed == expected[1:] and [r[TRIAL_KEY] for r in resumed] == [1, 2, 3, 4]
    # a reopened proposal takes its results and its end in the journal under its old number
    second.on_trial_result("c0", {"fid": 1.5, "step": 50})
    second.on_trial_complete("c0", {"fid": 1.0, "step": 100})
    reread = open_study(tmp_path / "b.journal", "s", sweep).study.trials[1]
    assert reread.intermediate_values == {50: 1.5, 100: 1.0} and reread.value == 1.0
    assert reread.params == {k: v for k, v in expected[1].items() if k != TRIAL_KEY}


def test_a_proposal_killed_before_its_values_reached_the_journal_is_rerun_with_values(tmp_path):
    """``study.ask`` writes a trial, then its values one by one: a kill in between leaves a
    RUNNING proposal with none (seen on CI). Its rerun draws them (seeded: the same on every
    rerun) instead of training the model's own settings under the trial's name."""
    from genflow.integrations.tune_ledger import TRIAL_KEY, open_study, reconcile

    sweep = SweepSpec(model="gan_ring8", dataset="ring8", trials=2, search="random", seed=3)
    opened = open_study(tmp_path / "j", "s", sweep)
    opened.study.ask()  # the trial, then the kill: no values written
    (tmp_path / "ledger").mkdir()
    rerun = reconcile(open_study(tmp_path / "j", "s", sweep), tmp_path / "ledger", sweep, 100)
    assert rerun == [0]
    config = _searcher(open_study(tmp_path / "j", "s", sweep), trials=2, rerun=rerun).suggest("t0")
    assert config[TRIAL_KEY] == 0 and set(config) == {"x", "width", TRIAL_KEY}
    assert 0.0 <= config["x"] <= 1.0 and config["width"] in (8, 16)
    again = _searcher(open_study(tmp_path / "j", "s", sweep), trials=2, rerun=[0]).suggest("t1")
    assert again == config  # now in the journal: a later rerun gets the same values
    assert open_study(tmp_path / "j", "s", sweep).study.trials[0].params == {"x": config["x"], "width": config["width"]}


def test_the_journal_and_the_ledger_are_reconciled_after_a_kill_between_their_writes(tmp_path):
    """A kill can fall between the driver's two writes when a trial ends: the end mark without
    Optuna told, or Optuna told without the mark. Either way the trial ended and is not rerun."""
    from optuna.trial import TrialState

    from genflow.integrations.tune_ledger import append_result, done_mark, done_path, open_study, reconcile
    from genflow.io import write_json

    sweep = SweepSpec(model="gan_ring8", dataset="ring8", trials=3, search="random")
    ledger = tmp_path / "ledger"
    ledger.mkdir()
    searcher = _searcher(open_study(tmp_path / "j", "s", sweep), trials=3)
    for i in range(3):
        searcher.suggest(f"t{i}")
    append_result(ledger, "trial_0001", {"step": 100, "fid": 1.5})
    write_json(done_path(ledger, "trial_0001"), {"status": "finished", "reason": "", "step": 100})  # mark, no tell
    searcher.on_trial_complete("t1", {"fid": 2.5, "step": 100})  # told, no mark
    opened = open_study(tmp_path / "j", "s", sweep)
    assert reconcile(opened, ledger, sweep, 100) == [2]
    study = opened.study
    assert study.trials[0].state == TrialState.COMPLETE and study.trials[0].value == 1.5
    assert study.trials[0].intermediate_values == {100: 1.5}  # the ledger's score, which Optuna had missed
    assert done_mark(ledger, "trial_0002")["status"] == "finished"


def test_a_resumed_asha_stops_what_the_ended_trials_rungs_would_have_stopped():
    """The ended trials of a killed sweep are fed to ASHA through its public hooks, so its rung
    cutoffs are back: a trial worse than all of them at the first rung is stopped there, which a
    fresh ASHA (no cutoff yet) would not do."""
    from types import SimpleNamespace

    from ray.tune.schedulers import TrialScheduler

    from genflow.integrations.ray_tune import LedgerASHA

    def first_rung(asha, value):
        trial = SimpleNamespace(trial_id="new")
        asha.on_trial_add(None, trial)
        return asha.on_trial_result(None, trial, {"step": 10, "fid": value})

    def asha():
        return LedgerASHA(time_attr="step", metric="fid", mode="min", max_t=90, grace_period=10, reduction_factor=3)

    resumed = asha()
    resumed.remember({"trial_0001": [(10, 1.0), (30, 0.8), (90, 0.5)], "trial_0002": [(10, 2.0)],
                      "trial_0003": []})
    assert first_rung(resumed, 5.0) == TrialScheduler.STOP
    assert first_rung(asha(), 5.0) == TrialScheduler.CONTINUE
    assert first_rung(resumed, 0.1) == TrialScheduler.CONTINUE


# -- real sweeps on Ray Tune --------------------------------------------------------------

def _sweep(raw: dict, prepared: Path, features: Path, out: Path):
    from genflow.launch import sweep as sweep_model

    return sweep_model("gan_ring8", config.validate(raw), prepared, features, out, log=quiet)


def assert_journal_holds_every_trial(out: Path, table: list[dict]) -> None:
    """Opened with Optuna alone (as optuna-dashboard would), the journal in the sweep's outputs
    holds every trial of trials.parquet: same numbers, same values, same end."""
    import optuna
    from optuna.storages import JournalStorage
    from optuna.storages.journal import JournalFileBackend

    study = optuna.load_study(study_name="genflow-gan_ring8",
                              storage=JournalStorage(JournalFileBackend(str(out / "study.journal"))))
    by_number = {trial.number + 1: trial for trial in study.get_trials()}
    assert sorted(by_number) == sorted(row["number"] for row in table)
    ended = {"complete": optuna.trial.TrialState.COMPLETE, "stopped": optuna.trial.TrialState.PRUNED,
             "failed": optuna.trial.TrialState.FAIL}
    for row in table:
        trial = by_number[row["number"]]
        searched = {key.removeprefix("config."): value for key, value in row.items() if key.startswith("config.")}
        assert trial.params == searched and trial.state == ended[row["status"]]
        assert sorted(trial.intermediate_values) == row["history_step"]


@pytest.mark.slow
def test_sweep_writes_table_best_params_journal_and_plots(ray_session, prepared_dir, features_dir, tmp_path):
    raw = with_sweep()
    raw["ray"]["storage_path"] = str(tmp_path / "storage")
    summary = _sweep(raw, prepared_dir, features_dir, tmp_path / "out")
    out = tmp_path / "out"
    table = pq.read_table(out / "trials.parquet").to_pylist()
    assert len(table) == 6 and len({row["trial_id"] for row in table}) == 6
    assert sorted(row["number"] for row in table) == list(range(1, 7))
    assert {row["status"] for row in table} <= {"complete", "stopped"} and summary["failed"] == 0
    assert any(row["status"] == "complete" and row["steps"] == 60 for row in table)
    for row in table:  # the score history is the probe at every report_every steps
        assert row["history_step"] == list(range(20, row["steps"] + 1, 20))
        assert row["fid"] == row["history_fid"][-1] and row["wall_s"] > 0
        assert set(row) >= {"config.width", "config.train.lr_g", "config.train.beta2"}
    best = yaml.safe_load((out / "best_params.yaml").read_text())
    complete = [row for row in table if row["status"] == "complete"]
    assert best["value"] == min(row["fid"] for row in complete) and best["status"] == "complete"
    assert set(best["overrides"]) == {"width", "train.lr_g", "train.lr_d", "train.beta1", "train.beta2"}
    states = [json.loads(line).get("state") for line in (out / "study.journal").read_text().splitlines()]
    assert states.count(1) + states.count(2) == 6  # Optuna: COMPLETE (1) or PRUNED (2) for every trial
    assert_journal_holds_every_trial(out, table)
    for picture in ("best_so_far.png", "scores.png"):
        assert (out / picture).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    drawn = json.loads((out / "optuna" / "plots.json").read_text())
    assert drawn["trials"] == 6 and drawn["complete"] == len(complete) and drawn["pruned"] == 6 - len(complete)
    expected = ["intermediate_values"] + (["param_importances", "parallel_coordinate", "slice", "contour"]
                                          if len(complete) >= 2 else [])
    assert sorted(d["plot"] for d in drawn["drawn"]) == sorted(expected), drawn["skipped"]
    for picture in drawn["drawn"]:
        assert (out / "optuna" / picture["file"]).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert not any((tmp_path / "storage").iterdir())  # resume state dropped once the outputs exist

    # the train stage consumes best_params.yaml
    params_path = tmp_path / "params.yaml"
    params_path.write_text(yaml.safe_dump(raw))
    result = subprocess.run([sys.executable, "-m", "genflow.cli", "train", "--model", "gan_ring8", "--params",
                             str(params_path), "--data-root", str(prepared_dir), "--out", str(tmp_path / "model"),
                             "--best-params", str(out / "best_params.yaml"), "--set", "ray.num_workers=0",
                             "--set", f"ray.storage_path={tmp_path / 'work'}"],
                            cwd=REPO, capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr[-3000:]
    trained = json.loads((tmp_path / "model" / "seed_0" / "resolved_params.json").read_text())
    assert trained["width"] == best["overrides"]["width"]
    assert trained["train"]["lr_g"] == best["overrides"]["train.lr_g"]


def _outlier_dataset(root: Path) -> tuple[Path, Path]:
    """ring8-like points with one value near float32's maximum in the training split: a batch
    that includes it overflows D and the loss becomes NaN."""
    from genflow.data.prepare import prepare
    from genflow.featurenet.stage import build_feature_space

    rng = np.random.default_rng(0)
    angles = rng.integers(0, 8, 600) * (np.pi / 4)
    points = (np.stack([2 * np.cos(angles), 2 * np.sin(angles)], 1) + rng.normal(0, 0.05, (600, 2)))
    points = points.astype(np.float32)
    points[7] = 3e38
    column = pa.FixedSizeListArray.from_arrays(pa.array(points.reshape(-1), type=pa.float32()), 2)
    pq.write_table(pa.table({"x": column, "split": pa.array(["train"] * 500 + ["val"] * 50 + ["test"] * 50)}),
                   root / "points.parquet")
    raw = tiny_params_dict()
    raw["data"] = {"ring8": {"source": "parquet", "path": str(root / "points.parquet")}}
    params = config.validate({**raw, "models": {}})
    prepare(params.data["ring8"], root / "prepared" / "ring8", log=quiet)
    build_feature_space(root / "prepared" / "ring8", params.featurenet, root / "features" / "ring8", log=quiet)
    return root / "prepared", root / "features"


@pytest.mark.slow
def test_diverging_trial_is_recorded_and_the_sweep_completes(ray_session, tmp_path):
    prepared, features = _outlier_dataset(tmp_path)
    raw = with_sweep(preset="none", trials=4, steps=3, report_every=3, grace_steps=3, scheduler="fifo",
                     space={"train.batch_size": {"choice": [4, 500]}})
    raw["data"] = {"ring8": {"source": "parquet", "path": str(tmp_path / "points.parquet")}}
    raw["models"] = {"gan_ring8": {**raw["models"]["gan_ring8"], "pac": 1}}
    raw["ray"]["storage_path"] = str(tmp_path / "storage")
    summary = _sweep(raw, prepared, features, tmp_path / "out")
    table = pq.read_table(tmp_path / "out" / "trials.parquet").to_pylist()
    failed = [row for row in table if row["status"] == "failed"]
    assert failed and summary["failed"] == len(failed) and summary["complete"] == len(table) - len(failed) > 0
    for row in failed:
        assert row["config.train.batch_size"] == 500 and row["fid"] is None
        assert row["reason"].startswith("diverged at step 0: phase D loss is nan"), row["reason"]
    best = yaml.safe_load((tmp_path / "out" / "best_params.yaml").read_text())
    assert best["overrides"] == {"train.batch_size": 4}
    states = [json.loads(line).get("state") for line in (tmp_path / "out" / "study.journal").read_text().splitlines()]
    assert states.count(3) == len(failed)  # Optuna's FAIL: TPE does not learn from them


@pytest.mark.slow
def test_killed_sweep_resumes_without_losing_or_repeating_trials(ray_session, prepared_dir, features_dir, tmp_path):
    raw = with_sweep(trials=8, steps=400, report_every=40, grace_steps=40, max_concurrent=2)
    raw["ray"]["storage_path"] = str(tmp_path / "storage")
    params_path = tmp_path / "params.yaml"
    params_path.write_text(yaml.safe_dump(raw))
    features = tmp_path / "models" / "featurenet"
    features.parent.mkdir()
    features.symlink_to(features_dir)
    address = ray_session.get_runtime_context().gcs_address

    first = sweep_stage(params_path, prepared_dir, features, tmp_path / "out", address)
    lines = kill_when(first, lambda seen: sum("finished at step" in line for line in seen) >= 2, timeout=300)
    before = {line.split(" trial ", 1)[1].split()[0]: line for line in lines if "finished at step" in line}
    assert not (tmp_path / "out").exists()

    second = sweep_stage(params_path, prepared_dir, features, tmp_path / "out", address)
    output, _ = second.communicate(timeout=600)
    assert second.returncode == 0, output[-5000:]
    assert "[sweep gan_ring8] resuming" in output
    table = pq.read_table(tmp_path / "out" / "trials.parquet").to_pylist()
    ids = [row["trial_id"] for row in table]
    assert len(ids) == 8 and len(set(ids)) == 8  # none lost, none proposed twice
    assert {row["status"] for row in table} <= {"complete", "stopped"}, table  # none lost, none failed
    by_id = {row["trial_id"]: row for row in table}
    for trial_id, line in before.items():
        fid = float(line.split("fid=")[1].split()[0])
        assert by_id[trial_id]["fid"] == pytest.approx(fid, rel=1e-4)
        assert by_id[trial_id]["runs"] == [1]  # ended before the kill: never started again
    assert all(row["runs"] in ([1], [1, 2], [2]) for row in table), table
    assert_journal_holds_every_trial(tmp_path / "out", table)  # reopened proposals too, each probe once


@pytest.mark.slow
def test_trials_on_ray_train_workers(ray_session, prepared_dir, features_dir, tmp_path):
    """workers_per_trial >= 1: each trial launches a TorchTrainer; rank 0's probe reaches Tune."""
    raw = with_sweep(trials=2, steps=40, report_every=20, grace_steps=20, scheduler="fifo", workers_per_trial=1)
    raw["ray"]["storage_path"] = str(tmp_path / "storage")
    summary = _sweep(raw, prepared_dir, features_dir, tmp_path / "out")
    table = pq.read_table(tmp_path / "out" / "trials.parquet").to_pylist()
    assert summary["complete"] == 2 and [row["workers"] for row in table] == [1, 1]
    for row in table:
        assert row["history_step"] == [20, 40] and row["fid"] is not None and row["fid"] > 0
    assert not any((tmp_path / "storage").iterdir())  # the trials' Train runs went with the experiment


def test_a_trial_checks_its_data_with_the_facts_of_the_manifest(params, prepared_dir):
    """WorkerConfig.data_facts (what a trial's spec is checked against) is what the manifest says."""
    from genflow.data.shards import read_manifest
    from genflow.data.specs import DataFacts
    from genflow.train.worker_config import worker_config

    for name, dataset in (("gan_digits", "digits"), ("gan_ring8", "ring8")):
        facts = worker_config(name, params, prepared_dir).data_facts
        assert facts == DataFacts.from_manifest(dataset, read_manifest(prepared_dir / dataset))


def test_a_journal_lock_left_by_a_killed_sweep_is_taken_over_at_once(tmp_path):
    """Optuna's own file locks wait 30 s for a lock whose holder died; the sweep's names its holder."""
    import socket

    from genflow.integrations.tune_ledger import JournalLock

    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True,
                          text=True, check=True).stdout.strip()
    (tmp_path / "study.journal.lock").write_text(f"{socket.gethostname()}-{dead}")
    lock = JournalLock(tmp_path / "study.journal")
    assert lock.acquire()
    assert (tmp_path / "study.journal.lock").read_text() == f"{socket.gethostname()}-{os.getpid()}"
    lock.release()
    assert not (tmp_path / "study.journal.lock").exists()


def test_a_ledger_line_cut_by_a_kill_loses_only_itself(tmp_path):
    from genflow.integrations.tune_ledger import append_result, results

    append_result(tmp_path, "trial_0001", {"step": 5, "fid": 2.0})
    with open(tmp_path / "trial_0001.jsonl", "ab") as handle:
        handle.write(b'{"step": 10, "fi')  # the trial was killed while writing
    append_result(tmp_path, "trial_0001", {"step": 10, "fid": 1.5})  # recomputed after the rerun
    append_result(tmp_path, "trial_0001", {"step": 5, "fid": 2.0})  # reported again: counted once
    assert results(tmp_path, "trial_0001") == [{"step": 5, "fid": 2.0}, {"step": 10, "fid": 1.5}]
