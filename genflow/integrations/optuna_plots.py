"""Optuna's own analysis plots of a finished sweep, drawn from its journal into ``sweeps/<name>/optuna/``.

genflow's ``best_so_far.png`` and ``scores.png`` say how good the sweep got; these say why:
which hyperparameter mattered (importances), how the trials went through ASHA's rungs
(intermediate values), and how parameters and score go together (parallel coordinates,
slices, contours). They are Optuna's ``optuna.visualization.matplotlib`` functions run on the
study genflow already keeps, saved as PNGs (no plotly), with ``plots.json`` listing what was
drawn, what was not and why, and the importances as numbers.

Only COMPLETE trials (trained to the sweep's ``steps``) carry a final score in Optuna's sense:
the importances, parallel coordinates, slices and contours are drawn from them alone; an
ASHA-stopped (PRUNED) trial shows in the intermediate values. A small sweep may have too few
complete trials, or parameters that took one value only: that plot is skipped with its reason
rather than drawn empty or failing the stage.
"""
from __future__ import annotations

import warnings
from pathlib import Path
from typing import Any, Callable

import numpy as np
import optuna
from optuna.trial import FrozenTrial, TrialState
from optuna.visualization import matplotlib as optuna_matplotlib

from genflow.integrations.tune_ledger import journal_storage
from genflow.io import write_json

CONTOUR_MAX_PARAMS = 4  # a contour grid is n x n panels: the most important few are readable

# file stem -> what the picture shows (the report's caption, docs/sweeps.md's table)
PLOTS = {
    "param_importances": "how much of the score's variation each hyperparameter explains (PED-ANOVA, "
                         "Optuna's default evaluator, over the complete trials)",
    "intermediate_values": "every trial's probe score against the step: ASHA's rungs, and where it stopped trials",
    "parallel_coordinate": "each complete trial as a line through its hyperparameters to its score",
    "slice": "the score against each hyperparameter, one point per complete trial",
    "contour": "the score over pairs of the most important hyperparameters, interpolated between complete trials",
}


def varying_params(trials: list[FrozenTrial]) -> list[str]:
    """The searched keys that took at least two values among ``trials``, sorted."""
    seen: dict[str, set[str]] = {}
    for trial in trials:
        for key, value in trial.params.items():
            seen.setdefault(key, set()).add(repr(value))
    return sorted(key for key, values in seen.items() if len(values) > 1)


def skip_reason(plot: str, trials: list[FrozenTrial], complete: list[FrozenTrial], varying: list[str]) -> str | None:
    """Why ``plot`` would say nothing about this study (None: draw it)."""
    if plot == "intermediate_values":
        return None if any(t.intermediate_values for t in trials) else "no trial reported a probe score"
    if len(complete) < 2:
        return f"needs at least 2 complete trials, the sweep has {len(complete)}"
    if not varying:
        return "no hyperparameter took two values among the complete trials"
    if plot == "contour" and len(varying) < 2:
        return f"needs 2 hyperparameters that vary among the complete trials, only {varying[0]} does"
    return None


def importances(study: optuna.Study, varying: list[str]) -> dict[str, float]:
    """PED-ANOVA importances (deterministic: no random forest), most important first."""
    found = optuna.importance.get_param_importances(study, params=varying)
    return {key: round(float(value), 6) for key, value in found.items()}


def _drawers(study: optuna.Study, varying: list[str], ranked: list[str], target: str) -> dict[str, Callable]:
    contour_params = (ranked or varying)[:CONTOUR_MAX_PARAMS]
    return {
        "param_importances": lambda: optuna_matplotlib.plot_param_importances(study, params=varying,
                                                                              target_name=target),
        "intermediate_values": lambda: optuna_matplotlib.plot_intermediate_values(study),
        "parallel_coordinate": lambda: optuna_matplotlib.plot_parallel_coordinate(study, params=varying,
                                                                                  target_name=target),
        "slice": lambda: optuna_matplotlib.plot_slice(study, params=varying, target_name=target),
        "contour": lambda: optuna_matplotlib.plot_contour(study, params=contour_params, target_name=target),
    }


def _save(axes, path: Path) -> None:
    """Save the figure Optuna drew on (one Axes, or an array of them), sized to its panels."""
    from genflow.evaluate.pictures import pyplot

    panels = np.asarray(axes, dtype=object)
    figure = panels.flat[0].figure
    rows, cols = panels.shape if panels.ndim == 2 else (1, max(panels.size, 1))
    figure.set_size_inches(max(7.0, 3.2 * cols), max(4.5, 3.0 * rows))
    # bbox "tight" rather than tight_layout, which a colour bar's axes refuse
    figure.savefig(path, format="png", dpi=100, bbox_inches="tight", metadata={"Software": None})  # no version stamp
    pyplot().close(figure)


def draw_study_plots(journal: str | Path, study_name: str, metric: str, mode: str, out: str | Path,
                     log=print) -> dict[str, Any]:
    """Draw Optuna's plots of the study in ``journal`` into ``out`` (PNGs + plots.json); return plots.json."""
    from genflow.evaluate.pictures import pyplot

    pyplot()  # Agg before Optuna imports pyplot
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    study = optuna.load_study(study_name=study_name, storage=journal_storage(journal))
    trials = study.get_trials(deepcopy=False)
    complete = study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,))
    varying = varying_params(complete)
    ranked = _ranked(study, trials, complete, varying)
    target = f"{metric} ({'lower' if mode == 'min' else 'higher'} is better)"
    drawn, skipped = [], []
    for plot, draw in _drawers(study, varying, list(ranked), target).items():
        reason = skip_reason(plot, trials, complete, varying) or _draw(draw, out / f"{plot}.png")
        if reason is None:
            drawn.append({"file": f"{plot}.png", "plot": plot, "shows": PLOTS[plot]})
        else:
            skipped.append({"plot": plot, "reason": reason})
    states = [t.state for t in trials]
    summary = {"study": study_name, "metric": metric, "mode": mode, "trials": len(trials),
               "complete": len(complete), "pruned": states.count(TrialState.PRUNED),
               "failed": states.count(TrialState.FAIL), "varying_params": varying, "importances": ranked,
               "drawn": drawn, "skipped": skipped}
    write_json(out / "plots.json", summary)
    log(f"Optuna plots: {', '.join(d['plot'] for d in drawn) or 'none'}"
        + "".join(f"; skipped {s['plot']} ({s['reason']})" for s in skipped))
    return summary


def _ranked(study: optuna.Study, trials, complete, varying: list[str]) -> dict[str, float]:
    """The importances when the study supports them ({} otherwise, or if Optuna fails on them)."""
    if skip_reason("param_importances", trials, complete, varying) is not None:
        return {}
    try:
        return _quietly(lambda: importances(study, varying))
    except Exception:  # noqa: BLE001  (the plot's own attempt then records the error)
        return {}


def _draw(draw: Callable, path: Path) -> str | None:
    """Draw and save one plot; an error of Optuna's plotting is that plot's skip reason (logged
    and in plots.json): the sweep's results are worth more than one of its pictures."""
    try:
        _quietly(lambda: _save(draw(), path))
    except Exception as exc:  # noqa: BLE001
        from genflow.evaluate.pictures import pyplot

        pyplot().close("all")
        path.unlink(missing_ok=True)
        return f"Optuna failed to draw it: {type(exc).__name__}: {exc}"
    return None


def _quietly(action: Callable[[], Any]) -> Any:
    """Run a plot without Optuna's 'experimental' warnings and its logger's chatter (restored after)."""
    verbosity = optuna.logging.get_verbosity()
    optuna.logging.set_verbosity(optuna.logging.ERROR)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
            return action()
    finally:
        optuna.logging.set_verbosity(verbosity)
