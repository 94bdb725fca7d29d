"""A recipe of thousands of terms over a few models: each model is opened once (not once per
term), and the preflight's work grows linearly with terms × tensors."""

from __future__ import annotations

import pytest

from chatvector.merge.inputs import open_inputs
from chatvector.merge.recipe import parse_recipe


def recipe_of(trio, count: int):
    terms = [{"base": str(trio.base), "chat": str(trio.chat), "ratio": 0.001} for _ in range(count)]
    return parse_recipe({"target": str(trio.cp), "terms": terms}, "test")


def test_a_model_named_by_many_terms_is_opened_once(trios):
    trio = trios["mistral"]
    with open_inputs(recipe_of(trio, 50)) as inputs:
        checkpoints = {id(t.plus.checkpoint) for t in inputs.terms} | {id(t.minus.checkpoint) for t in inputs.terms}
        assert len(checkpoints) == 2  # chat and base, shared by the 50 terms
        assert [t.plus.label for t in inputs.terms][:2] == ["chat #1", "chat #2"]  # each keeps its own label
        plan = inputs.plan(lineage=True)
    assert len(plan.checkpoints) == 3
    assert all(len(w.terms) == 50 for w in plan.tensors if w.policy == "merge")


@pytest.mark.slow
def test_a_10000_term_recipe_finishes_preflight(trios):
    trio = trios["mistral"]
    with open_inputs(recipe_of(trio, 10_000)) as inputs:
        plan = inputs.plan(lineage=True)
    assert all(len(w.terms) == 10_000 for w in plan.tensors if w.policy == "merge")
