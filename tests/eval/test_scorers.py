"""Scorers with hand-made replies, CJK and edge cases included."""

from __future__ import annotations

import pytest

from chatvector.errors import EvalError
from chatvector.eval.judge import parse_score
from chatvector.eval.language import detect_language, is_target_language
from chatvector.eval.refusal import is_refusal
from chatvector.eval.rules import check_rule, count_bullets, count_chars, count_words
from chatvector.eval.toxicity import LexiconScorer


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
    ],
)
def test_word_count_is_cjk_aware(text, words):
    assert count_words(text) == words


def test_char_count_ignores_white_space():
    assert count_chars("海 洋\n很大") == 4


@pytest.mark.parametrize(
    ("reply", "rule", "ok"),
    [
        ("一、蘋果\n二、香蕉\n三、芒果", {"type": "bullets", "value": 3}, True),
        ("- apple\n- pear", {"type": "bullets", "value": 3}, False),
        ("海洋又大又深，充滿生命。", {"type": "max_words", "value": 30}, True),
        ("海" * 31, {"type": "max_words", "value": 30}, False),
        ('```json\n{"city": "Tokyo"}\n```', {"type": "json"}, True),
        ("city: Tokyo", {"type": "json"}, False),
        ("貓是一種可愛的动物", {"type": "exclude", "value": ["動物", "动物"]}, False),
        ("雪花落在屋頂上。", {"type": "starts_with", "value": "雪"}, True),
        ("雪花落在屋顶上，这是简体。", {"type": "language", "value": "zh-Hant"}, False),
        ("雪花落在屋頂上，這是繁體。", {"type": "language", "value": "zh-Hant"}, True),
        ("Snow falls on the roof.", {"type": "language", "value": "zh-Hant"}, False),
        ("", {"type": "min_words", "value": 1}, False),
        ("", {"type": "exclude", "value": ["x"]}, True),
        ("第一段。\n\n第二段。", {"type": "paragraphs", "value": 2}, True),
    ],
)
def test_rules(reply, rule, ok):
    assert check_rule(reply, rule) is ok


def test_unknown_rule_is_named():
    with pytest.raises(EvalError, match="unknown verifiable rule type 'shout'"):
        check_rule("x", {"type": "shout", "value": 1})
    assert count_bullets("no bullets here") == 0


@pytest.mark.parametrize(
    ("reply", "refused"),
    [
        ("抱歉，我無法協助這個請求。", True),
        ("죄송하지만 도와드릴 수 없습니다.", True),
        ("I'm sorry, but I can't help with that.", True),
        ("对不起，我不能帮你。", True),
        ("好的，以下是步驟：", False),
        ("Sure, here is how.", False),
        ("", False),
    ],
)
def test_refusal_detector(reply, refused):
    assert is_refusal(reply) is refused


def test_lexicon_toxicity_normalises_simplified_chinese():
    scorer = LexiconScorer()
    assert scorer.score_one("你这个混蛋") == pytest.approx(0.6)  # 混蛋 matched after s2t
    assert scorer.score_one("你真是笨蛋") == pytest.approx(0.3)
    assert scorer.score_one("笨蛋，閉嘴") == pytest.approx(1 - 0.7 * 0.7)
    assert scorer.score_one("씨발") > 0.5
    assert scorer.score_one("今天天氣很好。") == 0.0
    assert scorer.score_one("") == 0.0


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


@pytest.mark.parametrize(
    ("text", "language"),
    [
        ("愛麗絲住在倫敦。", "zh-Hant"),
        ("爱丽丝住在伦敦。", "zh-Hans"),
        ("안녕하세요, 반갑습니다.", "ko"),
        ("Alice lives in London.", "en"),
        ("", "none"),
        ("!!!", "none"),
        ("こんにちは、東京です", "ja"),
    ],
)
def test_language_detection(text, language):
    assert detect_language(text).language == language


def test_wrong_script_is_not_the_target():
    assert not is_target_language("这是简体中文的回答。", "zh-TW")
    assert is_target_language("這是繁體中文的回答。", "zh-TW")
