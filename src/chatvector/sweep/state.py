"""The sweep's own state files (sweep-spec.json, sweep.json, timings.json): written whole or not
at all, and read back as a clear error when they are not what the sweep wrote.

A kill can come at any moment of a sweep; the next run reads what the last one left. So every
file goes to a temporary name beside its target, is flushed to disk and renamed over it (a rename
is atomic): a reader finds the old file or the new one, never half of one. A file torn some other
way (a full disk, a copy cut short, an edit) is reported with its path and what to do, never as a
traceback.
"""

from __future__ import annotations

import json
import math
import os
from pathlib import Path
from typing import Any

from chatvector.errors import InputError

__all__ = ["write_text", "write_json", "read_json"]


def write_text(path: Path, text: str) -> None:
    """Write ``text`` to ``path`` through a temporary file beside it and one rename."""
    partial = path.with_name(f".{path.name}.partial")
    try:
        with partial.open("w", encoding="utf-8") as handle:
            handle.write(text)
            handle.flush()
            os.fsync(handle.fileno())
        partial.replace(path)
    finally:
        partial.unlink(missing_ok=True)  # only there when the write failed


def _strict(value: Any) -> Any:
    """Non-finite numbers as null: the files stay valid JSON for any reader."""
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, dict):
        return {key: _strict(item) for key, item in value.items()}
    if isinstance(value, list | tuple):
        return [_strict(item) for item in value]
    return value


def write_json(path: Path, data: Any) -> None:
    """Strict JSON (NaN written as null), atomically."""
    write_text(path, json.dumps(_strict(data), indent=2, ensure_ascii=False, allow_nan=False) + "\n")


def read_json(path: Path, fix: str) -> dict[str, Any]:
    """A JSON object the sweep wrote.

    Raises:
        InputError: the file is unreadable, not JSON, or not an object; the message names the file
            and ``fix`` (what to do about it).
    """
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, ValueError) as error:
        reason = error.strerror if isinstance(error, OSError) else "not valid JSON (torn or edited)"
        raise InputError(f"{path}: {reason}; {fix}", file=path) from None
    if not isinstance(data, dict):
        raise InputError(f"{path}: not a JSON object as the sweep writes it; {fix}", file=path)
    return data
