"""The judge's score parser (the scorers' own tests are in test_scorer_*.py)."""

from __future__ import annotations

import pytest

from chatvector.eval.judge import parse_score


@pytest.mark.parametrize(
    ("judgment", "score"),
    [
        ("The answer is good. Rating: [[7]]", 7.0),
        ("評分：8", 8.0),
        ("I'd give it 6/10.", 6.0),
        ("Score: 7.5", 7.5),
        ("no verdict at all", None),
        ("Rating: [[11]]", None),
        ("", None),
        ("[[3]] at first, but on reflection Rating: [[5]]", 5.0),
    ],
)
def test_judge_score_parsing(judgment, score):
    assert parse_score(judgment) == score
