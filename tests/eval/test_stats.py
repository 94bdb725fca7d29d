"""Intervals and tests: known values, coverage and calibration by simulation, seeding, pairing."""

from __future__ import annotations

import math

import numpy as np
import pytest

from chatvector.eval.metrics import MetricSpec, flag
from chatvector.eval.stats import bootstrap_mean, paired_bootstrap, wilson


def test_wilson_known_values():
    assert wilson(3, 6) == pytest.approx((0.1876, 0.8124), abs=1e-4)  # the "3/6 is 0.19 to 0.81"
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


def test_paired_bootstrap_finds_a_real_shift_and_not_noise():
    rng = np.random.default_rng(3)
    difficulty = rng.normal(0, 3, size=40)  # prompts differ far more than the two runs do
    a = difficulty + rng.normal(0, 0.3, size=40)
    b = difficulty + 0.5 + rng.normal(0, 0.3, size=40)
    shifted = paired_bootstrap(a, b, seed=0)
    assert shifted.difference == pytest.approx(float(np.mean(b - a)))
    assert shifted.p_value < 0.01 and shifted.ci_low > 0 and shifted.significant()
    # unpaired, the two means' intervals overlap widely: pairing is what finds the shift
    assert bootstrap_mean(a)[1] > bootstrap_mean(b)[0]
    same = paired_bootstrap(a, a, seed=0)
    assert (same.difference, same.p_value) == (0.0, 1.0)


def test_paired_bootstrap_p_values_are_calibrated_under_the_null():
    rng = np.random.default_rng(11)
    rejections = 0
    trials = 300
    for trial in range(trials):
        a = rng.binomial(1, 0.6, size=60).astype(float)
        b = rng.binomial(1, 0.6, size=60).astype(float)
        rejections += paired_bootstrap(a, b, seed=trial, resamples=400).p_value < 0.05
    assert 0.02 <= rejections / trials <= 0.09


def test_paired_bootstrap_weighs_clusters_by_their_units():
    # prompt 1 has three rules (all pass in b, none in a); prompt 2 has one rule, passed in both
    result = paired_bootstrap([0, 1], [3, 1], [3, 1], [3, 1], seed=0)
    assert (result.a, result.b, result.difference, result.n) == (0.25, 1.0, 0.75, 2)
    with pytest.raises(ValueError):
        paired_bootstrap([1, 2], [1])


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
