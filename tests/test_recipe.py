"""Recipes: validation errors that say what is wrong and where."""

from __future__ import annotations

import pytest

from chatvector.errors import InputError
from chatvector.merge.recipe import PairTerm, VectorTerm, load_recipe, parse_recipe


def test_terms_of_both_kinds(tmp_path):
    path = tmp_path / "r.yaml"
    path.write_text("target: cp\nterms:\n  - {base: b, chat: c, ratio: 0.5}\n  - {vector: v}\n")
    recipe = load_recipe(path)
    assert recipe.terms == (PairTerm(base="b", chat="c", ratio=0.5), VectorTerm(vector="v", ratio=1.0))
    assert recipe.options.embeddings == "auto"


def test_misspelled_key_gets_a_suggestion():
    with pytest.raises(InputError, match="did you mean 'ratio'"):
        parse_recipe({"target": "cp", "terms": [{"base": "b", "chat": "c", "ratoi": 1}]}, "r.yaml")


def test_bad_regex_and_policy_are_named():
    with pytest.raises(InputError, match="not a valid regular expression"):
        parse_recipe({"target": "t", "terms": [{"vector": "v"}], "options": {"exclude": ["("]}}, "r")
    with pytest.raises(InputError, match="options.embeddings"):
        parse_recipe({"target": "t", "terms": [{"vector": "v"}], "options": {"embeddings": "x"}}, "r")


def test_missing_file_and_bad_yaml(tmp_path):
    with pytest.raises(InputError, match="no such file"):
        load_recipe(tmp_path / "nope.yaml")
    (tmp_path / "bad.yaml").write_text("terms: [unclosed\n")
    with pytest.raises(InputError, match="not valid YAML"):
        load_recipe(tmp_path / "bad.yaml")


def test_merge_recipe_needs_a_target():
    recipe = parse_recipe({"terms": [{"vector": "v"}]}, "r")
    with pytest.raises(InputError, match="no target"):
        recipe.check_complete()
