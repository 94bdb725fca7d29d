"""One seed of the demo: its family → chatvector merges at several ratios → evaluation.

:func:`evaluate_family` runs in a worker process (see :mod:`chatvector.demo.seeds`); it merges with
the library's public API, scores every model on the held-out prompts and returns a summary.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import chatvector
from chatvector.demo import DEFAULT_RATIOS, corpus
from chatvector.demo.determinism import weights_fingerprint
from chatvector.demo.evaluate import METRICS, Reply, generate, score
from chatvector.demo.family import DemoConfig, Family
from chatvector.demo.prompts import PROMPTS_FILE, write_prompts

log = logging.getLogger(__name__)

HEADLINE = ("fact_clean", "refusal_zh", "recall", "repeat")  # logged after each evaluation


@dataclass
class ModelResult:
    name: str
    ratio: float | None  # None for base, chat and cp
    metrics: dict[str, float]
    samples: list[dict[str, Any]]


def merged_name(ratio: float) -> str:
    return f"cp+cv@{ratio:g}"


def _samples(replies: list[Reply], per_kind: int = 2) -> list[dict[str, Any]]:
    chosen: list[dict[str, Any]] = []
    seen: dict[str, int] = {}
    for reply in replies:
        if seen.get(reply.item.kind, 0) < per_kind:
            seen[reply.item.kind] = seen.get(reply.item.kind, 0) + 1
            chosen.append(
                {
                    "kind": reply.item.kind,
                    "conversation": list(reply.item.messages),
                    "reply": reply.text,
                    "stopped": reply.stopped,
                    "expected": reply.item.expected,
                }
            )
    return chosen


def evaluate_family(
    config: DemoConfig, family: Family, out_dir: Path, ratios: tuple[float, ...] = DEFAULT_RATIOS
) -> dict[str, Any]:
    """Merge ``cp + r·(chat − base)`` for every ratio, score all models, write ``results.json`` and
    the prompts as eval data (``prompts.jsonl``, for ``--suite demo``)."""
    started = time.perf_counter()
    out_dir.mkdir(parents=True, exist_ok=True)
    items = corpus.eval_items(family.world)
    write_prompts(out_dir / PROMPTS_FILE, items)
    models: list[tuple[str, float | None, Path]] = [
        ("base", None, family.base),
        ("chat", None, family.chat),
        ("cp", None, family.cp),
    ]
    for merge_ratio in ratios:
        merged = out_dir / "models" / merged_name(merge_ratio)
        log.info("merge (seed %d): cp + %g·(chat − base) → %s", config.seed, merge_ratio, merged)
        chatvector.merge(
            base=family.base,
            chat=family.chat,
            target=family.cp,
            ratio=merge_ratio,
            out=merged,
            run=chatvector.RunOptions(force=True, threads=1),
        )
        models.append((merged_name(merge_ratio), merge_ratio, merged))
    results = []
    for name, ratio, folder in models:
        replies = generate(folder, items)
        metrics = score(replies)
        log.info(
            "evaluate %s (seed %d): %s",
            name,
            config.seed,
            ", ".join(f"{metric} {metrics[metric]:.0%}" for metric in HEADLINE),
        )
        results.append(ModelResult(name, ratio, metrics, _samples(replies)))
    counts: dict[str, int] = {}
    for item in items:
        counts[item.kind] = counts.get(item.kind, 0) + 1
    summary = {
        "seed": config.seed,
        "config": dataclasses.asdict(config),
        "cache": str(family.base.parent),
        "family": {stage: str(getattr(family, stage)) for stage in ("base", "chat", "cp")},
        "prompts_file": str(out_dir / PROMPTS_FILE),
        "fingerprints": {stage: weights_fingerprint(getattr(family, stage)) for stage in ("base", "chat", "cp")},
        "ratios": list(ratios),
        "prompts": counts,
        "metrics": dict(METRICS),
        "models": [asdict(r) for r in results],
        "seconds": {"evaluation": round(time.perf_counter() - started, 1)},
    }
    (out_dir / "results.json").write_text(json.dumps(summary, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")
    return summary
