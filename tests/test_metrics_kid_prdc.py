"""KID, precision / recall / density / coverage, AUROC and ROC curves against hand-computed answers."""
from __future__ import annotations

import itertools

import numpy as np
import pytest
import torch
from sklearn.metrics import roc_auc_score, roc_curve as sklearn_roc_curve

from genflow import metrics
from genflow.metrics.kernel_distance import polynomial_mmd2
from genflow.metrics.manifolds import prdc_many
from genflow.metrics.ranking import auroc, roc_curve, roc_on_grid


def brute_force_mmd2(x: np.ndarray, y: np.ndarray) -> float:
    """The unbiased estimator written out term by term."""
    k = lambda a, b: (a @ b / x.shape[1] + 1) ** 3  # noqa: E731
    m, n = len(x), len(y)
    xx = sum(k(x[i], x[j]) for i, j in itertools.permutations(range(m), 2)) / (m * (m - 1))
    yy = sum(k(y[i], y[j]) for i, j in itertools.permutations(range(n), 2)) / (n * (n - 1))
    xy = sum(k(a, b) for a in x for b in y) / (m * n)
    return xx + yy - 2 * xy


def test_polynomial_mmd2_matches_the_estimator_term_by_term():
    rng = np.random.default_rng(0)
    x, y = rng.normal(size=(6, 3)), rng.normal(1.0, size=(5, 3))
    assert polynomial_mmd2(torch.from_numpy(x), torch.from_numpy(y)) == pytest.approx(brute_force_mmd2(x, y), rel=1e-12)


def test_kid_with_whole_sets_equals_the_estimator():
    rng = np.random.default_rng(1)
    x, y = rng.normal(size=(8, 2)), rng.normal(0.5, size=(8, 2))
    mean, std = metrics.kid(x, y, n_subsets=3, subset_size=8)  # a subset of all rows is the whole set
    # kid() takes Gram matrices in float32 (the cost of 2048-d features), hence 1e-5, not 1e-12
    assert mean == pytest.approx(brute_force_mmd2(x, y), rel=1e-5) and std == pytest.approx(0.0, abs=1e-9)


def test_kid_is_near_zero_for_one_distribution_and_grows_with_the_shift():
    rng = np.random.default_rng(2)
    real = rng.normal(size=(2000, 16))
    same, _ = metrics.kid(real, rng.normal(size=(2000, 16)), n_subsets=20, subset_size=500)
    small, _ = metrics.kid(real, rng.normal(0.3, size=(2000, 16)), n_subsets=20, subset_size=500)
    large, _ = metrics.kid(real, rng.normal(1.0, size=(2000, 16)), n_subsets=20, subset_size=500)
    assert abs(same) < 0.01 < small < large


def test_kid_is_deterministic_for_a_seed_and_accepts_torch():
    rng = np.random.default_rng(3)
    real, fake = rng.normal(size=(300, 4)), rng.normal(0.2, size=(300, 4))
    a = metrics.kid(real, fake, subset_size=100, seed=7)
    assert a == metrics.kid(torch.from_numpy(real), torch.from_numpy(fake), subset_size=100, seed=7)
    assert a != metrics.kid(real, fake, subset_size=100, seed=8)
    with pytest.raises(ValueError, match="dimensions differ"):
        metrics.kid(real, fake[:, :3])


def test_prdc_on_a_designed_line():
    real = np.arange(10, dtype=float)[:, None]  # 0..9: every 1-NN radius is 1
    fake = np.array([[0.5], [100.0]])  # 0.5 sits in the balls of 0 and 1; 100 in none
    # fake 1-NN radii are both 99.5: the ball around 0.5 holds every real point
    assert metrics.prdc(real, fake, k=1) == pytest.approx(
        {"precision": 0.5, "recall": 1.0, "density": 2 / (1 * 2), "coverage": 2 / 10})


def test_prdc_of_identical_sets():
    x = np.random.default_rng(4).normal(size=(200, 5))  # general position: no ties
    for k, values in prdc_many(x, x, ks=(3, 5)).items():
        assert (values["precision"], values["recall"], values["coverage"]) == (1.0, 1.0, 1.0)
        # every ball holds its centre and its k neighbours, so density is (k + 1) / k, less the
        # k-th neighbours that float32 rounding puts a hair outside the ball they define
        assert (k + 1) / k * 0.97 <= values["density"] <= (k + 1) / k


def test_prdc_of_far_apart_sets_and_of_collapse():
    rng = np.random.default_rng(5)
    real = rng.normal(size=(300, 2))
    assert metrics.prdc(real, real + 100.0, k=5) == pytest.approx(
        {"precision": 0.0, "recall": 0.0, "density": 0.0, "coverage": 0.0})
    collapsed = np.repeat(real[:1], 300, axis=0) + rng.normal(scale=1e-3, size=(300, 2))
    result = metrics.prdc(real, collapsed, k=5)
    assert result["precision"] == 1.0 and result["coverage"] < 0.05 and result["recall"] < 0.05


def test_prdc_blocks_agree_with_one_block(monkeypatch):
    rng = np.random.default_rng(6)
    real, fake = rng.normal(size=(500, 3)), rng.normal(0.3, size=(450, 3))
    whole = metrics.prdc(real, fake, k=3)
    monkeypatch.setattr("genflow.metrics.manifolds.BLOCK", 64)
    assert metrics.prdc(real, fake, k=3) == pytest.approx(whole)


def test_prdc_needs_more_samples_than_k():
    with pytest.raises(ValueError, match="more than k"):
        metrics.prdc(np.zeros((3, 2)), np.ones((10, 2)), k=5)


def test_auroc_designed_scores():
    assert auroc([3, 4, 1, 2], [1, 1, 0, 0]) == 1.0
    assert auroc([1, 2, 3, 4], [1, 1, 0, 0]) == 0.0
    assert auroc([7, 7, 7, 7], [1, 0, 1, 0]) == 0.5
    # positives 0.9, 0.4 vs negatives 0.5, 0.1, 0.4: 3 + (1 + 0.5) of 6 pairs
    assert auroc([0.9, 0.4, 0.5, 0.1, 0.4], [1, 1, 0, 0, 0]) == pytest.approx(4.5 / 6)


def test_auroc_matches_sklearn_and_rejects_bad_input():
    rng = np.random.default_rng(7)
    scores, labels = rng.integers(0, 20, size=500), rng.random(500) < 0.3  # many ties
    assert auroc(scores, labels) == pytest.approx(roc_auc_score(labels, scores), abs=1e-12)
    with pytest.raises(ValueError, match="at least one anomaly"):
        auroc([1, 2], [0, 0])
    with pytest.raises(ValueError, match="finite"):
        auroc([1, float("nan")], [0, 1])


@pytest.mark.parametrize("tied", [False, True])
def test_roc_points_are_monotone_and_their_area_is_the_auroc(tied):
    rng = np.random.default_rng(11)
    for _ in range(20):
        n = int(rng.integers(5, 400))
        scores = rng.integers(0, 8, size=n).astype(float) if tied else rng.normal(size=n)
        labels = rng.random(n) < rng.uniform(0.05, 0.5)
        if labels.all() or not labels.any():
            continue
        fpr, tpr = roc_curve(scores, labels)
        assert (fpr[0], tpr[0], fpr[-1], tpr[-1]) == (0.0, 0.0, 1.0, 1.0)
        assert (np.diff(fpr) >= 0).all() and (np.diff(tpr) >= 0).all()
        assert abs(np.trapezoid(tpr, fpr) - auroc(scores, labels)) <= 1e-6
        grid, grid_tpr = roc_on_grid(scores, labels, points=101)
        np.testing.assert_array_equal(grid, np.linspace(0, 1, 101))
        assert (np.diff(grid_tpr) >= 0).all() and 0 <= grid_tpr[0] and grid_tpr[-1] == 1.0
        # the grid's trapezoids miss the corners between its FPRs: at most half a grid step
        assert abs(np.trapezoid(grid_tpr, grid) - auroc(scores, labels)) <= 0.5 / 100 + 1e-12


def test_roc_on_grid_follows_the_curve():
    scores, labels = np.random.default_rng(12).normal(size=300), np.random.default_rng(13).random(300) < 0.3
    fpr, tpr = sklearn_roc_curve(labels, scores, drop_intermediate=False)[:2]
    grid, grid_tpr = roc_on_grid(scores, labels)
    for f, t in zip(grid, grid_tpr):  # the top of any vertical step at f, the segment's value otherwise
        at = tpr[fpr == f]
        assert t == pytest.approx(at.max() if at.size else np.interp(f, fpr, tpr), abs=1e-12)
    assert roc_on_grid([0.9, 0.8, 0.1], [1, 1, 0], points=3)[1].tolist() == [1.0, 1.0, 1.0]
    assert roc_on_grid([0.1, 0.2, 0.9], [1, 0, 0], points=3)[1].tolist() == [0.0, 0.0, 1.0]


def test_average_ranks_match_scipy():
    from scipy.stats import rankdata

    from genflow.metrics.ranking import average_ranks

    values = np.random.default_rng(8).integers(0, 7, size=300).astype(float)
    np.testing.assert_array_equal(average_ranks(values), rankdata(values))
