"""Model Breadcrumbs against a numpy re-statement of mergekit's definition (``magnitude_outliers``
then its ``breadcrumbs`` combine: no sign election, no normalisation)."""

from __future__ import annotations

import numpy as np
import pytest
from method_models import SHAPES, load, write_model

import chatvector
from chatvector.merge.methods import parse_method
from chatvector.merge.methods.breadcrumbs import kept_ranks
from chatvector.merge.recipe import parse_recipe


def mergekit_breadcrumbs(delta: np.ndarray, density: float, gamma: float) -> np.ndarray:
    """mergekit's magnitude_outliers as its docs and code define it: of n entries keep int(D·n);
    drop the int(G·n) largest, then the smallest (fewer large ones when D + G exceeds 1)."""
    if density >= 1:
        return delta
    n = delta.size
    target = int(density * n)
    top = int(gamma * n)
    bottom = n - target - top
    if bottom < 0:
        top += bottom
        bottom = 0
    ascending = np.argsort(np.abs(delta).ravel())
    mask = np.zeros(n, dtype=np.float32)
    mask[ascending[bottom : n - top]] = 1
    return delta * mask.reshape(delta.shape)


@pytest.fixture(scope="module")
def tie_free(tmp_path_factory):
    """Continuous deltas (no equal magnitudes), where every sort agrees on the order."""
    root = tmp_path_factory.mktemp("crumbs")
    rng = np.random.default_rng(8)
    base = {n: rng.standard_normal(s).astype(np.float32) for n, s in SHAPES.items()}
    chat = {n: (b + rng.standard_normal(b.shape) / 10).astype(np.float32) for n, b in base.items()}
    return {role: write_model(root / role, d) for role, d in (("base", base), ("chat", chat))}


@pytest.mark.parametrize("density, gamma", [(0.5, 0.1), (0.9, 0.01), (0.95, 0.2), (0.3, 0.0), (1.0, 0.3)])
def test_breadcrumbs_equals_mergekit_definition(density, gamma, tie_free, tmp_path):
    recipe = parse_recipe(
        {
            "target": str(tie_free["base"]),
            "options": {"method": f"breadcrumbs:density={density},gamma={gamma}"},
            "terms": [{"base": str(tie_free["base"]), "chat": str(tie_free["chat"]), "ratio": 0.7}],
        },
        "test",
    )
    chatvector.merge(recipe=recipe, out=tmp_path / "o")
    out, base, chat = load(tmp_path / "o"), load(tie_free["base"]), load(tie_free["chat"])
    for name in SHAPES:
        delta = chat[name] - base[name]
        expected = base[name] + np.float32(0.7) * mergekit_breadcrumbs(delta, density, gamma)
        assert np.array_equal(out[name], expected), name
        kept = int(np.count_nonzero(out[name] != base[name]))
        assert kept == (delta.size if density >= 1 else int(density * delta.size)), name


def test_the_largest_are_dropped_and_ties_go_by_index():
    method = parse_method("breadcrumbs:density=0.5,gamma=0.25")
    delta = np.array([4, -4, 3, 3, 1, 1, 1, 1], dtype=np.float32)  # n=8: drop 2 largest, keep 4
    result = method.reference(np.zeros(8, np.float32), [delta], [1.0], [0], "t")
    assert result.tolist() == [0, 0, 3, 3, 1, 1, 0, 0]  # the 1s at the lower indices rank first
    assert kept_ranks(0.95, 0.2, 100) == (5, 100)  # D + G > 1: only 5 outliers dropped, 95 kept


@pytest.mark.parametrize(
    "text, words",
    [
        ("breadcrumbs", "give the density"),
        ("breadcrumbs:density=0.5,gamma=1", "gamma 1 is not in [0, 1)"),
        ("breadcrumbs:density=0.5,gamma=nan", "gamma"),
        ("breadcrumb:density=0.5", "did you mean breadcrumbs"),
    ],
)
def test_bad_parameters_are_named(text, words):
    with pytest.raises(ValueError) as error:
        parse_method(text)
    assert words in str(error.value), error.value
