"""Optuna's own plots of a sweep (genflow.integrations.optuna_plots), drawn from a real journal
that Optuna itself wrote: which plots a study supports, the reasons for those it does not, and
pictures that are the same bytes when drawn twice (they are DVC outputs)."""
from __future__ import annotations

import json
from pathlib import Path

import optuna
from optuna.distributions import CategoricalDistribution, FloatDistribution
from optuna.trial import TrialState

from genflow.integrations.optuna_plots import PLOTS, draw_study_plots
from genflow.integrations.tune_ledger import journal_storage

SPACE = {"train.lr_g": FloatDistribution(1e-4, 1e-3, log=True), "width": CategoricalDistribution([8, 16]),
         "train.beta1": CategoricalDistribution([0.0, 0.5])}
PNG = b"\x89PNG\r\n\x1a\n"


def journal_with(path: Path, complete: int, pruned: int) -> Path:
    """A journal as a sweep leaves it: complete trials probed at 20, 40, 60; pruned ones stopped at 20."""
    study = optuna.create_study(study_name="genflow-s", storage=journal_storage(path), direction="minimize",
                                sampler=optuna.samplers.RandomSampler(seed=1))
    for index in range(complete + pruned):
        trial = study.ask(SPACE)
        steps = (20, 40, 60) if index < complete else (20,)
        for step in steps:
            trial.report(1.0 + index + 10.0 / step, step)
        if index < complete:
            study.tell(trial, 1.0 + index)
        else:
            study.tell(trial, state=TrialState.PRUNED)
    return path


def quiet(_line: str) -> None:
    pass


def test_a_sweep_with_complete_trials_gets_every_plot_and_the_importances(tmp_path):
    journal = journal_with(tmp_path / "study.journal", complete=5, pruned=3)
    summary = draw_study_plots(journal, "genflow-s", "fid", "min", tmp_path / "optuna", log=quiet)
    assert [d["plot"] for d in summary["drawn"]] == list(PLOTS) and summary["skipped"] == []
    assert (summary["trials"], summary["complete"], summary["pruned"], summary["failed"]) == (8, 5, 3, 0)
    assert set(summary["importances"]) == set(summary["varying_params"]) and summary["varying_params"]
    assert abs(sum(summary["importances"].values()) - 1.0) < 1e-4  # PED-ANOVA's are normalised
    for plot in PLOTS:
        assert (tmp_path / "optuna" / f"{plot}.png").read_bytes()[:8] == PNG
    assert json.loads((tmp_path / "optuna" / "plots.json").read_text()) == summary


def test_a_small_sweep_skips_what_it_cannot_show_and_says_why(tmp_path):
    """One complete trial: no importances, no parameter plots; the rungs are still drawn."""
    lines: list[str] = []
    journal = journal_with(tmp_path / "study.journal", complete=1, pruned=2)
    summary = draw_study_plots(journal, "genflow-s", "fid", "min", tmp_path / "optuna", log=lines.append)
    assert [d["plot"] for d in summary["drawn"]] == ["intermediate_values"]
    reasons = {s["plot"]: s["reason"] for s in summary["skipped"]}
    assert set(reasons) == set(PLOTS) - {"intermediate_values"}
    assert reasons["param_importances"] == "needs at least 2 complete trials, the sweep has 1"
    assert summary["importances"] == {}
    assert sorted(p.name for p in (tmp_path / "optuna").iterdir()) == ["intermediate_values.png", "plots.json"]
    assert "skipped param_importances (needs at least 2 complete trials, the sweep has 1)" in lines[0]


def test_parameters_that_never_varied_are_left_out(tmp_path):
    """Two complete trials with the same values: nothing to rank, so no importances or contours."""
    study = optuna.create_study(study_name="genflow-s", storage=journal_storage(tmp_path / "j"))
    for value in (2.0, 3.0):
        study.enqueue_trial({"width": 8})
        trial = study.ask({"width": CategoricalDistribution([8, 16])})
        trial.report(value, 10)
        study.tell(trial, value)
    summary = draw_study_plots(tmp_path / "j", "genflow-s", "fid", "min", tmp_path / "optuna", log=quiet)
    assert summary["varying_params"] == [] and summary["importances"] == {}
    assert {s["reason"] for s in summary["skipped"]} == {"no hyperparameter took two values among the complete trials"}


def test_the_pictures_are_the_same_bytes_when_drawn_again(tmp_path):
    journal = journal_with(tmp_path / "study.journal", complete=4, pruned=2)
    first = draw_study_plots(journal, "genflow-s", "fid", "min", tmp_path / "a", log=quiet)
    second = draw_study_plots(journal, "genflow-s", "fid", "min", tmp_path / "b", log=quiet)
    assert first == second
    for drawn in first["drawn"]:
        assert (tmp_path / "a" / drawn["file"]).read_bytes() == (tmp_path / "b" / drawn["file"]).read_bytes()


def test_the_report_shows_the_plots_drawn_and_only_those(tmp_path):
    from genflow.report.build import study_plots

    journal = journal_with(tmp_path / "study.journal", complete=1, pruned=1)
    draw_study_plots(journal, "genflow-s", "fid", "min", tmp_path / "sweeps" / "s" / "optuna", log=quiet)
    shown = study_plots(tmp_path / "sweeps" / "s")
    assert shown == [(f"sweep s (Optuna): {PLOTS['intermediate_values']}",
                      tmp_path / "sweeps" / "s" / "optuna" / "intermediate_values.png")]
    assert study_plots(tmp_path / "sweeps" / "older") == []  # a sweep from before these plots
