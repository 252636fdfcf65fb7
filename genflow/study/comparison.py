"""The study's two comparisons on the test split, over the retrained seeds.

* Final: the study's winner is the model whose tuned config has the best mean of the study's
  metric. Every other model is tested against it (Welch over seeds, genflow.report.stats) on
  every headline metric the winner has (genflow.metrics.catalog), and all those (model, metric)
  p-values are adjusted together: Holm (family-wise error) decides what the report calls a
  significant difference; Benjamini–Hochberg (false discovery rate) is listed beside it.
* Tuned vs default: per model, its hand-set config of params.yaml against its tuned one on the
  study's metric (Welch, Holm over the models), and whether the hand-set roster's ranking
  survives the tuning.
"""
from __future__ import annotations

import math
from typing import Any

from genflow.metrics import catalog
from genflow.report.stats import ALPHA, Summary, per_seed_values, summarize, welch_p
from genflow.study.analysis import benjamini_hochberg, holm


def summary_json(s: Summary | None) -> dict[str, Any] | None:
    if s is None:
        return None
    return {"mean": s.mean, "ci": s.ci, "n": s.n, "values": list(s.values)}


def _key(s: Summary, mode: str) -> float:
    return s.mean if mode == "min" else -s.mean


def ranking(summaries: dict[str, Summary], mode: str) -> list[str]:
    """Model names, best mean first (ties by name)."""
    return sorted(summaries, key=lambda name: (_key(summaries[name], mode), name))


def _none_if_nan(value: float) -> float | None:
    return None if math.isnan(value) else float(value)


def _adjusted(rows: list[dict[str, Any]]) -> None:
    """Holm and BH over the rows' p-values (a row without a test keeps None)."""
    raw = [math.nan if row["p"] is None else row["p"] for row in rows]
    for row, p_holm, p_bh in zip(rows, holm(raw), benjamini_hochberg(raw)):
        row["p_holm"], row["p_bh"] = _none_if_nan(p_holm), _none_if_nan(p_bh)
        row["significant"] = row["p_holm"] is not None and row["p_holm"] < ALPHA


def headline_metrics(details: dict[str, Any], metric: str) -> list[str]:
    """The study's metric first, then every other headline metric of the catalog ``details`` has."""
    others = [m.name for m in catalog.METRICS if m.headline and m.name != metric and per_seed_values(details, m.name)]
    return [metric, *others]


def final_comparison(tuned: dict[str, dict[str, Any]], metric: str, mode: str) -> dict[str, Any]:
    """``tuned``: model -> its tuned details.json. The winner, and every model against it."""
    on_metric = {name: summarize(per_seed_values(details, metric)) for name, details in tuned.items()}
    order = ranking({n: s for n, s in on_metric.items() if s is not None}, mode)
    winner = order[0]
    metrics = headline_metrics(tuned[winner], metric)
    rows = []
    for name in metrics:
        best = summarize(per_seed_values(tuned[winner], name))
        for model in order:
            s = summarize(per_seed_values(tuned[model], name))
            if s is None:
                continue
            p = None if model == winner else welch_p(s, best)
            rows.append({"model": model, "metric": name, **summary_json(s), "p": p})
    _adjusted([row for row in rows if row["model"] != winner])
    for row in rows:  # the winner's rows: the reference, not a test
        row.setdefault("p_holm", None), row.setdefault("p_bh", None), row.setdefault("significant", False)
    return {"winner": winner, "order": order, "metrics": metrics, "alpha": ALPHA,
            "test": "Welch's t-test over seeds against the winner, two-sided",
            "correction": "Holm over every (model, metric) pair; Benjamini-Hochberg listed", "rows": rows}


def tuned_vs_default(tuned: dict[str, Summary], default: dict[str, Summary | None], mode: str) -> dict[str, Any]:
    """Per model: hand-set vs tuned on the study's metric; the hand-set roster's ranking before and after."""
    rows = []
    for model, t in tuned.items():
        d = default.get(model)
        better = None if d is None else _key(t, mode) < _key(d, mode)
        rows.append({"model": model, "default": summary_json(d), "tuned": summary_json(t),
                     "p": None if d is None else welch_p(t, d), "tuned_better": better})
    _adjusted(rows)
    roster = [m for m in tuned if default.get(m) is not None]
    before = ranking({m: default[m] for m in roster}, mode)
    after = ranking({m: tuned[m] for m in roster}, mode)
    return {"rows": rows, "ranking": {"default": before, "tuned": after,
                                      "changed": before != after if len(roster) > 1 else None}}
