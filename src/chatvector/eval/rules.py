"""Verifiable instructions: rules a reply can be checked against with no judge.

The vocabulary and its semantics are those of ``docs/eval-data.md``. Lengths are CJK-aware:
Chinese and Japanese are written without spaces, so each Han, kana or full-width letter or digit
counts as one word; Latin and Hangul words are runs between spaces and punctuation. Markup
(``**bold**``, backticks, headings, quotes around the reply) is looked through wherever it would
otherwise decide the result.
"""

from __future__ import annotations

import json
import re
import unicodedata
from collections.abc import Callable
from typing import Any

from chatvector.errors import EvalError
from chatvector.eval.language import is_target_language

_CJK_CHAR = re.compile(
    r"[\u3040-\u309f\u30a0-\u30fa\u30fc-\u30ff\u3400-\u4dbf\u4e00-\u9fff\uf900-\ufaff"
    r"\uff10-\uff19\uff21-\uff3a\uff41-\uff5a\uff66-\uff9f\U00020000-\U0002ffff]"
)
# Latin (with digits, inner apostrophes and hyphens) and Hangul words.
_WORD = re.compile(r"[0-9A-Za-z\u00c0-\u024f\uac00-\ud7af\u3130-\u318f]+(?:['’\-][0-9A-Za-z\u00c0-\u024f]+)*")

_FENCE = re.compile(r"^[ \t]*```.*?(?:^[ \t]*```[ \t]*$|\Z)", re.MULTILINE | re.DOTALL)
# A bullet: marker, then text with a letter or digit. `-`, `*`, `–` need a space after them so that
# `---`, `**title**` and `* * *` are not bullets; the CJK dots do not.
_BULLET = re.compile(r"^[ \t]*(?:[-*–－＊][ \t]+|[•・‧·][ \t]*)(?=.*?[^\W_])", re.MULTILINE)
_CJK_NUMERAL = "一二三四五六七八九十百零〇"
_NUMBERED = re.compile(
    r"^[ \t]*(?:\*\*)?(?:"
    r"[0-9０-９]{1,3}[.)．）、](?![0-9０-９])"  # 1.  1)  １．  1、
    r"|[(（][0-9０-９]{1,3}[)）]"  # (1)  （1）
    r"|[(（][" + _CJK_NUMERAL + r"]{1,3}[)）]"  # （一）
    r"|[\u2460-\u2473\u3251-\u325f\u32b1-\u32bf\u2474-\u2487\u2488-\u249b\u2776-\u277f]"  # ① ⑴ ⒈ ❶
    r"|[" + _CJK_NUMERAL + r"]{1,3}[、.．]"  # 一、
    r"|第[" + _CJK_NUMERAL + r"0-9０-９]{1,3}[步點点項项條条個个章節节部]?[，,、:：.．]"  # 第一，
    r"|[가나다라마바사아자차카타파하ㄱㄴㄷㄹㅁㅂㅅㅇㅈㅊㅋㅌㅍㅎ][.)](?=[ \t])"  # 가.  ㄱ.
    r")(?:\*\*)?[ \t]*(?=\S)",
    re.MULTILINE,
)
_SENTENCE_END = re.compile(
    r"[。！？!?]+[」』”’\"')）]*"
    r"|(?<!\bMr)(?<!\bMrs)(?<!\bMs)(?<!\bDr)(?<!\bSt)(?<!\bvs)(?<!\be\.g)(?<!\bi\.e)"
    r"\.+[\"'”’)）]*(?=\s+[^a-z\s]|\s*$)"
)
_LIST_MARKER = re.compile(r"^[ \t]*(?:[0-9０-９]{1,3}[.．)]|[-*•・‧·–])[ \t]+", re.MULTILINE)
_HIGHLIGHT = re.compile(r"\*\*(?=\S)(.+?)(?<=\S)\*\*|__(?=\S)(.+?)(?<=\S)__")  # both render bold
_KOREAN_MARKER = re.compile(r"^[ \t]*(?:\*\*)?[가-힣ㄱ-ㅎ]")
_KOREAN_FIRST = re.compile(r"^[ \t]*(?:\*\*)?[가ㄱ][.)][ \t]", re.MULTILINE)
_END_PUNCTUATION = "。．.！!？?…"
_JSON_START = re.compile(r"[\[{]")
_QUOTES = "\"'“”‘’「」『』《》〈〉«»"


def count_words(text: str) -> int:
    """Words in ``text``: each Han, kana or full-width character, plus each Latin or Hangul word."""
    return len(_CJK_CHAR.findall(text)) + len(_WORD.findall(_CJK_CHAR.sub(" ", text)))


def strip_markup(text: str) -> str:
    """``text`` without Markdown emphasis, backticks, heading and quote markers."""
    text = re.sub(r"^[ \t]*(?:#{1,6}|>)[ \t]+", "", text, flags=re.MULTILINE)
    text = text.replace("**", "").replace("__", "").replace("`", "")
    # Single * and _ only where they are emphasis (next to a word), not in snake_case or 2 * 3.
    return re.sub(r"(?<![\w*])[*_](?=\S)|(?<=\S)[*_](?![\w*])", "", text)


def count_chars(text: str) -> int:
    """Characters that are not white space, markup left out."""
    return len(re.sub(r"\s", "", strip_markup(text)))


def count_bullets(text: str) -> int:
    """Bullet lines outside code blocks (see ``docs/eval-data.md`` for the markers)."""
    return len(_BULLET.findall(_FENCE.sub("", text)))


def count_list_items(text: str) -> int:
    """Items of the reply's list: its bullet lines, or, with no bullet line, its numbered lines. A
    list written ``（一）``, ``1)``, ``①`` or ``一、`` is what many writers of Chinese, Japanese and
    Korean give when asked for bullet points."""
    return count_bullets(text) or count_numbered(text)


def _bullets_ok(reply: str, value: int) -> bool:
    # Asked for N bullet points, a list of N items in any marker passes; asked for none (value 0,
    # usually beside a numbered rule: "number them instead"), only bullet markers count.
    return count_list_items(reply) == value if value > 0 else count_bullets(reply) == 0


def count_numbered(text: str) -> int:
    """Numbered lines outside code blocks: ``1.``, ``１．``, ``（1）``, ``①``, ``一、``, ``第一，``, ``가.``…

    Hangul-letter markers count only in a list (two such lines, or one ``가.`` / ``ㄱ.`` line), so
    that a one-syllable word and a period (``아. 그렇군요``) is not a list item.
    """
    body = _FENCE.sub("", text)
    found = [m.group() for m in _NUMBERED.finditer(body)]
    korean = sum(bool(_KOREAN_MARKER.match(marker)) for marker in found)
    korean_list = korean >= 2 or bool(_KOREAN_FIRST.search(body))
    return len(found) - (0 if korean_list else korean)


def count_paragraphs(text: str) -> int:
    return len([p for p in re.split(r"\n[ \t]*\n", text.strip()) if p.strip()])


def count_sentences(text: str) -> int:
    """Sentences ended by ``。！？.!?`` (runs count once), by a blank line or by the end of the text.

    A single line break does not end a sentence (a list item or a title without end punctuation
    runs on into the next line), a paragraph break does. A period ends a sentence only before
    white space and a non-lowercase character or the end, so 3.14, e.g., example.com and list
    markers (``1.``) do not split sentences.
    """
    body = _LIST_MARKER.sub("", strip_markup(text)).replace("…", "...").replace("⋯", "...")
    pieces = [piece for paragraph in re.split(r"\n[ \t]*\n", body) for piece in _SENTENCE_END.split(paragraph)]
    return len([p for p in pieces if re.search(r"[^\W_]", p)])


# Katakana folded to hiragana: じゃがいも and ジャガイモ are one word written two ways.
_KATAKANA_TO_HIRAGANA = {code: code - 0x60 for code in range(0x30A1, 0x30F7)}


def fold(text: str) -> str:
    """``text`` as strings are compared: NFKC (full-width and half-width forms), case folded,
    katakana folded to hiragana."""
    return unicodedata.normalize("NFKC", text).casefold().translate(_KATAKANA_TO_HIRAGANA)


def _normal(text: str) -> str:
    """Full-width forms folded (NFKC), case folded, kana folded, markup removed: for matching strings."""
    return fold(strip_markup(text))


def _contains(reply: str, needle: str) -> bool:
    wanted = fold(needle)
    return wanted in _normal(reply) or wanted in fold(reply)


def keyword_count(reply: str, keyword: str) -> int:
    """Occurrences of ``keyword`` in ``reply`` (case-insensitive, full-width folded, through markup)."""
    return _normal(reply).count(fold(keyword))


def _trimmed(reply: str) -> str:
    """The reply without markup, surrounding white space and quotes; full-width folded, case folded."""
    return fold(strip_markup(reply)).strip().strip(_QUOTES).strip()


def _edge_match(reply: str, value: str, at_start: bool) -> bool:
    """``starts_with`` / ``ends_with``, case-insensitive; when the value has no end punctuation of
    its own, the reply's is ignored too (``…謝謝。`` ends with ``謝謝``)."""
    text, wanted = _trimmed(reply), _trimmed(value)
    if not wanted:
        return False
    if at_start:
        return text.startswith(wanted)
    if not wanted.endswith(tuple(_END_PUNCTUATION)):
        text = text.rstrip(_END_PUNCTUATION + " ").strip(_QUOTES).rstrip(_END_PUNCTUATION + " ")
    return text.endswith(wanted)


def json_values(reply: str) -> list[Any]:
    """The JSON objects and arrays a reply holds: in ```json fences if there are any, else in
    any fence, else anywhere in the text (prose around them allowed)."""
    fences = re.findall(r"^[ \t]*```[ \t]*(\w*)[ \t]*\n(.*?)^[ \t]*```", reply, re.MULTILINE | re.DOTALL)
    tagged = [body for tag, body in fences if tag.lower() == "json"]
    for sources in (tagged, [body for _, body in fences], [reply]):
        values = [value for source in sources for value in _decoded(source)]
        if values:
            return values
    return []


def _decoded(text: str) -> list[Any]:
    decoder, values, start = json.JSONDecoder(), [], 0
    while (found := _JSON_START.search(text, start)) is not None:
        try:
            value, end = decoder.raw_decode(text, found.start())
        except ValueError:
            start = found.start() + 1
            continue
        values.append(value)
        start = end
    return values


def json_ok(reply: str, keys: list[str] | None = None) -> bool:
    """Exactly one JSON object or array in the reply; with ``keys``, an object holding them all.

    Bare scalars (``null``, ``5``) are not JSON output: any number would pass otherwise.
    """
    values = []
    for value in json_values(reply):
        if value not in values:  # the same JSON shown twice (bare and fenced) is one value
            values.append(value)
    if len(values) != 1:
        return False
    if keys is None:
        return True
    return isinstance(values[0], dict) and all(key in values[0] for key in keys)


def _letters(reply: str) -> str:
    return "".join(re.findall(r"[A-Za-z\u00c0-\u024f]", reply))


# type -> (required fields, check)
CHECKS: dict[str, tuple[tuple[str, ...], Callable[[str, dict[str, Any]], bool]]] = {
    "max_words": (("value",), lambda r, a: count_words(r) <= a["value"]),
    "min_words": (("value",), lambda r, a: count_words(r) >= a["value"]),
    "max_chars": (("value",), lambda r, a: count_chars(r) <= a["value"]),
    "min_chars": (("value",), lambda r, a: count_chars(r) >= a["value"]),
    "max_sentences": (("value",), lambda r, a: count_sentences(r) <= a["value"]),
    "bullets": (("value",), lambda r, a: _bullets_ok(r, a["value"])),
    "numbered": (("value",), lambda r, a: count_numbered(r) == a["value"]),
    "paragraphs": (("value",), lambda r, a: count_paragraphs(r) == a["value"]),
    "include": (("value",), lambda r, a: all(_contains(r, w) for w in a["value"])),
    "exclude": (("value",), lambda r, a: not any(_contains(r, w) for w in a["value"])),
    "keyword_count": (
        ("value", "min"),
        lambda r, a: a["min"] <= keyword_count(r, a["value"]) <= a.get("max", float("inf")),
    ),
    "starts_with": (("value",), lambda r, a: _edge_match(r, a["value"], at_start=True)),
    "ends_with": (("value",), lambda r, a: _edge_match(r, a["value"], at_start=False)),
    "json": ((), lambda r, a: json_ok(r, a.get("keys"))),
    "language": (("value",), lambda r, a: is_target_language(r, a["value"])),
    "highlights": (("min",), lambda r, a: len(_HIGHLIGHT.findall(r)) >= a["min"]),
    "lowercase": ((), lambda r, a: bool(_letters(r)) and _letters(r) == _letters(r).lower()),
    "uppercase": ((), lambda r, a: bool(_letters(r)) and _letters(r) == _letters(r).upper()),
}
_FIELD_TYPES: dict[str, type | dict[str, type]] = {
    "value": {
        "include": list,
        "exclude": list,
        "keyword_count": str,
        "starts_with": str,
        "ends_with": str,
        "language": str,
    },
    "min": int,
    "max": int,
    "keys": list,
}


def _validate(rule: dict[str, Any]) -> str:
    kind = rule.get("type")
    if kind not in CHECKS:
        raise EvalError(f"unknown verifiable rule type {kind!r} in rule {rule}; known: {', '.join(sorted(CHECKS))}")
    required, _ = CHECKS[kind]
    for name in required:
        if name not in rule:
            raise EvalError(f"rule {rule} (type {kind!r}) needs the field {name!r}; see docs/eval-data.md")
    for name, expected in _FIELD_TYPES.items():
        if name not in rule or name == "value" and name not in required:
            continue
        wanted: type = expected.get(kind, int) if isinstance(expected, dict) else expected
        value = rule[name]
        if not isinstance(value, wanted) or isinstance(value, bool):
            raise EvalError(f"rule {rule}: field {name!r} must be a {wanted.__name__}, got {value!r}")
        if isinstance(value, list) and not all(isinstance(item, str) for item in value):
            raise EvalError(f"rule {rule}: field {name!r} must be a list of strings")
    return kind


def check_rule(reply: str, rule: dict[str, Any]) -> bool:
    """Whether ``reply`` satisfies one rule (``{"type": ..., ...}``, see ``docs/eval-data.md``).

    An unknown type, a missing field or a field of the wrong type raises :class:`EvalError`
    naming the rule.
    """
    kind = _validate(rule)
    return CHECKS[kind][1](reply, rule)
