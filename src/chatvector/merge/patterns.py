"""Regular expressions from users (``--exclude``, ``--ratio-rule``, a recipe's ``match``), compiled
in one place with a bound.

Python's ``re`` fails on hostile patterns in several ways: ``re.error`` for bad syntax,
``OverflowError`` for a repeat count beyond its limit (``a{99999999999}``), ``RecursionError`` for
deep nesting. Every user pattern goes through :func:`user_pattern`, which turns each of them,
and a pattern longer than :data:`MAX_PATTERN` characters, into one ``ValueError`` naming the
pattern, so callers report it as a bad option or recipe value instead of a traceback.
"""

from __future__ import annotations

import functools
import re

__all__ = ["user_pattern", "MAX_PATTERN"]

MAX_PATTERN = 1000  # characters: tensor-name patterns are short; a longer one is a mistake or an attack


@functools.lru_cache(maxsize=4096)
def user_pattern(pattern: str) -> re.Pattern[str]:
    """``pattern`` compiled, or a ValueError saying why it cannot be used.

    Raises:
        ValueError: a pattern that is too long or does not compile (any of ``re``'s failures).
    """
    if not isinstance(pattern, str):
        raise ValueError(f"{pattern!r} is not a regular expression (a string)")
    shown = repr(pattern[:80]) + ("…" if len(pattern) > 80 else "")
    if len(pattern) > MAX_PATTERN:
        raise ValueError(
            f"{shown} is {len(pattern)} characters long; a regular expression may have at most {MAX_PATTERN}"
        )
    try:
        return re.compile(pattern)
    except (re.error, OverflowError, RecursionError, MemoryError) as error:
        reason = str(error) or type(error).__name__
        raise ValueError(f"{shown} is not a valid regular expression: {reason}") from None
