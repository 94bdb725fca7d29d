"""Verifiable rules: the full vocabulary of docs/eval-data.md, hard cases per language."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from scorer_table import LANGUAGES, case_id, load_cases

from chatvector.errors import EvalError
from chatvector.eval.rules import (
    CHECKS,
    check_rule,
    count_bullets,
    count_chars,
    count_numbered,
    count_sentences,
    count_words,
    json_ok,
)

HARD = load_cases("hard_rules")
DOC = Path(__file__).resolve().parents[2] / "docs" / "eval-data.md"


def test_every_language_has_fifteen_hard_cases():
    assert all(sum(c["lang"] == lang for c in HARD) >= 15 for lang in LANGUAGES)


@pytest.mark.parametrize("case", HARD, ids=[case_id(c) for c in HARD])
def test_hard_cases(case):
    if case["expect"] == "error":
        with pytest.raises(EvalError):
            check_rule(case["reply"], case["rule"])
    else:
        assert check_rule(case["reply"], case["rule"]) is case["expect"]


def test_the_vocabulary_is_exactly_the_documented_one():
    table = DOC.read_text(encoding="utf-8").split("## Rules", 1)[1]
    documented = {
        name for cell in re.findall(r"^\| (`[^|]+)\|", table, re.MULTILINE) for name in re.findall(r"`(\w+)`", cell)
    }
    assert documented == set(CHECKS)


@pytest.mark.parametrize(
    ("text", "words"),
    [
        ("我喜歡貓", 4),
        ("I like cats", 3),
        ("나는 고양이를 좋아해요", 3),
        ("我用 Python 寫程式", 6),
        ("", 0),
        ("。！", 0),
        ("東京は大きい", 6),
        ("ＡＢＣ１２", 5),
        ("don't self-attention", 2),
        ("**粗體**字", 3),
    ],
)
def test_word_count_is_cjk_aware(text, words):
    assert count_words(text) == words


def test_char_count_ignores_white_space_and_markup():
    assert count_chars("海 洋\n很大") == 4
    assert count_chars("**海洋**") == 2


@pytest.mark.parametrize(
    ("text", "numbered"),
    [
        ("1. a\n2. b", 2),
        ("１．甲\n２．乙", 2),
        ("（1）甲\n(2) 乙", 2),
        ("①甲\n②乙\n③丙", 3),
        ("一、甲\n二、乙", 2),
        ("第一，甲\n第二步：乙", 2),
        ("가. 사과\nㄴ. 배", 2),
        ("**1.** bold number", 1),
        ("3.14 is pi\n2024年", 0),
        ("1.\n2.", 0),  # markers without text
        ("1、蘋果\n2、香蕉", 2),
        ("沒有列表，只有一句話。", 0),  # value 0: no list
    ],
)
def test_numbered_lines(text, numbered):
    assert count_numbered(text) == numbered


@pytest.mark.parametrize(
    ("text", "bullets"),
    [
        ("- a\n* b\n• c\n・d\n‧e\n– f", 6),
        ("**Title**\n---\n* * *\n-not a bullet", 0),
        ("```\n- in code\n```\n- out", 1),
        ("－ 全形", 1),
    ],
)
def test_bullet_lines(text, bullets):
    assert count_bullets(text) == bullets


@pytest.mark.parametrize(
    ("text", "sentences"),
    [
        ("One. Two! Three?", 3),
        ("今天很熱。明天下雨！！後天呢？", 3),
        ("Pi is 3.14 and e.g. this is one.", 1),
        ("Title\nBody one. Body two.", 2),  # a single line break does not end a sentence
        ("Title\n\nBody.", 2),  # a blank line does
        ("1. Mix.\n2. Bake at 3.5 bar.", 2),  # list markers and decimals do not
        ("Wait... really?!", 1),  # an ellipsis before a lowercase word goes on
        ("Wait... Really?!", 2),
        ("No end mark", 1),
        ("", 0),
    ],
)
def test_sentence_count(text, sentences):
    assert count_sentences(text) == sentences


@pytest.mark.parametrize(
    ("reply", "keys", "ok"),
    [
        ("[1, 2]", None, True),
        ("null", None, False),
        ("5", None, False),
        ('{"a": 1} and {"b": 2}', None, False),
        ('```json\n{"a": 1}\n```\n```json\n{"b": 2}\n```', None, False),
        ('See [note]: {"a": 1}', ["a"], True),
        ('```python\nx = {"a": 1}\n```', ["a"], True),
        ('```json\n{"a": 1,}\n```', None, False),
    ],
)
def test_json_rule(reply, keys, ok):
    assert json_ok(reply, keys) is ok


@pytest.mark.parametrize(
    ("rule", "message"),
    [
        ({"type": "bullets"}, "needs the field 'value'"),
        ({"type": "keyword_count", "value": "x"}, "needs the field 'min'"),
        ({"type": "highlights"}, "needs the field 'min'"),
        ({"type": "include", "value": "cat"}, "must be a list"),
        ({"type": "max_words", "value": "10"}, "must be a int"),
        ({"type": "json", "keys": "city"}, "must be a list"),
        ({"value": 3}, "unknown verifiable rule type None"),
    ],
)
def test_bad_rules_are_named(rule, message):
    with pytest.raises(EvalError, match=re.escape(message)) as raised:
        check_rule("reply", rule)
    assert str(rule) in str(raised.value)
