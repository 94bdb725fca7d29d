"""The sweep's own state files (sweep-spec.json, sweep.json, timings.json, the reports): written
whole or not at all, and read back as a clear error when they are not what the sweep wrote.

A kill can come at any moment of a sweep; the next run reads what the last one left. So every
file is written as the evaluation writes its own (:mod:`chatvector.eval.state_files`: strict JSON,
a temporary file beside the target, fsync, one rename): a reader finds the old file or the new one,
never half of one. A file torn some other way (a full disk, a copy cut short, an edit) is reported
with its path and what to do, never as a traceback.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from chatvector.errors import InputError
from chatvector.eval.state_files import write_json, write_text

__all__ = ["write_text", "write_json", "read_json"]


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
