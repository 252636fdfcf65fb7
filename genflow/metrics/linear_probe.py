"""Linear probes: how well a frozen feature space separates the classes when labels are scarce.

A probe is a multinomial logistic regression on standardised features, fitted on a seeded,
stratified subset of the labelled training rows (1 %, 10 % or 100 % of them) and scored by its
accuracy on the test rows. The features never change: only the probe learns.

Why scikit-learn's L-BFGS and not a torch linear layer trained by SGD: the problem is convex and
L-BFGS solves it to its optimum, so the accuracy carries no learning rate, epoch count, batch
order or SGD noise, only the regularisation.

Why a fixed regularisation (C = 1 on standardised features) and not one chosen by cross-validation:
at 1 % of digits' labels there is about one row per class, nothing to validate on; choosing C
on the validation split's labels would use far more labels than the probe claims to have
(Oliver et al. 2018, "Realistic evaluation of deep semi-supervised learning algorithms").

Standardising (mean 0, variance 1 per feature, from the probe's own training rows) puts every
feature space on the same footing for the one C; a feature with no variance becomes 0.
"""
from __future__ import annotations

import warnings

import numpy as np

FRACTIONS = (0.01, 0.1, 1.0)   # shares of the training labels the probe sees
C = 1.0                         # inverse L2 strength of scikit-learn's LogisticRegression
MAX_ITER = 2000                 # L-BFGS iterations (digits' probes converge in a few hundred)
# subsets drawn per fraction below 1, their accuracies averaged: at 1 % of digits (a dozen rows)
# one draw's accuracy depends mostly on which dozen rows it got
SUBSET_DRAWS = 5


def stratified_subset(labels: np.ndarray, fraction: float, seed: int) -> np.ndarray:
    """Sorted row indices: ``round(fraction * n_c)`` rows of each class c (at least one), drawn
    without replacement by a generator seeded with ``seed``; every row when fraction >= 1."""
    if fraction >= 1.0:
        return np.arange(len(labels))
    rng = np.random.default_rng(seed)
    picked = []
    for label in np.unique(labels):
        rows = np.flatnonzero(labels == label)
        picked.append(rng.choice(rows, size=max(1, round(fraction * len(rows))), replace=False))
    return np.sort(np.concatenate(picked))


def fit_and_score(f_train: np.ndarray, y_train: np.ndarray, f_test: np.ndarray, y_test: np.ndarray) -> float:
    """Test accuracy of the logistic regression fitted on (f_train, y_train)."""
    from sklearn.linear_model import LogisticRegression
    from sklearn.preprocessing import StandardScaler

    if len(np.unique(y_train)) < 2:  # one class seen: the only answer the probe can give
        return float(np.mean(y_test == y_train[0]))
    from threadpoolctl import threadpool_limits

    # one BLAS thread: these problems are tiny (digits: 1,258 x 64), and a multi-threaded BLAS on a
    # busy 2-core machine made each fit 0.6-1 s instead of 0.02-0.06 s (measured)
    with threadpool_limits(limits=1), warnings.catch_warnings():
        warnings.simplefilter("ignore")  # a probe stopped at MAX_ITER is still a probe: its accuracy stands
        scaler = StandardScaler().fit(f_train)
        probe = LogisticRegression(C=C, max_iter=MAX_ITER).fit(scaler.transform(f_train), y_train)
        return float(np.mean(probe.predict(scaler.transform(f_test)) == y_test))


def probe_accuracy(f_train: np.ndarray, y_train: np.ndarray, f_test: np.ndarray, y_test: np.ndarray,
                   fraction: float, seed: int) -> float:
    """Mean test accuracy over SUBSET_DRAWS stratified subsets holding ``fraction`` of the training
    labels (one fit on all of them at fraction 1). Draw i uses seed ``seed * 1000 + i``, so every
    feature space probed with the same seed sees the same labelled rows."""
    draws = 1 if fraction >= 1.0 else SUBSET_DRAWS
    scores = []
    for draw in range(draws):
        rows = stratified_subset(y_train, fraction, seed * 1000 + draw)
        scores.append(fit_and_score(f_train[rows], y_train[rows], f_test, y_test))
    return float(np.mean(scores))


def metric_name(fraction: float) -> str:
    """The metric key of a label fraction: 0.01 -> probe_1pct."""
    return f"probe_{round(fraction * 100):d}pct"


def probe_metrics(f_train: np.ndarray, y_train: np.ndarray, f_test: np.ndarray, y_test: np.ndarray,
                  seed: int, fractions=FRACTIONS) -> dict[str, float]:
    """{probe_<p>pct: test accuracy} of one feature space at every label fraction."""
    f_train, f_test = (np.asarray(f, dtype=np.float64).reshape(len(f), -1) for f in (f_train, f_test))
    return {metric_name(fraction): probe_accuracy(f_train, y_train, f_test, y_test, fraction, seed)
            for fraction in fractions}


def protocol(seed: int, fractions=FRACTIONS) -> dict:
    """What a reader needs to reproduce the probe numbers."""
    return {"classifier": "multinomial logistic regression (scikit-learn LogisticRegression, L-BFGS)",
            "regularisation": f"L2, C = {C} on features standardised on the probe's training rows",
            "max_iter": MAX_ITER, "label_fractions": list(fractions),
            "subsets": f"stratified per class (at least one row of each), {SUBSET_DRAWS} draws per fraction "
                       "below 1, accuracies averaged; seeds seed * 1000 + draw",
            "seed": seed, "train_split": "train", "test_split": "test"}
