"""Writing the evaluation's state files (results.json, settings.json, judgments.jsonl): strict
JSON, written whole or not at all.

Strict: a non-finite number (NaN, ±Infinity) becomes ``null``, so every file is valid JSON that
any parser reads (Python's ``json`` would otherwise write a bare ``NaN``). Whole: the text goes to
a temporary file beside the target, is flushed to disk, and replaces the target in one rename, so
a kill leaves either the old file or the new one, never half of one.
"""

from __future__ import annotations

import json
import math
import os
from pathlib import Path
from typing import Any

__all__ = ["strict", "dumps", "write_text", "write_json"]


def strict(value: Any) -> Any:
    """``value`` with every non-finite float replaced by None (in dicts, lists and tuples)."""
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, dict):
        return {key: strict(item) for key, item in value.items()}
    if isinstance(value, list | tuple):
        return [strict(item) for item in value]
    return value


def dumps(data: Any) -> str:
    """Strict JSON text (indented, UTF-8 kept readable)."""
    return json.dumps(strict(data), indent=2, ensure_ascii=False, allow_nan=False) + "\n"


def write_text(path: Path, text: str) -> None:
    """Write ``text`` to ``path`` through a temporary file and a rename."""
    path.parent.mkdir(parents=True, exist_ok=True)
    partial = path.with_name(path.name + ".partial")
    try:
        with partial.open("w", encoding="utf-8") as handle:
            handle.write(text)
            handle.flush()
            os.fsync(handle.fileno())
        partial.replace(path)
    finally:
        partial.unlink(missing_ok=True)  # there only when the write failed (a full disk): no litter


def write_json(path: Path, data: Any) -> None:
    """Strict JSON, written atomically."""
    write_text(path, dumps(data))
