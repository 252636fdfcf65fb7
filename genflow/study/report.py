"""STAND-IN, replaced on merge by the study-report helper's genflow/study/report.py (issue 28).

It implements the interface the study pipeline calls (``ModelResult``, ``write_study_report``)
and writes ``study.json`` and a short ``study.md`` only: each model's sweep (trials with a
score, best val score) and its tuned and default runs' mean test score over seeds. The
expected-best curves, box plots, tuned-vs-default and the corrected comparison are the real
module's.
"""
from __future__ import annotations

import json
import math
from dataclasses import dataclass
from pathlib import Path

import pyarrow.parquet as pq

from genflow.io import write_json, write_text
from genflow.report.stats import per_seed_values


@dataclass(frozen=True)
class ModelResult:
    name: str                 # the models.<name> entry
    family: str               # gan / vae / ...
    trials: Path              # the model's sweep trials.parquet
    summary: Path             # the sweep's summary.json
    tuned: Path               # details.json of the winner retrained over the study's seeds, on test
    default: Path | None      # the same for the model's hand-set config (None: not run)


def _test_mean(details: Path | None, metric: str) -> float | None:
    if details is None:
        return None
    values = per_seed_values(json.loads(Path(details).read_text()), metric)
    return sum(values) / len(values) if values else None


def _model(result: ModelResult, metric: str) -> dict:
    scores = [row[metric] for row in pq.read_table(result.trials).to_pylist() if row.get(metric) is not None]
    summary = json.loads(Path(result.summary).read_text())
    return {"name": result.name, "family": result.family, "trial_scores": scores, "best_val": summary["best_value"],
            "best_overrides": summary["best_overrides"], "tuned_test": _test_mean(result.tuned, metric),
            "default_test": _test_mean(result.default, metric)}


def write_study_report(name: str, dataset: str, metric: str, mode: str, models: list[ModelResult], out: Path,
                       provenance: dict) -> dict:
    rows = [_model(result, metric) for result in models]
    summary = {"study": name, "dataset": dataset, "metric": metric, "mode": mode, "models": rows,
               "provenance": provenance, "stand_in": True}
    write_json(Path(out) / "study.json", summary)
    show = lambda v: "–" if v is None or (isinstance(v, float) and math.isnan(v)) else f"{v:.4g}"  # noqa: E731
    lines = [f"# Study {name} ({dataset}, {metric}, {'lower' if mode == 'min' else 'higher'} is better)", "",
             f"| model | trials scored | best val | tuned (test) | default (test) |", "|---|---|---|---|---|"]
    lines += [f"| {r['name']} | {len(r['trial_scores'])} | {show(r['best_val'])} | {show(r['tuned_test'])} | "
              f"{show(r['default_test'])} |" for r in rows]
    write_text(Path(out) / "study.md", "\n".join(lines) + "\n")
    return summary
