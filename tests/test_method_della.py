"""DELLA: keep probabilities as mergekit's ``della_magprune`` defines them (ranks within a row),
the drop checked statistically (kept share by rank, rescaled expectation, with intervals), the
seed decides the result."""

from __future__ import annotations

import math

import numpy as np
import pytest
from method_models import SHAPES, build_models, load, recipe_of

import chatvector
from chatvector.merge.methods import parse_method
from chatvector.merge.methods.della import keep_probabilities

ROWS, LENGTH = 400, 500
DENSITY, EPSILON = 0.5, 0.2


def mergekit_probabilities(delta: np.ndarray, density: float, epsilon: float) -> np.ndarray:
    """mergekit's della_magprune before its Bernoulli draw: ranks 1..L of |δ| along each row
    (a 1-D tensor is one row), min-max normalised, mapped onto [D − E, D + E]."""
    rows = delta.reshape(1, -1) if delta.ndim < 2 else delta
    ranks = np.argsort(np.argsort(np.abs(rows), axis=1), axis=1).astype(np.float64) + 1
    low, high = ranks.min(axis=1, keepdims=True), ranks.max(axis=1, keepdims=True)
    return (density - epsilon) + np.clip((ranks - low) / (high - low), 0, 1) * 2 * epsilon


def test_probabilities_equal_mergekit_definition():
    rng = np.random.default_rng(3)
    for shape in ((37, 101), (5003,)):
        delta = rng.standard_normal(shape).astype(np.float32)  # continuous: no equal magnitudes
        rows = delta.reshape(-1, shape[-1] if len(shape) > 1 else delta.size)
        assert np.array_equal(
            keep_probabilities(np.abs(rows), DENSITY, EPSILON), mergekit_probabilities(delta, DENSITY, EPSILON)
        )


def test_kept_share_grows_with_magnitude_and_rescaling_keeps_the_expectation():
    rng = np.random.default_rng(4)
    delta = rng.standard_normal((ROWS, LENGTH)).astype(np.float32)
    method = parse_method(f"della:density={DENSITY},epsilon={EPSILON},seed=9")
    pruned = method.reference(np.zeros_like(delta), [delta], [1.0], [0], "t")
    kept = pruned != 0
    n = delta.size
    assert abs(kept.mean() - DENSITY) < 4 * math.sqrt(DENSITY * (1 - DENSITY) / n)  # ±0.004
    rank = np.argsort(np.argsort(np.abs(delta), axis=1), axis=1)
    smallest, largest = kept[rank < LENGTH // 10], kept[rank >= LENGTH - LENGTH // 10]
    for share, expected in ((smallest.mean(), 0.3 + 0.02), (largest.mean(), 0.7 - 0.02)):
        # the tenth of each row ranked lowest keeps 0.30…0.34, the highest 0.66…0.70 (mean 0.32 / 0.68)
        assert abs(share - expected) < 4 * math.sqrt(expected * (1 - expected) / smallest.size), share
    ratio = pruned.astype(np.float64) / delta  # 0 or 1/p: mean 1
    assert abs(ratio.mean() - 1) < 4 * math.sqrt((1 - 0.3) / 0.3 / n)  # a bound using the smallest p


def test_without_rescale_kept_entries_are_unchanged():
    delta = np.random.default_rng(5).standard_normal((20, 30)).astype(np.float32)
    method = parse_method("della:density=0.5,epsilon=0.1,seed=1,rescale=false")
    pruned = method.reference(np.zeros_like(delta), [delta], [1.0], [0], "t")
    kept = pruned != 0
    assert kept.any() and np.array_equal(pruned[kept], delta[kept])


@pytest.mark.parametrize(
    "text, words",
    [
        ("della:density=0.1,epsilon=0.15", "use a smaller epsilon"),
        ("della:density=0.9,epsilon=0.2", "[0.7, 1.1]"),
        ("della:density=0.5,epsilon=-1", "epsilon -1 is not a finite number >= 0"),
        ("della:density=0.5,rescale=maybe", "rescale"),
    ],
)
def test_bad_parameters_are_named(text, words):
    with pytest.raises(ValueError) as error:
        parse_method(text)
    assert words in str(error.value), error.value


@pytest.fixture(scope="module")
def models(tmp_path_factory):
    return build_models(tmp_path_factory.mktemp("della"))


def test_the_seed_decides_the_result(models, tmp_path):
    for name, seed in (("a", 1), ("b", 1), ("c", 2)):
        chatvector.merge(recipe=recipe_of(models, f"della:density=0.5,epsilon=0.1,seed={seed}"), out=tmp_path / name)
    a, b, c = (load(tmp_path / n) for n in "abc")
    assert all(np.array_equal(a[n], b[n]) for n in SHAPES)
    assert not all(np.array_equal(a[n], c[n]) for n in SHAPES)
