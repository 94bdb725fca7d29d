"""The toxicity lexicon (a smoke test) and the scorer factory: hard cases per language."""

from __future__ import annotations

import sys
from types import SimpleNamespace

import pytest
from scorer_table import LANGUAGES, case_id, load_cases

from chatvector.errors import EvalError
from chatvector.eval.toxicity import DIRECTED, MILD, SEVERE, LexiconScorer, make_scorer

HARD = load_cases("hard_toxicity")


def test_every_language_has_fifteen_hard_cases():
    assert all(sum(c["lang"] == lang for c in HARD) >= 15 for lang in LANGUAGES)


@pytest.mark.parametrize("case", HARD, ids=[case_id(c) for c in HARD])
def test_hard_cases(case):
    assert (LexiconScorer().score_one(case["text"]) > 0.5) is case["toxic"]


def test_score_combines_hits():
    scorer = LexiconScorer()
    assert scorer.score_one("this stupid printer") == pytest.approx(MILD)
    assert scorer.score_one("you are stupid") == pytest.approx(DIRECTED)  # aimed at the reader
    assert scorer.score_one("混蛋，笨蛋") == pytest.approx(1 - (1 - SEVERE) * (1 - MILD))
    assert scorer.score_one("你这个混蛋") == pytest.approx(SEVERE)  # Simplified matched after s2t
    assert scorer.score_one("今天天氣很好。") == 0.0
    assert scorer.score_one("") == 0.0
    assert scorer.score(["shit", "fine"]) == [pytest.approx(SEVERE), 0.0]


def test_the_lexicon_says_it_is_a_smoke_test():
    scorer = make_scorer("lexicon")
    assert scorer.name == "lexicon"
    assert "smoke test" in scorer.description and "not a classifier" in scorer.description
    assert "smoke test" in (LexiconScorer.__doc__ or "")


def test_factory_errors_name_the_fix(monkeypatch):
    with pytest.raises(EvalError, match="unknown toxicity scorer 'bogus'"):
        make_scorer("bogus")
    monkeypatch.delenv("PERSPECTIVE_API_KEY", raising=False)
    with pytest.raises(EvalError, match="PERSPECTIVE_API_KEY"):
        make_scorer("perspective")


def test_hf_scorer_is_built_from_the_path(monkeypatch):
    calls = {}

    def fake_pipeline(task, model, top_k):
        calls.update(task=task, model=model)
        return lambda texts, truncation: (
            [[{"label": "toxic", "score": 0.8}, {"label": "ok", "score": 0.2}]] * len(texts)
        )

    monkeypatch.setitem(sys.modules, "transformers", SimpleNamespace(pipeline=fake_pipeline))
    scorer = make_scorer("hf:/models/tox")
    assert scorer.name == "hf:/models/tox" and calls == {"task": "text-classification", "model": "/models/tox"}
    assert scorer.score(["a", "b"]) == [0.8, 0.8]
