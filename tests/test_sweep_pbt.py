"""Population Based Training sweeps (``scheduler: pbt``): what is refused, that exploit copies a
donor's whole checkpoint and explore's values take effect in the running engine, the history in
trials.parquet and summary.json, reproducibility on rerun, and a killed PBT sweep's refusal."""
from __future__ import annotations

import json
from pathlib import Path

import pyarrow.parquet as pq
import pytest
import yaml

from genflow import config
from genflow.errors import ConfigError
from genflow.sweep.dimension import Dimension
from genflow.sweep.space import resolved_space

from conftest import kill_when, quiet, sweep_stage, tiny_params_dict

PBT = {"model": "gan_ring8", "dataset": "ring8", "preset": "narrow", "trials": 4, "steps": 60, "report_every": 20,
       "scheduler": "pbt", "quantile_fraction": 0.5, "cpus_per_trial": 0.5, "probe_samples": 200,
       "probe_real": 200, "space": {"width": {"choice": [8, 16]}}}


def with_pbt(**changes) -> dict:
    raw = tiny_params_dict()
    raw["sweeps"] = {"gan_ring8": {**PBT, **changes}}
    return raw


# -- validation and the explore rules (no Ray) -----------------------------------------------------

@pytest.mark.parametrize("changes,message", [
    ({"workers_per_trial": 1}, "sweeps.gan_ring8.workers_per_trial: PBT trials train in their own process"),
    ({"preset": "none"}, "sweeps.gan_ring8.space: PBT explores train.lr_g"),
    ({"perturbation_interval": 30}, "perturbation_interval: must be a multiple of report_every (20)"),
    ({"perturbation_interval": 60}, "sweeps.gan_ring8.perturbation_interval: must be below the trial's 60 steps"),
    ({"trials": 1}, "sweeps.gan_ring8.trials: PBT needs a population of at least 2"),
    ({"max_concurrent": 2}, "sweeps.gan_ring8.max_concurrent: PBT runs as many members at once as cpus_per_trial"),
    ({"quantile_fraction": 0.6}, "sweeps.gan_ring8.quantile_fraction"),
])
def test_bad_pbt_sweeps_are_rejected_naming_the_key(changes, message):
    with pytest.raises(ConfigError) as err:
        config.validate(with_pbt(**changes))
    assert message in str(err.value), str(err.value)


def test_pbt_explores_what_the_family_preset_searches_and_nothing_else():
    from genflow.sweep.space import explored_keys

    params = config.validate(with_pbt())
    sweep = params.sweeps["gan_ring8"]
    assert sweep.interval == 20  # perturbation_interval defaults to report_every
    ns = resolved_space(sweep, params.models["gan_ring8"].model_dump(mode="json"))
    assert explored_keys(ns) == ["train.lr_g", "train.lr_d", "train.beta1", "train.beta2"]  # not width
    r1 = {**params.models["gan_ring8"].model_dump(mode="json"), "r1_gamma": 1.0}
    space = {**resolved_space(sweep, r1), "r1_gamma": Dimension(loguniform=[0.1, 10.0])}
    assert explored_keys(space) == ["train.lr_g", "train.lr_d", "train.beta1", "train.beta2", "train.n_critic",
                                    "r1_gamma"]


def test_explore_perturbs_within_each_range():
    import random

    from genflow.sweep.pbt import ClipToRange, Resample, mutation

    space = {"train.beta1": Dimension(uniform=[0.0, 0.99]), "train.lr_g": Dimension(loguniform=[1e-4, 1e-3]),
             "train.n_critic": Dimension(int=[1, 5]), "width": Dimension(choice=[8, 16])}
    assert mutation(space["train.n_critic"]) == [1, 2, 3, 4, 5] and mutation(space["width"]) == [8, 16]
    clip = ClipToRange(space)
    assert clip({"train.beta1": 0.95 * 1.2, "train.lr_g": 1e-4 * 0.8, "width": 16}) == \
        {"train.beta1": 0.99, "train.lr_g": 1e-4, "width": 16}  # Adam's beta stays below 1
    random.seed(0)
    draws = [Resample(1e-4, 1e-3, log=True)() for _ in range(200)]
    assert 1e-4 <= min(draws) and max(draws) <= 1e-3


def test_exploit_loads_the_donors_state_and_explore_takes_effect_in_the_engine(params, prepared_dir, tmp_path):
    """Each explored key, checked in the engine that continues from the donor's checkpoint: the
    weights and every optimiser moment are the donor's, the optimisers' lr and betas the new
    values (loading alone would bring back the donor's), D's steps per G step the new n_critic,
    and the D loss's R1 term weighted by the new r1_gamma."""
    import torch

    from genflow.sweep.trial import trial_config
    from genflow.train import checkpoint
    from genflow.train.checkpoint_store import restore_into
    from genflow.train.engine import PrintReporter
    from genflow.train.worker import build_engine, checkpoint_meta
    from genflow.train.worker_config import worker_config
    from genflow.models.base import StepContext

    sweep = config.validate(with_pbt()).sweeps["gan_ring8"]
    base = worker_config("gan_ring8", params, prepared_dir, 0)
    donor_values = {"train.lr_g": 2e-4, "train.lr_d": 3e-4, "train.beta1": 0.5, "train.beta2": 0.999,
                    "train.n_critic": 1, "r1_gamma": 1.0}
    new_values = {"train.lr_g": 7e-4, "train.lr_d": 1e-4, "train.beta1": 0.0, "train.beta2": 0.9,
                  "train.n_critic": 3, "r1_gamma": 4.0}
    donor_config = trial_config(base, donor_values, sweep)
    donor, data = build_engine(donor_config)
    donor.fit(data, PrintReporter("donor"))
    checkpoint.save(tmp_path / "donor", donor.state_dict(), donor.log, checkpoint_meta(donor_config))

    recipient, data = build_engine(trial_config(base, new_values, sweep))
    state, log, _ = checkpoint.load(tmp_path / "donor")
    restore_into(recipient, state, log)
    assert [g["lr"] for o in recipient.optimizers for g in o.param_groups] == [3e-4, 2e-4]  # the donor's, until:
    recipient.apply_settings()

    assert recipient.step == donor.step == 60
    for name, value in donor.model.state_dict().items():  # G, D and G's EMA
        assert torch.equal(recipient.model.state_dict()[name], value), name
    for mine, theirs in zip(recipient.optimizers, donor.optimizers):
        for p_mine, p_theirs in zip(mine.param_groups[0]["params"], theirs.param_groups[0]["params"]):
            assert torch.equal(mine.state[p_mine]["exp_avg"], theirs.state[p_theirs]["exp_avg"])
    d_opt, g_opt = (o.param_groups[0] for o in recipient.optimizers)
    assert (d_opt["lr"], g_opt["lr"]) == (1e-4, 7e-4)
    assert d_opt["betas"] == g_opt["betas"] == (0.0, 0.9)
    assert [p.repeats for p in recipient.phases] == [3, 1] and recipient.batches_per_step == 3

    # r1_gamma: against the same engine with only r1_gamma at the donor's value, the D loss
    # differs by exactly the R1 term's change in weight
    reference, _ = build_engine(trial_config(base, {**new_values, "r1_gamma": 1.0}, sweep))
    restore_into(reference, state, log)
    x, _ = data.batch(torch.arange(64))

    def ctx():  # a context counts its draws: one each, for the same noise
        return StepContext(step=60, seed=0, phase=0, repeat=0, rank=0, world_size=1)

    new_loss, new_logs = recipient.model.d_phase((x, None), ctx())
    old_loss, old_logs = reference.model.d_phase((x, None), ctx())
    r1 = float(new_logs["r1"])
    assert r1 > 0 and float(old_logs["r1"]) == r1  # same weights, same batch
    assert float((new_loss - old_loss).detach()) == pytest.approx(0.5 * (4.0 - 1.0) * r1, rel=1e-4)


# -- real PBT sweeps on Ray Tune -----------------------------------------------------------------

def _sweep(raw: dict, prepared: Path, features: Path, out: Path) -> dict:
    from genflow.launch import sweep as sweep_model

    return sweep_model("gan_ring8", config.validate(raw), prepared, features, out, log=quiet)


def _history(table: list[dict]) -> list[list[dict]]:
    return [[{k: v for k, v in change.items() if k != "applied"} for change in row["pbt_history"]] for row in table]


@pytest.mark.slow
def test_pbt_sweep_exploits_explores_records_and_reruns_the_same(ray_session, prepared_dir, features_dir, tmp_path):
    raw = with_pbt()
    raw["ray"]["storage_path"] = str(tmp_path / "storage")
    summary = _sweep(raw, prepared_dir, features_dir, tmp_path / "out")
    out = tmp_path / "out"
    table = pq.read_table(out / "trials.parquet").to_pylist()
    by_id = {row["trial_id"]: row for row in table}
    assert len(table) == 4 and summary["complete"] == 4 and summary["scheduler"] == "pbt"
    assert all(row["steps"] == 60 and row["history_step"] == [20, 40, 60] for row in table)
    exploits = [(row, change) for row in table for change in row["pbt_history"] if change["donor"] is not None]
    # quantile 0.5 of 4: the bottom 2 copy the top 2 at steps 20 and 40
    assert len(exploits) == summary["pbt"]["exploits"] == 4
    for row, change in exploits:
        donor = by_id[change["donor"]]
        assert change["step"] in (20, 40) and donor["trial_id"] != row["trial_id"]
        # the recipient loaded exactly the checkpoint the donor reported with its score at that step
        assert change["donor_state_sha256"] == donor["history_state_sha256"][donor["history_step"].index(change["step"])]
        applied = json.loads(change["applied"])  # read back from the running engine after the exploit
        assert applied["phases"] == ["D", "G"]
        assert applied["lr"] == [change["train.lr_d"], change["train.lr_g"]]
        assert applied["betas"] == [[change["train.beta1"], change["train.beta2"]]] * 2
        assert 1e-4 <= change["train.lr_g"] <= 1e-3 and change["train.beta1"] in (0.0, 0.5)
    assert any(json.loads(c["applied"])["lr"] != json.loads(r["pbt_history"][0]["applied"])["lr"] for r, c in exploits)
    for row in table:  # the first entry is the sampler's draw; config.<key> what the trial ended with
        first, last = row["pbt_history"][0], row["pbt_history"][-1]
        assert first["step"] == 0 and first["donor"] is None
        assert all(row[f"config.{key}"] == last[key] for key in ("width", "train.lr_g", "train.lr_d"))
    best = yaml.safe_load((out / "best_params.yaml").read_text())
    assert best["trial_id"] == summary["best_trial"] and summary["pbt"]["best_history"] == by_id[best["trial_id"]][
        "pbt_history"]
    assert "PBT: the values the best trial ended with" in (out / "best_params.yaml").read_text()
    for row in table:  # every trial's changes in the summary too
        assert [(c["step"], c["donor"], c["values"]["train.lr_g"]) for c in summary["pbt"]["histories"][row["trial_id"]]] \
            == [(c["step"], c["donor"], c["train.lr_g"]) for c in row["pbt_history"]]
    states = [json.loads(line).get("state") for line in (out / "study.journal").read_text().splitlines()]
    assert states.count(1) == 4  # every member told to Optuna as COMPLETE

    # the same seeded sweep again: the same decisions (synchronous rounds, seeded choices) and scores
    raw["ray"]["storage_path"] = str(tmp_path / "storage2")
    _sweep(raw, prepared_dir, features_dir, tmp_path / "again")
    again = pq.read_table(tmp_path / "again" / "trials.parquet").to_pylist()
    assert _history(again) == _history(table)
    assert [row["history_fid"] for row in again] == [row["history_fid"] for row in table]


@pytest.mark.slow
def test_a_killed_pbt_sweep_is_refused_on_rerun_keeping_its_record(ray_session, prepared_dir, features_dir,
                                                                   tmp_path):
    """A PBT population cannot be resumed (docs/sweeps.md): the rerun stops with exit code 2 and
    says why and what to do, and deletes nothing, neither the record nor the scores it holds."""
    raw = with_pbt(steps=400, report_every=20)
    raw["ray"]["storage_path"] = str(tmp_path / "storage")
    params_path = tmp_path / "params.yaml"
    params_path.write_text(yaml.safe_dump(raw))
    features = tmp_path / "models" / "featurenet"
    features.parent.mkdir()
    features.symlink_to(features_dir)
    address = ray_session.get_runtime_context().gcs_address

    first = sweep_stage(params_path, prepared_dir, features, tmp_path / "out", address)
    kill_when(first, lambda seen: sum("probe fid" in line for line in seen) >= 6, timeout=300)
    experiment = next((tmp_path / "storage").glob("sweep-gan_ring8-*"))
    recorded = sorted((experiment / "ledger").glob("trial_*.jsonl"))
    assert recorded and not (tmp_path / "out").exists()
    sizes = {path.name: path.stat().st_size for path in (experiment / "ledger").iterdir() if path.is_file()}

    second = sweep_stage(params_path, prepared_dir, features, tmp_path / "out", address)
    output, _ = second.communicate(timeout=300)
    assert second.returncode == 2, output[-3000:]
    assert "a PBT sweep was interrupted here" in output and "cannot be resumed" in output, output[-3000:]
    assert f"Delete {experiment} to run the sweep afresh" in output and "Traceback" not in output
    assert not (tmp_path / "out").exists()
    assert {path.name: path.stat().st_size for path in (experiment / "ledger").iterdir() if path.is_file()} == sizes


@pytest.mark.slow
def test_a_pbt_sweep_whose_members_all_ended_writes_its_outputs_without_training_again(
        ray_session, prepared_dir, features_dir, tmp_path):
    """Killed after its last member ended but before its outputs were written: the rerun is not
    refused (nothing is unfinished) and trains nothing (each member started in run 1 only)."""
    from genflow.integrations.ray_tune import run_sweep

    raw = with_pbt(trials=2, steps=40)
    raw["ray"]["storage_path"] = str(tmp_path / "storage")
    params = config.validate(raw)
    from genflow.train.worker_config import worker_config

    sweep = params.sweeps["gan_ring8"]
    base = worker_config("gan_ring8", params, prepared_dir, sweep.seed)
    experiment = run_sweep("gan_ring8", sweep, base, features_dir / "ring8", params.ray, log=quiet)
    ended = sorted(path.name for path in (experiment / "ledger").glob("*.done.json"))
    assert ended == ["trial_0001.done.json", "trial_0002.done.json"]

    from genflow.launch import sweep as sweep_model

    lines: list[str] = []
    summary = sweep_model("gan_ring8", params, prepared_dir, features_dir, tmp_path / "out", log=lines.append)
    assert any("2 trial(s) ended, 0 to run again" in line and "0 to propose" in line for line in lines), lines
    assert not any("finished at step" in line for line in lines), lines  # Tune never ran a trial
    table = pq.read_table(tmp_path / "out" / "trials.parquet").to_pylist()
    assert summary["complete"] == 2 and [row["runs"] for row in table] == [[1], [1]]
    assert all(row["history_step"] == [20, 40] for row in table)
