"""The study report: every model tuned with the same search budget, then compared (issue 28).

``write_study_report`` reads each model's sweep (trials.parquet, summary.json) and the evaluate
stage's details.json of its tuned config (and of its hand-set one) retrained over the study's
seeds, and writes into ``out/``:

* ``study.json``  every figure below, with the provenance (code revision, params fingerprint, the
  inputs' sha256): ``budget`` (trials × steps, search, scheduler, seeds, and whether every model
  had the same), ``models`` (per model in the study's order: trial counts, scores and statuses,
  ``expected_best`` with its ``band``, ``spread``), ``tuned`` (test score over seeds),
  ``comparison`` (the winner, every (model, metric) row with p, ``p_holm``, ``p_bh``),
  ``tuned_vs_default`` (rows, and the hand-set roster's ranking before and after), ``caveats``;
* ``study.md``  readable alone (genflow.study.markdown);
* ``expected_best.png``, ``sensitivity.png``, ``tuned_vs_default.png``, ``comparison.png``
  (genflow.study.plots).

The trial scores are every trial's last val probe, failed trials left out; an ASHA-stopped
trial's score is from fewer steps, and the report says how many there were.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from genflow.errors import GenflowError
from genflow.io import code_revision, sha256_file, write_json, write_text
from genflow.metrics import catalog
from genflow.report import plots as report_plots
from genflow.report.stats import per_seed_values, summarize
from genflow.study import analysis, caveats, markdown, plots
from genflow.study.comparison import final_comparison, summary_json, tuned_vs_default
from genflow.study.inputs import read_details, read_summary, read_trials, seed_summary, seeds

BAND = {"reps": 1000, "seed": 0, "level": 0.95}  # the bootstrap band of the expected best curve
PICTURES = ("expected_best.png", "sensitivity.png", "tuned_vs_default.png", "comparison.png")


@dataclass(frozen=True)
class ModelResult:
    name: str                 # the models.<name> entry
    family: str               # gan / vae / ...
    trials: Path              # the model's sweep trials.parquet (genflow.sweep.results.trials_table format)
    summary: Path             # the sweep's summary.json
    tuned: Path               # metrics/<...>.details.json of the best config retrained over the study's seeds, on test
    default: Path | None      # the same for the model's hand-set config from params.yaml (None: not run)


def _check(metric: str, mode: str, models: list[ModelResult]) -> None:
    if mode not in ("min", "max"):
        raise GenflowError(f"study metric mode: 'min' or 'max', got {mode!r}")
    known = catalog.BY_NAME.get(metric)
    if known is not None and (known.better == "lower") != (mode == "min"):
        raise GenflowError(f"study metric {metric}: {known.better} is better, so its mode is "
                           f"{'min' if known.better == 'lower' else 'max'}, not {mode!r}")
    names = [m.name for m in models]
    if not names or len(set(names)) != len(names):
        raise GenflowError(f"study models: one or more, each once; got {names}")


def _search(model: ModelResult, metric: str, mode: str) -> dict[str, Any]:
    """One model's sweep: its budget, Dodge's curve with its band, Lucic's spread."""
    summary, trials = read_summary(model.summary, metric, mode), read_trials(model.trials, metric)
    curve = analysis.expected_best_curve(trials.scores, mode)
    lower, upper = analysis.bootstrap_band(trials.scores, mode, **BAND)
    return {
        "family": model.family, "trials": trials.total, "scored": len(trials.scores),
        "complete": trials.statuses.count("complete"), "stopped": trials.statuses.count("stopped"),
        "failed": trials.total - len(trials.scores), "steps_per_trial": max(trials.steps),
        "search": summary["search"], "scheduler": summary["scheduler"],
        "best_overrides": summary.get("best_overrides"), "best_trial": summary.get("best_trial"),
        "scores": list(trials.scores), "statuses": list(trials.statuses),
        "expected_best": curve.tolist(), "band": {"lower": lower.tolist(), "upper": upper.tolist()},
        "spread": analysis.spread(trials.scores, mode),
    }


def _budget(searches: dict[str, dict[str, Any]], tuned: dict[str, dict[str, Any]]) -> dict[str, Any]:
    """The study's budget, and whether every model had the same one (trials × steps, search, seeds)."""
    per_model = {name: (s["trials"], s["steps_per_trial"], s["search"], s["scheduler"], tuple(seeds(tuned[name])))
                 for name, s in searches.items()}
    trials, steps, search, scheduler, seed_list = next(iter(per_model.values()))
    return {"trials": trials, "steps_per_trial": steps, "search": search, "scheduler": scheduler,
            "seeds": list(seed_list), "equal": len(set(per_model.values())) == 1,
            "per_model": {name: dict(zip(("trials", "steps_per_trial", "search", "scheduler", "seeds"),
                                         (*b[:4], list(b[4])))) for name, b in per_model.items()}}


def _inputs(models: list[ModelResult]) -> dict[str, dict[str, str | None]]:
    return {m.name: {key: None if path is None else sha256_file(path)
                     for key, path in (("trials", m.trials), ("summary", m.summary), ("tuned", m.tuned),
                                       ("default", m.default))} for m in models}


def _draw(study: dict[str, Any], tuned: dict[str, dict[str, Any]], out: Path) -> None:
    metric, mode, models = study["metric"], study["mode"], {m["name"]: m for m in study["models"]}
    curves = {n: tuple(np.asarray(v, dtype=float) for v in (m["expected_best"], m["band"]["lower"], m["band"]["upper"]))
              for n, m in models.items()}
    plots.expected_best(curves, metric, mode, BAND["level"], out / "expected_best.png")
    plots.sensitivity({n: (m["scores"], m["statuses"]) for n, m in models.items()}, metric, mode,
                      out / "sensitivity.png")
    pairs = {row["model"]: (_summary(row["default"]), _summary(row["tuned"]))
             for row in study["tuned_vs_default"]["rows"]}
    plots.tuned_vs_default(pairs, metric, mode, out / "tuned_vs_default.png")
    final = study["comparison"]
    panels = []
    for name in final["metrics"]:
        entry = catalog.BY_NAME.get(name)
        floor = tuned[final["winner"]].get(f"{name}_floor")
        panels.append((entry.label if entry else name, entry.better if entry else "", {
            model: summarize(per_seed_values(tuned[model], name)) for model in final["order"]},
            None if floor is None else (floor, "real data (floor)")))
    report_plots.metric_bars(f"study {study['study']}: tuned configs retrained on {study['dataset']}, test split "
                             "(mean, 95 % CI)", final["order"], panels, out / "comparison.png")


def _summary(body: dict[str, Any] | None):
    return None if body is None else summarize(body["values"])


def write_study_report(name: str, dataset: str, metric: str, mode: str, models: list[ModelResult],
                       out: Path, provenance: dict) -> dict:
    """Write the study's report into ``out`` (a directory the caller makes atomically); return study.json's body."""
    _check(metric, mode, models)
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    searches = {m.name: _search(m, metric, mode) for m in models}
    tuned = {m.name: read_details(m.tuned) for m in models}
    default = {m.name: None if m.default is None else read_details(m.default) for m in models}
    on_metric = {m.name: seed_summary(tuned[m.name], metric, m.tuned) for m in models}
    defaults = {m.name: None if m.default is None else seed_summary(default[m.name], metric, m.default) for m in models}
    study = {
        "study": name, "dataset": dataset, "metric": metric, "mode": mode,
        "budget": _budget(searches, tuned),
        "protocol": {"scores": "each trial's last val probe; failed and unscored trials left out",
                     "band": BAND, "near_best": analysis.NEAR_BEST, "split": "test"},
        "models": [{"name": n, **s} for n, s in searches.items()],  # in the study's order
        "tuned": {n: summary_json(s) for n, s in on_metric.items()},
        "comparison": final_comparison(tuned, metric, mode),
        "tuned_vs_default": tuned_vs_default(on_metric, defaults, mode),
        "pictures": list(PICTURES),
        "provenance": {"code_revision": code_revision(), **provenance, "inputs": _inputs(models)},
    }
    study["caveats"] = caveats.lines(study)
    _draw(study, tuned, out)
    write_json(out / "study.json", study)
    write_text(out / "study.md", markdown.render(study))
    return study
