"""AUROC for anomaly scores (the Mann-Whitney U statistic, ties counted as one half) and the
ROC curve it is the area under."""
from __future__ import annotations

import numpy as np


def average_ranks(values: np.ndarray) -> np.ndarray:
    """1-based ranks, ties sharing their average rank (scipy's rankdata, without importing
    scipy.stats, which costs ~1 s in every evaluate stage)."""
    order = np.argsort(values, kind="mergesort")
    ordered = values[order]
    starts = np.flatnonzero(np.r_[True, ordered[1:] != ordered[:-1]])
    ends = np.r_[starts[1:], len(values)]  # one past each run of ties
    ranks = np.empty(len(values), dtype=np.float64)
    ranks[order] = np.repeat((starts + ends + 1) / 2.0, ends - starts)
    return ranks


def _checked(scores, is_anomaly) -> tuple[np.ndarray, np.ndarray]:
    scores, positive = np.asarray(scores, dtype=np.float64).ravel(), np.asarray(is_anomaly, dtype=bool).ravel()
    if scores.shape != positive.shape:
        raise ValueError(f"{scores.size} scores for {positive.size} labels")
    if positive.all() or not positive.any():
        raise ValueError("AUROC needs at least one anomaly and one normal sample")
    if not np.isfinite(scores).all():
        raise ValueError("anomaly scores must be finite")
    return scores, positive


def auroc(scores, is_anomaly) -> float:
    """Probability that a random anomaly scores higher than a random normal sample."""
    scores, positive = _checked(scores, is_anomaly)
    n_pos, n_neg = int(positive.sum()), int((~positive).sum())
    ranks = average_ranks(scores)
    return float((ranks[positive].sum() - n_pos * (n_pos + 1) / 2) / (n_pos * n_neg))


def roc_curve(scores, is_anomaly) -> tuple[np.ndarray, np.ndarray]:
    """The empirical ROC curve's vertices (FPR, TPR) from (0, 0) to (1, 1), one per distinct
    score, highest first. Tied scores make one diagonal step, so the trapezoid area under the
    vertices is exactly :func:`auroc` (ties counted as one half)."""
    scores, positive = _checked(scores, is_anomaly)
    order = np.argsort(-scores, kind="mergesort")
    ordered, hits = scores[order], positive[order]
    last_of_tie = np.r_[ordered[1:] != ordered[:-1], True]
    tp, fp = np.cumsum(hits)[last_of_tie], np.cumsum(~hits)[last_of_tie]
    return np.r_[0, fp] / fp[-1], np.r_[0, tp] / tp[-1]


def roc_on_grid(scores, is_anomaly, points: int = 101) -> tuple[np.ndarray, np.ndarray]:
    """The ROC curve's TPR at ``points`` evenly spaced FPRs (0 .. 1): a fixed size, so seeds and
    models average point by point. Between vertices the curve is linear; at the FPR of a
    vertical step the TPR is the step's top. The trapezoid area under the grid is within
    0.5 / (points - 1) of :func:`auroc`."""
    fpr, tpr = roc_curve(scores, is_anomaly)
    grid = np.linspace(0.0, 1.0, points)
    left = np.searchsorted(fpr, grid, side="right") - 1  # the last vertex at or before each FPR
    right = np.minimum(left + 1, len(fpr) - 1)
    width = fpr[right] - fpr[left]  # > 0 except past the last vertex, at FPR 1
    slope = np.divide(tpr[right] - tpr[left], width, out=np.zeros_like(width), where=width > 0)
    return grid, tpr[left] + (grid - fpr[left]) * slope
