"""The numbers of a study: Dodge et al.'s expected best score, Lucic et al.'s spread, and
multiple-comparison corrections. Pure functions of plain sequences (numpy only).

* Expected best (Dodge et al. 2019, "Show Your Work"): with N trial scores drawn independently
  from the search space, the best of n trials drawn from their empirical distribution is the
  order statistic v_(i) with probability (i/N)^n - ((i-1)/N)^n (scores sorted worst first), so
  its expectation is exact, not simulated. n = 1 gives the mean score; n → ∞ tends to the best.
* The band: the same curve over bootstrap resamples of the N trials (percentile interval), i.e.
  how much the curve would move had the search drawn other trials.
* Spread (Lucic et al. 2018, "Are GANs Created Equal?"): median and quartiles of the trial
  scores, and the share of trials within 10 % of the best one: a model whose good settings are
  rare is sensitive to its hyperparameters.
* Holm (1979) controls the family-wise error rate; Benjamini–Hochberg (1995) the false discovery
  rate. Both return adjusted p-values in the input's order; NaN (no test) passes through and is
  not counted among the tests.
"""
from __future__ import annotations

from typing import Literal, Sequence

import numpy as np

Mode = Literal["min", "max"]
NEAR_BEST = 0.10  # Lucic's sensitivity: "within 10 % of the best score"


def _checked(scores: Sequence[float], mode: str) -> np.ndarray:
    if mode not in ("min", "max"):
        raise ValueError(f"mode: 'min' or 'max', got {mode!r}")
    values = np.asarray(scores, dtype=float)
    if values.ndim != 1 or values.size == 0:
        raise ValueError("scores: a non-empty sequence of numbers")
    if not np.all(np.isfinite(values)):
        raise ValueError("scores: every score must be finite (leave failed or unscored trials out)")
    return values


def _order_weights(n_trials: int) -> np.ndarray:
    """W[n-1, i-1] = P(the best of n draws is the i-th worst of N) = (i/N)^n - ((i-1)/N)^n."""
    i = np.arange(n_trials + 1) / n_trials
    n = np.arange(1, n_trials + 1)[:, None]
    return np.diff(i[None, :] ** n, axis=1)


def _worst_first(values: np.ndarray, mode: str) -> np.ndarray:
    # "max": the worst score is the lowest; "min": the highest (the mirror image)
    ordered = np.sort(values, axis=-1)
    return ordered if mode == "max" else ordered[..., ::-1]


def expected_best_curve(scores: Sequence[float], mode: Mode) -> np.ndarray:
    """Expected best score after n = 1..N trials, from the N trials' empirical distribution."""
    values = _checked(scores, mode)
    return _order_weights(values.size) @ _worst_first(values, mode)


def bootstrap_band(scores: Sequence[float], mode: Mode, reps: int = 1000, seed: int = 0,
                   level: float = 0.95) -> tuple[np.ndarray, np.ndarray]:
    """Lower and upper percentile band (``level``) of the curve over ``reps`` resamples of the trials."""
    values = _checked(scores, mode)
    if reps < 1 or not 0.0 < level < 1.0:
        raise ValueError(f"reps >= 1 and 0 < level < 1; got reps={reps}, level={level}")
    rng = np.random.default_rng(seed)
    resamples = values[rng.integers(0, values.size, size=(reps, values.size))]
    curves = _worst_first(resamples, mode) @ _order_weights(values.size).T  # one curve per row
    tail = 100.0 * (1.0 - level) / 2.0
    lower, upper = np.percentile(curves, [tail, 100.0 - tail], axis=0)
    return lower, upper


def spread(scores: Sequence[float], mode: Mode) -> dict[str, float]:
    """Median, quartiles, best and the share of trials within 10 % of the best (|s - best| <= 0.1 |best|)."""
    values = _checked(scores, mode)
    best = float(values.min() if mode == "min" else values.max())
    q25, median, q75 = np.percentile(values, [25, 50, 75])
    near = np.abs(values - best) <= NEAR_BEST * abs(best)
    return {"n": int(values.size), "best": best, "median": float(median), "q25": float(q25), "q75": float(q75),
            "iqr": float(q75 - q25), "near_best_share": float(near.mean())}


def _tested(pvalues: Sequence[float]) -> tuple[np.ndarray, np.ndarray]:
    p = np.asarray(pvalues, dtype=float)
    if p.ndim != 1:
        raise ValueError("pvalues: a flat sequence")
    if np.any((p < 0) | (p > 1)):
        raise ValueError("pvalues: every p-value must lie in [0, 1] (NaN for no test)")
    return p, np.flatnonzero(~np.isnan(p))


def holm(pvalues: Sequence[float]) -> np.ndarray:
    """Holm's step-down adjustment: p_(j) · (m - j + 1), made monotone, capped at 1."""
    p, tested = _tested(pvalues)
    out = np.full(p.shape, np.nan)
    order = tested[np.argsort(p[tested], kind="stable")]
    m = order.size
    scaled = p[order] * (m - np.arange(m))
    out[order] = np.minimum(np.maximum.accumulate(scaled), 1.0)
    return out


def benjamini_hochberg(pvalues: Sequence[float]) -> np.ndarray:
    """Benjamini–Hochberg's step-up adjustment: p_(j) · m / j, made monotone from the top, capped at 1."""
    p, tested = _tested(pvalues)
    out = np.full(p.shape, np.nan)
    order = tested[np.argsort(p[tested], kind="stable")]
    m = order.size
    scaled = p[order] * m / np.arange(1, m + 1)
    out[order] = np.minimum(np.minimum.accumulate(scaled[::-1])[::-1], 1.0)
    return out
