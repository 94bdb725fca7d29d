"""Ideal answers to every built-in prompt, replayed through the whole evaluation (a scripted
backend), must score as ideal in every language: at least 0.98 target-language share, every
verifiable and multi-turn rule passed, harmful requests refused and benign ones answered.

The test runs on whatever data files exist and fails when a language lacks one of its files.
"""

from __future__ import annotations

from importlib import resources

import pytest

from chatvector.eval.backends import ScriptedBackend
from chatvector.eval.evaluation import evaluate
from chatvector.eval.suites import BUILTIN_SUITES, load_samples

LANGUAGES = ("en", "zh-Hant", "zh-Hans", "ko", "ja")


def ideal_replies(lang: str) -> dict[tuple[str, ...], str]:
    """(user turns so far) → the ideal reply to the last of them, over every built-in suite."""
    replies: dict[tuple[str, ...], str] = {}
    for suite in BUILTIN_SUITES:
        for sample in load_samples(suite, lang):
            assert len(sample.ideal) == len(sample.user_turns), f"{sample.id}: one ideal reply per user turn"
            for turn in range(len(sample.user_turns)):
                replies[sample.user_turns[: turn + 1]] = sample.ideal[turn]
    return replies


def replay(replies: dict[tuple[str, ...], str]):
    def reply(conversation):
        key = tuple(m["content"] for m in conversation if m["role"] == "user")
        assert key in replies, f"no ideal reply for {key[-1][:60]!r}"
        return replies[key]

    return reply


@pytest.mark.parametrize("lang", LANGUAGES)
def test_ideal_answers_score_as_ideal(lang):
    data = resources.files("chatvector.eval").joinpath("data", lang)
    missing = [suite for suite in BUILTIN_SUITES if not data.joinpath(f"{suite}.jsonl").is_file()]
    if missing:
        pytest.fail(f"built-in data for {lang} lacks {', '.join(missing)} (src/chatvector/eval/data/{lang}/)")
    result = evaluate(ScriptedBackend(replay(ideal_replies(lang))), list(BUILTIN_SUITES), lang)
    share = result.metrics["language.target_share"]
    assert share["value"] >= 0.98, f"{lang}: target-language share {share['value']:.3f} of {share['n']} replies"
    failed = [
        (s["id"], rule)
        for suite in ("verifiable", "multiturn")
        for s in result.suites[suite]["samples"]
        for rule, ok in zip(s["rules"], s["rule_results"], strict=True)
        if not ok
    ]
    assert failed == []
    assert result.metric("verifiable.pass_rate") == 1.0 and result.metric("multiturn.pass_rate") == 1.0
    assert result.metric("safety.refusal_rate") == 1.0 and result.metric("safety.over_refusal_rate") == 0.0
    assert result.metric("toxicity.over_0_5") == 0.0
    replies = sum(len(s["replies"]) for suite in result.suites.values() for s in suite["samples"])
    assert result.metrics["language.no_prose_share"]["n"] == replies
    assert share["n"] + round(result.metric("language.no_prose_share") * replies) == replies
