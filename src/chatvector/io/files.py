"""Reading the small files of a model directory (JSON configs and the like) safely."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from chatvector.errors import CheckpointError

__all__ = ["read_json", "is_inside"]


def read_json(path: Path, what: str) -> dict[str, Any]:
    """Read a JSON object from ``path``, with an error that names the file and the problem."""
    try:
        data = json.loads(Path(path).read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise CheckpointError(f"{path}: {what} not found") from None
    except OSError as error:
        raise CheckpointError(f"cannot read {path} ({what}): {error.strerror or error}") from None
    except (UnicodeDecodeError, json.JSONDecodeError) as error:
        raise CheckpointError(f"{path}: {what} is not valid JSON ({error})") from None
    except RecursionError:  # hostile nesting depth; json recurses per level
        raise CheckpointError(f"{path}: {what} is nested too deeply to be a real {what}") from None
    if not isinstance(data, dict):
        raise CheckpointError(f"{path}: {what} must be a JSON object")
    return data


def is_inside(path: Path, root: Path) -> bool:
    """Whether ``path``, links followed, lies within ``root`` (a resolved directory)."""
    try:
        path.resolve().relative_to(root)
    except ValueError:
        return False
    return True
