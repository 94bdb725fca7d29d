"""The language detector: hard cases per language, the Chinese-script rules, the labelled set."""

from __future__ import annotations

import pytest
from scorer_table import LANGUAGES, case_id, load_cases

from chatvector.errors import EvalError
from chatvector.eval.language import (
    LanguageGuess,
    detect_language,
    han_evidence,
    is_target_language,
    normalise_language,
    prose_of,
    script_weights,
)

HARD = load_cases("hard_language")


def test_every_language_has_fifteen_hard_cases():
    assert all(sum(c["lang"] == lang for c in HARD) >= 15 for lang in LANGUAGES)


@pytest.mark.parametrize("case", HARD, ids=[case_id(c) for c in HARD])
def test_hard_cases(case):
    assert detect_language(case["text"]).language == case["expect"]


@pytest.mark.parametrize(
    ("text", "left_out"),
    [
        ("答案：\n```python\nprint('hello world')\n```", "hello"),
        ("用 `numpy.array` 就好", "numpy"),
        ('結果 {"city": "Tokyo"} 如上', "Tokyo"),
        ("見 https://example.com/docs 與 a@b.org", "example"),
        ("共 1,250.5 元", "1"),
    ],
)
def test_prose_leaves_out_code_json_urls_addresses_and_numbers(text, left_out):
    assert left_out not in prose_of(text)
    assert any("\u4e00" <= c <= "\u9fff" for c in prose_of(text))


def test_latin_words_weigh_against_han_characters_and_borrowed_runs_weigh_half():
    weights = script_weights("我用 Python 寫程式")
    assert weights["latin"] == 0.5  # one word, between Han runs
    assert weights["cjk"] == 5
    assert script_weights("machine learning")["latin"] == 2  # words, not letters


def test_han_evidence_counts_contradictions_of_each_hypothesis():
    # 這 and 體 are Traditional-only; 這 and 是 are Chinese function characters, 體 is 体 in Japanese.
    assert han_evidence("這是繁體") == {"zh-Hant": 0, "zh-Hans": 2, "ja": 3}
    assert han_evidence("气象") == {"zh-Hant": 1, "zh-Hans": 0, "ja": 1}
    # 気 and 庁 are Japanese-only forms (氣/气, 廳/厅).
    assert han_evidence("気象庁") == {"zh-Hant": 2, "zh-Hans": 2, "ja": 0}


@pytest.mark.parametrize(
    ("text", "language"),
    [
        ("哈利・波特是英國小說。", "zh-Hant"),  # katakana middle dot between parts of a foreign name
        ("哈利･波特是英国小说。", "zh-Hans"),  # its half-width form
        ("里長宣布干擾已經排除。", "zh-Hant"),  # 里, 布, 干: OpenCC turns them into 裡, 佈, 幹
        ("我了解，面積很大，發霉的要丟掉。", "zh-Hant"),
        ("了解。", "zh"),
        ("里长宣布干扰已经排除。", "zh-Hans"),
    ],
)
def test_characters_valid_in_both_scripts_are_no_evidence(text, language):
    assert detect_language(text).language == language


@pytest.mark.parametrize(
    ("guess", "target", "matches"),
    [
        ("zh", "zh-Hant", True),
        ("zh", "zh-TW", True),
        ("zh", "zh-Hans", True),
        ("zh-Hant", "zh-Hans", False),
        ("zh-Hans", "zh-CN", True),
        ("none", "en", False),
        ("zh", "ja", False),
        ("ja", "ja-JP", True),
    ],
)
def test_undecided_chinese_matches_both_scripts(guess, target, matches):
    assert LanguageGuess(guess, 1.0).matches(target) is matches


def test_is_target_language_uses_matches_and_the_script():
    assert is_target_language("你叫小明，住在上海。", "zh-TW")
    assert is_target_language("你叫小明，住在上海。", "zh-CN")
    assert not is_target_language("这是简体中文的回答。", "zh-TW")
    assert is_target_language("這是繁體中文的回答。", "zh-TW")
    assert not is_target_language("42", "en")


def test_aliases():
    assert normalise_language(" zh-TW ") == "zh-Hant"
    assert normalise_language("ko-KR") == "ko"
    assert normalise_language("fr") == "fr"


def test_unknown_detector_is_named():
    with pytest.raises(EvalError, match="unknown language detector 'magic'"):
        detect_language("hello", detector="magic")


@pytest.mark.slow  # loads lingua's models: seconds and about 1 GB of memory
def test_lingua_detector_when_installed():
    pytest.importorskip("lingua")
    assert detect_language("Transformer 是一種基於 self-attention 機制的模型。", "lingua").language == "zh-Hant"
    assert detect_language("5", "lingua").language == "none"


def test_labelled_set_accuracy_of_the_default_detector():
    """A regression floor on the ≥ 300 labelled replies (measured: see docs/eval-scorers.md)."""
    rows = load_cases("language_labelled")
    assert len(rows) >= 300 and all(sum(r["lang"] == lang for r in rows) >= 60 for lang in LANGUAGES)
    for lang in LANGUAGES:
        mine = [r for r in rows if r["lang"] == lang]
        correct = sum(detect_language(r["text"]).matches(lang) for r in mine)
        assert correct / len(mine) >= 0.9, (lang, correct, len(mine))
