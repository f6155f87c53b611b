"""The numpy scorers against scikit-learn: the model files hold arrays only, so the scorer re-implements each
estimator's score_samples, and these tests hold it to scikit-learn's own numbers."""
from __future__ import annotations

import numpy as np
import pytest
from sklearn.ensemble import IsolationForest
from sklearn.neighbors import LocalOutlierFactor

from ids.detect.ml.models import Scorer, average_path_length, exp2_neg, fit, pair_stats, robust_stats


def data(seed=1, n=600, f=8):
    rng = np.random.default_rng(seed)
    X = rng.normal(size=(n, f)) * np.arange(1, f + 1)
    X[:, 0] = np.round(X[:, 0])  # ties and repeated values, as counts give
    X[:, 1] = 0.0  # a constant column, as never-seen counts are in training
    T = rng.normal(size=(300, f)) * np.arange(1, f + 1) * 1.5
    return X, T


def stats_for(X):
    floors = np.full(X.shape[1], 0.1)
    st = robust_stats(X, floors)
    ps = pair_stats(X, np.zeros(len(X), dtype=np.int64), 1, floors)
    return st, ps


def test_exp2_neg_matches_power_to_an_ulp():
    y = np.concatenate([[0.0, 0.5, 1.0, 1e-12, 53.0], np.linspace(0, 3, 10001), np.random.default_rng(0).uniform(0, 60, 10000)])
    got = exp2_neg(y)
    want = 2.0 ** -y
    assert got[0] == 1.0 and got[2] == 0.5 and got[4] == 2.0 ** -53
    assert np.all(np.abs(got - want) <= 2 * np.spacing(want))


def test_average_path_length_edges():
    assert list(average_path_length([0, 1, 2])) == [0.0, 0.0, 1.0]
    assert average_path_length([256])[0] == pytest.approx(2 * (np.log(255) + np.euler_gamma) - 2 * 255 / 256)


def test_iforest_scorer_equals_sklearn():
    X, T = data()
    st, ps = stats_for(X)
    arrays, params = fit("iforest", X, 3, st, ps, guard_weight=0.0)
    ours = Scorer("iforest", arrays, params, st, ps).score(T, np.zeros(len(T), dtype=np.int64))
    ref = IsolationForest(n_estimators=params["trees"], max_samples="auto", random_state=3, n_jobs=1).fit(X)
    assert np.allclose(ours, -ref.score_samples(T), rtol=1e-13, atol=0)
    # same trees: the leaf each row reaches is sklearn's, so the ranking is identical
    assert (np.argsort(ours, kind="stable") == np.argsort(-ref.score_samples(T), kind="stable")).mean() > 0.99


def test_iforest_range_guard_adds_weight_times_excess():
    X, _ = data()
    st, ps = stats_for(X)
    arrays, params = fit("iforest", X, 3, st, ps, guard_weight=0.05)
    s = Scorer("iforest", arrays, params, st, ps)
    inside = X[:5].copy()
    outside = inside.copy()
    outside[:, 1] = 2.0  # the constant column: range [0, 0], scale = floor 0.1 -> 20 scales beyond
    p = np.zeros(5, dtype=np.int64)
    assert np.all(s.guard(inside, p) == 0)
    assert np.allclose(s.guard(outside, p), 20.0)
    base = Scorer("iforest", arrays, dict(params, guard_weight=0.0), st, ps).score(outside, p)
    assert np.allclose(s.score(outside, p) - base, 1.0)
    # the forest alone cannot see it: the constant column is never split on
    assert np.array_equal(base, Scorer("iforest", arrays, dict(params, guard_weight=0.0), st, ps).score(inside, p))


def test_lof_scorer_equals_sklearn():
    X, T = data(2, 400, 6)
    st, ps = stats_for(X)
    arrays, params = fit("lof", X, 0, st, ps)
    ours = Scorer("lof", arrays, params, st, ps).score(T, np.zeros(len(T), dtype=np.int64))
    Z = (X - st["median"]) / st["scale"]
    ref = LocalOutlierFactor(n_neighbors=params["neighbors"], novelty=True).fit(Z)
    assert np.allclose(ours, -ref.score_samples((T - st["median"]) / st["scale"]), rtol=1e-9)


def test_robust_scorer_uses_pair_statistics_when_it_has_enough_rows():
    rng = np.random.default_rng(5)
    X = np.vstack([rng.normal(0, 1, (50, 3)), rng.normal(100, 10, (50, 3))])
    pidx = np.repeat([0, 1], 50)
    floors = np.full(3, 0.1)
    st = robust_stats(X, floors)
    ps = pair_stats(X, pidx, 2, floors)
    s = Scorer("robust", {}, {}, st, ps)
    row = np.array([[100.0, 100.0, 100.0]])
    # typical for pair 1, far out for pair 0; an unknown pair (-1) uses the whole training set
    assert s.score(row, np.array([1]))[0] < 3 < s.score(row, np.array([0]))[0]
    z = np.abs(row - st["median"]) / st["scale"]
    assert s.score(row, np.array([-1]))[0] == z.max()


def test_scores_are_row_independent_whatever_the_batch():
    X, T = data(3, 300, 5)
    st, ps = stats_for(X)
    for algo in ("iforest", "lof", "robust"):
        arrays, params = fit(algo, X, 0, st, ps)
        s = Scorer(algo, arrays, params, st, ps)
        p = np.zeros(len(T), dtype=np.int64)
        whole = s.score(T, p)
        parts = np.concatenate([s.score(T[i:i + 7], p[i:i + 7]) for i in range(0, len(T), 7)])
        assert np.array_equal(whole, parts), algo


def test_held_back_episode_the_budget_explains_does_not_set_the_threshold():
    """calibrate_pairs: one benign episode of 6 windows at 8.8 among 6 held-back hours (the budget of 1 a day
    expects 0.25 there, and P(N >= 1) = 0.22) stays above the threshold; among 45 minutes (0.03 expected) it
    sets it, as does a second episode among 6 hours (P(N >= 2) = 0.026)."""
    import numpy as np

    from ids.detect.ml.train import allowed_episodes, calibrate_pairs

    assert [allowed_episodes(x) for x in (0.0, 0.03, 0.05, 0.06, 0.25, 1.0)] == [0, 0, 0, 1, 1, 3]
    rng = np.random.default_rng(0)
    n = 6 * 360
    scores = 0.4 + rng.exponential(0.03, n)
    scores[1000:1006] = 8.8
    end = np.arange(n, dtype=np.int64) * 10 * 10**9
    pidx = np.zeros(n, dtype=np.int64)
    six = calibrate_pairs(scores, pidx, 1, 1.0, 10, end, 0.25)
    assert six["threshold"] < 1.5 and six["calibration"]["episodes_allowed_above"] == 1
    short = calibrate_pairs(scores, pidx, 1, 1.0, 10, end, 0.03)
    assert short["threshold"] >= 8.8
    two = scores.copy()
    two[1500:1503] = 5.0
    assert calibrate_pairs(two, pidx, 1, 1.0, 10, end, 0.25)["threshold"] >= 5.0
    # without row times (adaptation) every row above is its own episode: the old rule, never below the largest
    assert calibrate_pairs(scores, pidx, 1, 1.0, 10)["threshold"] >= 8.8
