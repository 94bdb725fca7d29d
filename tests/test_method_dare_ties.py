"""DARE-TIES: DARE's drop (statistically: kept share and rescaled expectation, with intervals) and
TIES's election, reproducible from the seed."""

from __future__ import annotations

import math

import numpy as np
import pytest
from method_models import SHAPES, build_models, load, recipe_of

import chatvector
from chatvector.merge.methods import parse_method
from chatvector.merge.methods.dare import dare_drop_whole

N = 200_000
DENSITY = 0.3


def deltas(seed=0):
    rng = np.random.default_rng(seed)
    return [rng.standard_normal(N).astype(np.float32) for _ in range(2)]


def test_kept_share_and_rescaled_mean_match_the_density():
    delta = deltas()[0]
    kept = dare_drop_whole(delta, DENSITY, 7, 0, "t")
    share = np.count_nonzero(kept) / N
    assert abs(share - DENSITY) < 4 * math.sqrt(DENSITY * (1 - DENSITY) / N)  # about ±0.004
    ratio = kept.astype(np.float64) / delta  # 0 or 1/D per entry: mean 1, sd sqrt((1-D)/D)
    assert abs(ratio.mean() - 1) < 4 * math.sqrt((1 - DENSITY) / DENSITY / N)  # about ±0.014
    assert set(np.round(np.unique(ratio), 5)) == {0.0, round(1 / DENSITY, 5)}


def test_one_term_is_dare_and_two_terms_elect_signs():
    one, two = deltas()
    start = np.zeros(N, np.float32)
    method = parse_method(f"dare_ties:density={DENSITY},seed=7")
    dare = parse_method(f"dare:density={DENSITY},seed=7")
    assert np.array_equal(
        method.reference(start, [one], [0.8], [0], "t"), dare.reference(start, [one], [0.8], [0], "t")
    )
    result = method.reference(start, [one, two], [0.8, -0.6], [0, 1], "t")
    a = np.float32(0.8) * dare_drop_whole(one, DENSITY, 7, 0, "t")
    b = np.float32(-0.6) * dare_drop_whole(two, DENSITY, 7, 1, "t")
    opposed = (a != 0) & (b != 0) & (np.sign(a) != np.sign(b))
    assert opposed.sum() > 1000
    winner = np.where(a + b >= 0, np.where(a > 0, a, b), np.where(a < 0, a, b))
    assert np.array_equal(result[opposed], winner[opposed])  # only the elected sign's entry stays
    agreeing = (a != 0) & (b != 0) & ~opposed
    assert np.array_equal(result[agreeing], ((a + b) / np.float32(2))[agreeing])  # their mean


@pytest.fixture(scope="module")
def models(tmp_path_factory):
    return build_models(tmp_path_factory.mktemp("dare-ties"))


def test_the_seed_decides_the_result(models, tmp_path):
    for name, seed in (("a", 1), ("b", 1), ("c", 2)):
        chatvector.merge(recipe=recipe_of(models, f"dare_ties:density=0.5,seed={seed}"), out=tmp_path / name)
    a, b, c = (load(tmp_path / n) for n in "abc")
    assert all(np.array_equal(a[n], b[n]) for n in SHAPES)
    assert not all(np.array_equal(a[n], c[n]) for n in SHAPES)
