"""AUROC for anomaly scores: the Mann-Whitney U statistic, ties counted as one half."""
from __future__ import annotations

import numpy as np
from scipy.stats import rankdata


def auroc(scores, is_anomaly) -> float:
    """Probability that a random anomaly scores higher than a random normal sample."""
    scores, positive = np.asarray(scores, dtype=np.float64).ravel(), np.asarray(is_anomaly, dtype=bool).ravel()
    if scores.shape != positive.shape:
        raise ValueError(f"{scores.size} scores for {positive.size} labels")
    n_pos, n_neg = int(positive.sum()), int((~positive).sum())
    if n_pos == 0 or n_neg == 0:
        raise ValueError("AUROC needs at least one anomaly and one normal sample")
    if not np.isfinite(scores).all():
        raise ValueError("anomaly scores must be finite")
    ranks = rankdata(scores)  # average ranks for ties
    return float((ranks[positive].sum() - n_pos * (n_pos + 1) / 2) / (n_pos * n_neg))
