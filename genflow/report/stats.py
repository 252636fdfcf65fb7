"""Statistics of the comparison: mean ± 95 % CI over seeds, ranks, and a test against a baseline.

Seeds are the unit of replication: each seed is an independent training run evaluated by the
same protocol, so a model's score is a small sample (3–5 values) of its seed-to-seed spread.

* CI: Student's t interval, mean ± t(0.975, n-1) · s / √n (none with one seed).
* Test: Welch's unequal-variance t-test of each model against the baseline on the same
  dataset, two-sided, on per-seed values. It assumes roughly normal per-seed scores; with
  3–5 seeds only large effects reach p < 0.05, which is the honest answer at that budget.
* Rank: 1 = best among the models of the same dataset, by mean, ties sharing the lower rank.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

from scipy import stats

ALPHA = 0.05


@dataclass(frozen=True)
class Summary:
    mean: float
    ci: float | None      # half-width of the 95 % interval; None with fewer than two seeds
    n: int
    values: tuple[float, ...]


def summarize(values: list[float]) -> Summary | None:
    values = [float(v) for v in values if v is not None and math.isfinite(v)]
    if not values:
        return None
    n = len(values)
    mean = sum(values) / n
    if n < 2:
        return Summary(mean, None, n, tuple(values))
    sd = math.sqrt(sum((v - mean) ** 2 for v in values) / (n - 1))
    return Summary(mean, float(stats.t.ppf(1 - ALPHA / 2, n - 1)) * sd / math.sqrt(n), n, tuple(values))


def welch_p(a: Summary, b: Summary) -> float | None:
    """Two-sided p-value of Welch's t-test; None when either side has < 2 seeds."""
    if a.n < 2 or b.n < 2:
        return None
    if len(set(a.values)) == 1 and len(set(b.values)) == 1:  # no spread at all: t is undefined
        return 1.0 if a.values[0] == b.values[0] else 0.0
    return float(stats.ttest_ind(a.values, b.values, equal_var=False).pvalue)


def ranks(means: dict[str, float], better: str) -> dict[str, int]:
    """Competition ranks (1, 2, 2, 4) of ``means``; ``better`` is 'lower' or 'higher'."""
    sign = 1.0 if better == "lower" else -1.0
    ordered = sorted(means.values(), key=lambda v: sign * v)
    return {name: 1 + ordered.index(value) for name, value in means.items()}


def per_seed_values(metrics: dict[str, Any], key: str) -> list[float]:
    """One value per seed from an evaluate stage's ``per_seed`` block (or its single value)."""
    per_seed = metrics.get("per_seed") or {}
    values = [seed_metrics.get(key) for seed_metrics in per_seed.values()]
    values = [v for v in values if v is not None]
    if not values and metrics.get(key) is not None:
        values = [metrics[key]]
    return values


def format_summary(s: Summary | None, digits: int = 4) -> str:
    if s is None:
        return "–"
    if s.ci is None:
        return f"{s.mean:.{digits}g}"
    return f"{s.mean:.{digits}g} ± {s.ci:.2g}"


def format_p(p: float | None) -> str:
    if p is None:
        return "n/a"
    return "<0.001" if p < 0.001 else f"{p:.3f}"
