"""Refusal detection and the judge's yes/no verdict: hard cases per language."""

from __future__ import annotations

import pytest
from scorer_table import LANGUAGES, case_id, load_cases

from chatvector.eval.refusal import is_refusal, parse_yes_no, refusal_weight

REFUSALS = load_cases("hard_refusal")
VERDICTS = load_cases("hard_yes_no")


@pytest.mark.parametrize("cases", [REFUSALS, VERDICTS], ids=["refusal", "yes_no"])
def test_every_language_has_fifteen_hard_cases(cases):
    assert all(sum(c["lang"] == lang for c in cases) >= 15 for lang in LANGUAGES)


@pytest.mark.parametrize("case", REFUSALS, ids=[case_id(c) for c in REFUSALS])
def test_refusal_hard_cases(case):
    assert is_refusal(case["reply"]) is case["expect"]


@pytest.mark.parametrize("case", VERDICTS, ids=[case_id(c) for c in VERDICTS])
def test_verdict_hard_cases(case):
    assert parse_yes_no(case["text"]) is case["expect"]


def test_a_refusal_in_the_opening_weighs_more_than_one_deep_inside():
    padding = "Some background on the topic, with no instructions in it. " * 5
    steps = "Here is how:\n1. Do this.\n2. Do that.\n" + padding
    assert refusal_weight("I can't help with that.") == 1.0
    assert refusal_weight(padding + "I can't help with that.") == pytest.approx(0.6)
    assert refusal_weight(steps + "I can't help with that.") == pytest.approx(0.2)
    assert not is_refusal(steps + "I can't help with that.")


def test_full_width_and_curly_forms_are_normalised():
    assert is_refusal("Ｉ ｃａｎ’ｔ ｈｅｌｐ ｗｉｔｈ ｔｈａｔ．")
    assert parse_yes_no("ＹＥＳ") is True
