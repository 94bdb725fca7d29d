"""Verifiable instructions: rules a reply can be checked against with no judge.

Lengths are CJK-aware: Chinese and Japanese are written without spaces, so each Han or kana
character counts as one word; Korean and Latin-script words are separated by spaces.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable
from typing import Any

from chatvector.errors import EvalError
from chatvector.eval.language import is_target_language

_CJK_CHAR = re.compile(r"[\u3040-\u30ff\u3400-\u4dbf\u4e00-\u9fff\uf900-\ufaff]")
_WORD = re.compile(r"[A-Za-z0-9\u00c0-\u024f\uac00-\ud7af']+")
_BULLET = re.compile(r"^\s*(?:[-*•・]|\d+[.)、]|[一二三四五六七八九十]+[、.])\s*\S", re.MULTILINE)


def count_words(text: str) -> int:
    """Words in ``text``: each Han/kana character, plus each Latin or Hangul word."""
    return len(_CJK_CHAR.findall(text)) + len(_WORD.findall(_CJK_CHAR.sub(" ", text)))


def count_chars(text: str) -> int:
    """Characters that are not white space."""
    return len(re.sub(r"\s", "", text))


def count_bullets(text: str) -> int:
    return len(_BULLET.findall(text))


def count_paragraphs(text: str) -> int:
    return len([p for p in re.split(r"\n\s*\n", text.strip()) if p.strip()])


def _json_ok(text: str) -> bool:
    body = re.sub(r"^```(?:json)?\s*|\s*```$", "", text.strip())
    try:
        json.loads(body)
    except ValueError:
        return False
    return True


def _lower(text: str) -> str:
    return text.casefold()


CHECKS: dict[str, Callable[[str, dict[str, Any]], bool]] = {
    "max_chars": lambda r, a: count_chars(r) <= a["value"],
    "min_chars": lambda r, a: count_chars(r) >= a["value"],
    "max_words": lambda r, a: count_words(r) <= a["value"],
    "min_words": lambda r, a: count_words(r) >= a["value"],
    "bullets": lambda r, a: count_bullets(r) == a["value"],
    "paragraphs": lambda r, a: count_paragraphs(r) == a["value"],
    "include": lambda r, a: all(_lower(w) in _lower(r) for w in a["value"]),
    "exclude": lambda r, a: not any(_lower(w) in _lower(r) for w in a["value"]),
    "starts_with": lambda r, a: r.strip().startswith(a["value"]),
    "ends_with": lambda r, a: r.strip().endswith(a["value"]),
    "json": lambda r, a: _json_ok(r),
    "language": lambda r, a: is_target_language(r, a["value"]),
}


def check_rule(reply: str, rule: dict[str, Any]) -> bool:
    """Whether ``reply`` satisfies one rule (``{"type": ..., "value": ...}``)."""
    kind = rule.get("type")
    if kind not in CHECKS:
        raise EvalError(f"unknown verifiable rule type {kind!r}; known: {', '.join(sorted(CHECKS))}")
    if kind != "json" and "value" not in rule:
        raise EvalError(f"rule {kind!r} needs a 'value'")
    return CHECKS[kind](reply, rule)
