"""The demo end to end: family → chatvector merges at several ratios → evaluation → report."""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path

import chatvector
from chatvector.demo import corpus
from chatvector.demo.evaluate import METRICS, Reply, generate, score
from chatvector.demo.family import DemoConfig, Family, build_family

log = logging.getLogger(__name__)

DEFAULT_RATIOS = (0.25, 0.5, 0.75, 1.0, 1.25, 1.5)


@dataclass
class ModelResult:
    name: str
    ratio: float | None  # None for base, chat and cp
    metrics: dict[str, float]
    samples: list[dict[str, object]]


def _samples(replies: list[Reply], per_kind: int = 2) -> list[dict[str, object]]:
    chosen, seen = [], {}
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


def run_demo(
    config: DemoConfig,
    out_dir: Path,
    *,
    ratios: tuple[float, ...] = DEFAULT_RATIOS,
    cache_dir: Path | None = None,
    rebuild: bool = False,
    report: Callable[[str, int, int, float], None] | None = None,
    on_model: Callable[[str], None] | None = None,
) -> dict[str, object]:
    """Build the family, merge ``cp + r·(chat − base)`` for every ratio, evaluate all models."""
    started = time.perf_counter()
    family = build_family(config, cache_dir, rebuild, report)
    trained = time.perf_counter() - started
    out_dir.mkdir(parents=True, exist_ok=True)
    items = corpus.eval_items(family.world)
    models: list[tuple[str, float | None, Path]] = [
        ("base", None, family.base),
        ("chat", None, family.chat),
        ("cp", None, family.cp),
    ]
    for ratio in ratios:
        merged = out_dir / "models" / f"cp+cv@{ratio:g}"
        chatvector.merge(
            base=family.base,
            chat=family.chat,
            target=family.cp,
            ratio=ratio,
            out=merged,
            run=chatvector.RunOptions(force=True, threads=1),
        )
        models.append((f"cp+cv@{ratio:g}", ratio, merged))
    results = []
    for name, ratio, folder in models:
        if on_model is not None:
            on_model(name)
        replies = generate(folder, items)
        results.append(ModelResult(name, ratio, score(replies), _samples(replies)))
    summary = _summary(config, family, results, ratios, trained, time.perf_counter() - started, items)
    _write(out_dir, summary)
    return summary


def _summary(
    config: DemoConfig,
    family: Family,
    results: list[ModelResult],
    ratios: tuple[float, ...],
    trained: float,
    total: float,
    items: list[corpus.EvalItem],
) -> dict[str, object]:
    counts: dict[str, int] = {}
    for item in items:
        counts[item.kind] = counts.get(item.kind, 0) + 1
    return {
        "config": asdict(config),
        "cache": str(family.root),
        "ratios": list(ratios),
        "prompts": counts,
        "metrics": {name: desc for name, desc in METRICS.items()},
        "models": [asdict(r) for r in results],
        "seconds": {"family": round(trained, 1), "total": round(total, 1)},
    }


def _write(out_dir: Path, summary: dict[str, object]) -> None:
    (out_dir / "results.json").write_text(
        json.dumps(summary, indent=2, ensure_ascii=False) + "\n", encoding="utf-8"
    )
    _plot(out_dir / "ratio.png", summary)
    (out_dir / "report.md").write_text(markdown_report(summary), encoding="utf-8")


def _plot(path: Path, summary: dict[str, object]) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    models = summary["models"]  # type: ignore[assignment]
    merged = [m for m in models if m["ratio"] is not None]  # type: ignore[index]
    reference = {m["name"]: m["metrics"] for m in models if m["ratio"] is None}  # type: ignore[index]
    figure, axis = plt.subplots(figsize=(7, 4.2), dpi=110)
    ratios = [m["ratio"] for m in merged]  # type: ignore[index]
    for metric in ("chat_format", "zh_hant", "fact_clean", "refusal", "english"):
        line = axis.plot(ratios, [m["metrics"][metric] for m in merged], marker="o", label=metric)  # type: ignore[index]
        axis.axhline(reference["cp"][metric], color=line[0].get_color(), linestyle=":", linewidth=0.8)
    axis.set_xlabel("chat-vector ratio r in cp + r·(chat − base)")
    axis.set_ylabel("share of held-out zh-Hant prompts")
    axis.set_ylim(-0.02, 1.02)
    axis.set_title("Tiny demo family: dotted lines = cp alone")
    axis.legend(fontsize=8, loc="best")
    figure.tight_layout()
    figure.savefig(path)
    plt.close(figure)


TABLE_METRICS = (
    "chat_format",
    "zh_hant",
    "english",
    "fact_correct",
    "fact_clean",
    "refusal",
    "repeat",
    "recall",
)


def markdown_report(summary: dict[str, object]) -> str:
    models = summary["models"]  # type: ignore[assignment]
    lines = [
        "# chatvector demo",
        "",
        f"Held-out Traditional Chinese prompts: {summary['prompts']}. "
        f"Family trained/reused in {summary['seconds']['family']} s; total {summary['seconds']['total']} s.",  # type: ignore[index]
        "",
        "| model | " + " | ".join(TABLE_METRICS) + " |",
        "|---|" + "---|" * len(TABLE_METRICS),
    ]
    for model in models:  # type: ignore[attr-defined]
        cells = " | ".join(f"{model['metrics'][m]:.0%}" for m in TABLE_METRICS)
        lines.append(f"| {model['name']} | {cells} |")
    lines += [
        "",
        "Metrics: " + "; ".join(f"**{k}**: {v}" for k, v in summary["metrics"].items()),  # type: ignore[attr-defined]
        "",
        "![metrics against the ratio](ratio.png)",
        "",
        "## Sample conversations",
        "",
    ]
    for model in models:  # type: ignore[attr-defined]
        lines.append(f"### {model['name']}")
        for sample in model["samples"][:4]:
            asked = sample["conversation"][-1]["content"]
            lines.append(f"- `{asked}` → `{sample['reply']}`{'' if sample['stopped'] else ' (did not stop)'}")
        lines.append("")
    return "\n".join(lines)
