"""Intervals and tests: known values, coverage and calibration by simulation, seeding, pairing; the exact
and permutation tests and Holm's adjustment against scipy and statsmodels."""

from __future__ import annotations

import math

import numpy as np
import pytest

from chatvector.eval.metrics import MetricSpec, flag
from chatvector.eval.stats import EXACT_PERMUTATION_LIMIT, bootstrap_mean, holm, paired, sign_test, wilson


def test_wilson_known_values():
    assert wilson(3, 6) == pytest.approx((0.1876, 0.8124), abs=1e-4)  # the issue's "3/6 is 0.19 to 0.81"
    assert wilson(5, 10) == pytest.approx((0.2366, 0.7634), abs=1e-4)
    assert wilson(0, 10) == pytest.approx((0.0, 0.2775), abs=1e-4)
    assert wilson(10, 10) == pytest.approx((0.7225, 1.0), abs=1e-4)
    assert all(math.isnan(x) for x in wilson(0, 0))
    with pytest.raises(ValueError):
        wilson(7, 6)


def test_wilson_covers_the_true_rate_95_percent_of_the_time():
    rng = np.random.default_rng(7)
    for p, n in ((0.3, 20), (0.9, 40), (0.05, 60)):
        hits = rng.binomial(n, p, size=4000)
        covered = np.mean([low <= p <= high for low, high in (wilson(int(k), n) for k in hits)])
        assert 0.92 <= covered <= 0.985, (p, n, covered)


def test_bootstrap_mean_is_seeded_and_about_right():
    values = np.random.default_rng(1).normal(5.0, 2.0, size=200)
    low, high = bootstrap_mean(values, seed=0)
    assert bootstrap_mean(values, seed=0) == (low, high)
    assert bootstrap_mean(values, seed=1) != (low, high)
    half = 1.96 * values.std(ddof=1) / math.sqrt(values.size)  # the normal approximation agrees at n = 200
    assert low == pytest.approx(values.mean() - half, abs=0.1 * half)
    assert high == pytest.approx(values.mean() + half, abs=0.1 * half)
    assert bootstrap_mean([4.0, 4.0, 4.0]) == (4.0, 4.0)
    assert all(math.isnan(x) for x in bootstrap_mean([]))


def test_paired_finds_a_real_shift_and_not_noise():
    rng = np.random.default_rng(3)
    difficulty = rng.normal(0, 3, size=40)  # prompts differ far more than the two runs do
    a = difficulty + rng.normal(0, 0.3, size=40)
    b = difficulty + 0.5 + rng.normal(0, 0.3, size=40)
    shifted = paired(a, b, seed=0)
    assert shifted.difference == pytest.approx(float(np.mean(b - a)))
    assert shifted.p_value < 0.01 and shifted.ci_low > 0 and shifted.significant()
    # unpaired, the two means' intervals overlap widely: pairing is what finds the shift
    assert bootstrap_mean(a)[1] > bootstrap_mean(b)[0]
    same = paired(a, a, seed=0)
    assert (same.difference, same.p_value) == (0.0, 1.0)


def test_paired_p_values_are_calibrated_under_the_null():
    rng = np.random.default_rng(11)
    trials = 300
    binary = scores = 0
    for trial in range(trials):
        a = rng.binomial(1, 0.6, size=60).astype(float)
        b = rng.binomial(1, 0.6, size=60).astype(float)
        binary += paired(a, b, seed=trial, resamples=400).p_value < 0.05
        x, y = rng.normal(5, 2, size=40), rng.normal(5, 2, size=40)
        scores += paired(x, y, seed=trial, resamples=400).p_value < 0.05
    assert binary / trials <= 0.07  # exact McNemar: at most alpha, up to noise (it is conservative)
    assert 0.02 <= scores / trials <= 0.09  # the permutation test: about alpha


def test_paired_weighs_clusters_by_their_units():
    # prompt 1 has three rules (all pass in b, none in a); prompt 2 has one rule, passed in both
    result = paired([0, 1], [3, 1], [3, 1], [3, 1], seed=0)
    assert (result.a, result.b, result.difference, result.n) == (0.25, 1.0, 0.75, 2)
    with pytest.raises(ValueError):
        paired([1, 2], [1])


def test_a_metric_spec_aggregates_rates_means_and_counts():
    records = [{"ok": True, "s": 4.0}, {"ok": False, "s": None}, {"ok": True, "s": 6.0}, {"other": 1}]
    rate = MetricSpec("x.rate", "rate", True, lambda r: flag(r["ok"]) if "ok" in r else None, "")
    metric = rate.compute(records)
    assert (metric.value, metric.n) == (pytest.approx(2 / 3), 3)
    assert (metric.ci_low, metric.ci_high) == pytest.approx(wilson(2, 3))
    mean = MetricSpec("x.mean", "mean", True, lambda r: [] if r.get("s") is None else [r["s"]], "")
    assert (mean.compute(records).value, mean.compute(records).n) == (5.0, 2)
    count = MetricSpec("x.count", "count", False, lambda r: [float(r.get("s") is None)] if "ok" in r else None, "")
    assert count.compute(records).as_dict() == {
        "value": 1.0,
        "n": 3,
        "ci_low": None,
        "ci_high": None,
        "higher_is_better": False,
        "kind": "count",
    }
    assert MetricSpec("x.none", "rate", True, lambda r: None, "").compute(records) is None


def test_the_issues_small_samples_get_exact_p_values():
    """4 of 16 prompts flip: the bootstrap said p = 0.030, the exact McNemar test says 0.125."""
    assert paired([0] * 16, [1] * 4 + [0] * 12).p_value == 0.125
    assert paired([1] * 5 + [0] * 5, [0] * 10).p_value == 0.0625  # 10 pairs, 5 vs 0
    assert "exact McNemar (4 discordant pairs)" == paired([0] * 16, [1] * 4 + [0] * 12).test
    assert paired([1, 0, 1], [1, 0, 1]).p_value == 1.0


@pytest.mark.parametrize("n, improved, worsened", [(16, 4, 0), (10, 0, 5), (60, 14, 5), (200, 40, 22), (500, 3, 3)])
def test_the_exact_mcnemar_test_matches_scipy_and_statsmodels(n, improved, worsened):
    from scipy.stats import binomtest
    from statsmodels.stats.contingency_tables import mcnemar

    both = (n - improved - worsened) // 2
    a = [0] * improved + [1] * worsened + [1] * both + [0] * (n - improved - worsened - both)
    b = [1] * improved + [0] * worsened + [1] * both + [0] * (n - improved - worsened - both)
    result = paired(a, b)
    table = [[both, worsened], [improved, n - improved - worsened - both]]
    assert result.p_value == pytest.approx(mcnemar(table, exact=True).pvalue, rel=1e-12)
    assert result.p_value == pytest.approx(binomtest(improved, improved + worsened, 0.5).pvalue, rel=1e-12)
    assert sign_test(improved, improved + worsened) == result.p_value
    with pytest.raises(ValueError):
        sign_test(3, 2)


def test_the_permutation_test_is_exact_when_few_prompts_differ_as_scipy_computes_it():
    from scipy.stats import permutation_test

    rng = np.random.default_rng(5)
    for size in (6, 9, 12):
        a = rng.normal(6, 2, size=size).round(1)
        b = (a + rng.normal(0.8, 1.0, size=size)).round(1)
        ours = paired(a, b)
        theirs = permutation_test(
            (a, b),
            lambda x, y, axis: np.mean(y, axis=axis) - np.mean(x, axis=axis),
            permutation_type="samples",
            n_resamples=2**size,
            alternative="two-sided",
        )
        assert size <= EXACT_PERMUTATION_LIMIT and "exact" in ours.test
        assert ours.p_value == pytest.approx(theirs.pvalue, rel=1e-9), size


def test_the_permutation_test_samples_when_many_differ_and_never_says_below_one_over_resamples():
    from scipy.stats import permutation_test

    rng = np.random.default_rng(8)
    a = rng.normal(6, 2, size=80)
    b = a + rng.normal(0.1, 1.0, size=80)
    ours = paired(a, b, resamples=4000)
    reference = permutation_test(
        (a, b),
        lambda x, y, axis: np.mean(y, axis=axis) - np.mean(x, axis=axis),
        permutation_type="samples",
        n_resamples=20000,
        rng=np.random.default_rng(0),
    ).pvalue
    assert ours.p_value == pytest.approx(reference, abs=0.03)
    assert "4000 random arrangements; p >= 1/4001" in ours.test
    far = paired(a, a + 3.0, resamples=999)
    assert far.p_value == 1 / 1000  # every arrangement is less extreme: the floor, never 0


def test_clusters_are_swapped_whole_in_the_permutation_test():
    # three prompts of two rules each: passed 2/2 in b and 0/2 in a; unequal counts are kept with their sums
    result = paired([0, 0, 0], [2, 2, 2], [2, 2, 2], [2, 2, 2])
    assert result.difference == 1.0 and result.p_value == 0.25 and "exact" in result.test  # 2 of 8 arrangements


@pytest.mark.parametrize("seed", range(5))
def test_holm_matches_statsmodels(seed):
    from statsmodels.stats.multitest import multipletests

    p_values = np.random.default_rng(seed).uniform(0, 0.2, size=3 + seed).tolist()
    p_values[0] = p_values[-1]  # a tie
    assert holm(p_values) == pytest.approx(list(multipletests(p_values, method="holm")[1]), rel=1e-12)
    with_nan = holm([0.01, math.nan, 0.04])
    assert with_nan[0] == pytest.approx(0.02) and math.isnan(with_nan[1]) and with_nan[2] == pytest.approx(0.04)
    assert holm([]) == []
