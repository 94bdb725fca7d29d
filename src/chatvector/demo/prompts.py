"""The demo's held-out prompts as eval data: one JSONL row per prompt, for the ``demo`` suite.

``chatvector demo`` writes each seed's as ``OUT/seed-N/prompts.jsonl``, so that ``chatvector
eval``, ``sweep`` and ``search`` evaluate a demo model on exactly the prompts the demo asks,
scored by the same rules (:mod:`chatvector.eval.suites.demo`): ``--suite demo --data
demo=OUT/seed-N/prompts.jsonl --lang zh-Hant --max-new-tokens 24``.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from chatvector.demo.corpus import EvalItem

__all__ = ["LANG", "MAX_NEW_TOKENS", "PROMPTS_FILE", "prompt_rows", "write_prompts"]

LANG = "zh-Hant"
MAX_NEW_TOKENS = 24  # what the demo generates per reply (chatvector.demo.evaluate.generate)
PROMPTS_FILE = "prompts.jsonl"


def prompt_rows(items: list[EvalItem]) -> list[dict[str, Any]]:
    """Each item as an eval sample: id, kind (``category``), the given turns before the last user
    turn (``history``), the prompt, and the word its reply must hold (``expected``).

    Raises:
        ValueError: an item without an id, or two with the same id (ids pair prompts across runs and
            decide the search's dev/held-out split).
    """
    rows, seen = [], set()
    for item in items:
        if not item.id or item.id in seen:
            raise ValueError(f"demo prompt ids must be present and distinct: {item.id!r} ({item.kind})")
        seen.add(item.id)
        *history, last = item.messages
        row: dict[str, Any] = {"id": item.id, "lang": LANG, "category": item.kind}
        if history:
            row["history"] = [dict(turn) for turn in history]
        row.update(prompt=last["content"], expected=item.expected)
        rows.append(row)
    return rows


def write_prompts(path: Path, items: list[EvalItem]) -> Path:
    """Write ``items`` as JSONL eval data at ``path``; returns it."""
    path.parent.mkdir(parents=True, exist_ok=True)
    text = "".join(json.dumps(row, ensure_ascii=False) + "\n" for row in prompt_rows(items))
    path.write_text(text, encoding="utf-8")
    return path
