"""Known answers for the study's numbers: Dodge's expected best curve against brute-force
enumeration and simulation, its bootstrap band, Lucic's spread, Holm and Benjamini–Hochberg by hand
(and BH against scipy's)."""
from __future__ import annotations

import itertools

import numpy as np
import pytest
from scipy import stats

from genflow.study.analysis import benjamini_hochberg, bootstrap_band, expected_best_curve, holm, spread


def _enumerated(scores, n, pick):
    """E[best of n draws with replacement] by listing all N^n equally likely draws."""
    return np.mean([pick(draw) for draw in itertools.product(scores, repeat=n)])


@pytest.mark.parametrize("mode, pick", [("max", max), ("min", min)])
def test_expected_best_equals_enumeration_of_every_draw(mode, pick):
    scores = [0.7, 0.2, 0.9, 0.2, 0.5]  # a tie, unsorted
    curve = expected_best_curve(scores, mode)
    assert curve.shape == (5,)
    for n in range(1, 6):
        assert curve[n - 1] == pytest.approx(_enumerated(scores, n, pick), abs=1e-12)


def test_expected_best_matches_a_simulation_of_the_search():
    rng = np.random.default_rng(1)
    scores = rng.normal(30.0, 8.0, size=12)
    draws = rng.choice(scores, size=(200_000, 12))
    simulated = np.minimum.accumulate(draws, axis=1).mean(axis=0)  # best so far, n = 1..12
    assert np.allclose(expected_best_curve(scores, "min"), simulated, atol=0.05)


def test_expected_best_limits_monotone_and_mirrored():
    scores = np.random.default_rng(2).uniform(0, 10, size=40)
    up, down = expected_best_curve(scores, "max"), expected_best_curve(scores, "min")
    assert up[0] == pytest.approx(scores.mean()) and down[0] == pytest.approx(scores.mean())
    assert np.all(np.diff(up) > 0) and np.all(np.diff(down) < 0)
    assert up[-1] < scores.max() and scores.max() - up[-1] < 0.5 * (scores.max() - scores.mean())
    # "min" is "max" of the negated scores
    assert np.allclose(down, -expected_best_curve(-scores, "max"))
    # with many trials the curve reaches the best: N^n dominated by the top order statistic
    many = expected_best_curve(np.repeat(scores, 3), "max")
    assert scores.max() - many[-1] < scores.max() - up[-1]
    assert expected_best_curve([4.0], "max").tolist() == [4.0]


def test_bad_scores_are_refused():
    with pytest.raises(ValueError, match="non-empty"):
        expected_best_curve([], "max")
    with pytest.raises(ValueError, match="finite"):
        expected_best_curve([1.0, float("nan")], "min")
    with pytest.raises(ValueError, match="mode"):
        expected_best_curve([1.0], "lower")


def test_bootstrap_band_contains_the_curve_and_narrows_with_more_trials():
    rng = np.random.default_rng(3)
    population = rng.gamma(2.0, 10.0, size=10_000)  # FID-like: skewed, positive
    widths = {}
    for n_trials in (10, 80):
        scores = population[:n_trials]
        curve = expected_best_curve(scores, "min")
        lower, upper = bootstrap_band(scores, "min", reps=500, seed=0)
        assert lower.shape == upper.shape == curve.shape
        assert np.all(lower <= curve) and np.all(curve <= upper)
        assert np.all(lower < upper)
        widths[n_trials] = (upper - lower)[:10]  # the same n = 1..10 for both searches
    assert np.all(widths[80] < widths[10])
    # seeded: the same band twice; another level nests inside
    again = bootstrap_band(population[:10], "min", reps=500, seed=0)
    narrow = bootstrap_band(population[:10], "min", reps=500, seed=0, level=0.5)
    assert np.array_equal(again[0], bootstrap_band(population[:10], "min", reps=500, seed=0)[0])
    assert np.all(narrow[0] >= again[0]) and np.all(narrow[1] <= again[1])


def test_bootstrap_band_at_one_trial_is_the_percentile_interval_of_the_mean():
    scores = np.array([1.0, 2.0, 4.0, 8.0])
    lower, upper = bootstrap_band(scores, "max", reps=2000, seed=5)
    means = scores[np.random.default_rng(5).integers(0, 4, size=(2000, 4))].mean(axis=1)
    assert lower[0] == pytest.approx(np.percentile(means, 2.5))
    assert upper[0] == pytest.approx(np.percentile(means, 97.5))


def test_spread_by_hand():
    scores = [10.0, 10.5, 11.0, 12.0, 20.0, 40.0]
    got = spread(scores, "min")
    assert got["best"] == 10.0 and got["median"] == 11.5 and got["n"] == 6
    assert got["q25"] == pytest.approx(10.625) and got["q75"] == pytest.approx(18.0)
    assert got["near_best_share"] == pytest.approx(3 / 6)  # 10, 10.5, 11 are within 10 % of 10
    assert spread([100, 95, 89, 50], "max")["near_best_share"] == pytest.approx(2 / 4)


def test_holm_by_hand_with_a_missing_test():
    p = [0.01, 0.04, float("nan"), 0.03, 0.2]
    # sorted 0.01, 0.03, 0.04, 0.2 (m = 4): x4, x3, x2, x1 = 0.04, 0.09, 0.08, 0.2; step-down max: 0.04, 0.09, 0.09, 0.2
    got = holm(p)
    assert np.isnan(got[2])
    assert np.allclose(got[[0, 1, 3, 4]], [0.04, 0.09, 0.09, 0.2])
    assert holm([0.5, 0.6]).tolist() == [1.0, 1.0]  # capped at 1
    assert holm([]).size == 0


def test_benjamini_hochberg_by_hand_and_against_scipy():
    p = [0.01, 0.04, float("nan"), 0.03, 0.2]
    # sorted 0.01, 0.03, 0.04, 0.2: x4/1, x4/2, x4/3, x4/4 = 0.04, 0.06, 0.0533, 0.2;
    # step-up (running minimum from the top): 0.04, 0.0533, 0.0533, 0.2
    got = benjamini_hochberg(p)
    assert np.isnan(got[2])
    assert np.allclose(got[[0, 1, 3, 4]], [0.04, 0.16 / 3, 0.16 / 3, 0.2])
    many = np.random.default_rng(4).uniform(0, 0.2, size=25)
    assert np.allclose(benjamini_hochberg(many), stats.false_discovery_control(many, method="bh"))
    assert np.all(holm(many) >= benjamini_hochberg(many))  # FWER control is the stricter one


def test_bad_pvalues_are_refused():
    with pytest.raises(ValueError, match=r"\[0, 1\]"):
        holm([0.2, 1.5])
