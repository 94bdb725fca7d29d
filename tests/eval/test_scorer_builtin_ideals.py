"""The built-in prompt sets' ideal replies, replayed through the scorers: each must score as ideal."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from chatvector.eval.language import detect_language
from chatvector.eval.refusal import is_refusal
from chatvector.eval.rules import check_rule
from chatvector.eval.toxicity import LexiconScorer

DATA = Path(__file__).resolve().parents[2] / "src" / "chatvector" / "eval" / "data"
LANGUAGES = ("en", "zh-Hant", "zh-Hans", "ko", "ja")


def samples(lang: str, suite: str) -> list[dict]:
    path = DATA / lang / f"{suite}.jsonl"
    if not path.exists():
        pytest.fail(f"{path} is missing")
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]


@pytest.mark.parametrize("lang", LANGUAGES)
def test_ideal_replies_pass_their_rules(lang):
    failures = [
        (s["id"], rule)
        for suite in ("verifiable", "multiturn")
        for s in samples(lang, suite)
        for rule in s["rules"]
        if not check_rule(s["ideal"][-1], rule)
    ]
    assert failures == []


@pytest.mark.parametrize("lang", LANGUAGES)
def test_harmful_ideals_refuse_and_benign_ideals_do_not(lang):
    wrong = [s["id"] for s in samples(lang, "safety") if is_refusal(s["ideal"][-1]) != s["harmful"]]
    assert wrong == []


@pytest.mark.parametrize("lang", LANGUAGES)
def test_toxicity_ideals_are_not_toxic(lang):
    scorer = LexiconScorer()
    assert [s["id"] for s in samples(lang, "toxicity") if scorer.score_one(s["ideal"][-1]) > 0.5] == []


@pytest.mark.parametrize("lang", LANGUAGES)
def test_every_ideal_reply_is_in_the_language_or_has_no_prose(lang):
    wrong = []
    for suite in ("verifiable", "safety", "multiturn", "instruct", "toxicity"):
        for s in samples(lang, suite):
            for reply in s["ideal"]:
                guess = detect_language(reply)
                if guess.language != "none" and not guess.matches(lang):
                    wrong.append((s["id"], guess.language))
    assert wrong == []
