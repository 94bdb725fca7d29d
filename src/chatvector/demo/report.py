"""Aggregate the demo's per-seed results: mean and range per model and metric, a report and a plot."""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

from chatvector.eval.suites.demo import METRIC_KIND, METRICS

TABLE_METRICS = tuple(METRICS)


def wilson_interval(successes: float, n: int, z: float = 1.96) -> tuple[float, float]:
    """95% Wilson score interval of a rate (successes may be fractional when pooled from means)."""
    if n == 0:
        return (0.0, 1.0)
    p = successes / n
    centre = (p + z * z / (2 * n)) / (1 + z * z / n)
    half = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / (1 + z * z / n)
    return (max(0.0, centre - half), min(1.0, centre + half))


def aggregate(summaries: list[dict], seconds: float) -> dict[str, Any]:
    """Mean, min and max over seeds of every metric of every model; the best merge by fact_clean."""
    first = summaries[0]
    models = []
    for index, model in enumerate(first["models"]):
        per_seed = {m: [s["models"][index]["metrics"][m] for s in summaries] for m in METRICS}
        models.append(
            {
                "name": model["name"],
                "ratio": model["ratio"],
                "mean": {m: sum(v) / len(v) for m, v in per_seed.items()},
                "min": {m: min(v) for m, v in per_seed.items()},
                "max": {m: max(v) for m, v in per_seed.items()},
                "per_seed": per_seed,
            }
        )
    merged = [m for m in models if m["ratio"] is not None]
    best = max(merged, key=lambda m: (m["mean"]["fact_clean"], -m["ratio"]))
    return {
        "seeds": [s["seed"] for s in summaries],
        "ratios": first["ratios"],
        "prompts": first["prompts"],
        "metrics": first["metrics"],
        "models": models,
        "best": best["name"],
        "cpu_capability": sorted({s.get("cpu_capability", "?") for s in summaries}),
        "fingerprints": {str(s["seed"]): s["fingerprints"] for s in summaries},
        "seconds": {
            "total": round(seconds, 1),
            "training": {str(s["seed"]): s["seconds"].get("training", 0.0) for s in summaries},
        },
        "runs": summaries,
    }


def metric_n(summary: dict[str, Any], metric: str) -> int:
    """How many prompts one seed's rate of ``metric`` is over."""
    prompts: dict[str, int] = summary["prompts"]
    kind = METRIC_KIND[metric]
    return sum(prompts.values()) if kind is None else prompts[kind]


def cell(model: dict, metric: str, several: bool, unit: str = "%") -> str:
    """``mean`` for one seed, ``mean (min–max)`` for several, in percent (``unit=""``: no sign)."""

    def percent(value: float) -> str:
        return f"{value * 100:.0f}{unit}"

    mean = percent(model["mean"][metric])
    if not several:
        return mean
    return f"{mean} ({percent(model['min'][metric])}–{percent(model['max'][metric])})"


def best_model(summary: dict[str, Any]) -> dict:
    return next(m for m in summary["models"] if m["name"] == summary["best"])


def headline(summary: dict[str, Any]) -> list[str]:
    """One line per metric at the best ratio: pooled rate over seeds, its n and 95% interval."""
    best, seeds = best_model(summary), len(summary["seeds"])
    lines = []
    for metric in ("fact_clean", "fact_one", "refusal_zh", "refusal", "over_refusal", "recall", "repeat", "english"):
        n = metric_n(summary, metric) * seeds
        low, high = wilson_interval(best["mean"][metric] * n, n)
        lines.append(f"{metric} {best['mean'][metric]:.0%} (n = {n}, 95% interval {low:.0%}–{high:.0%})")
    return lines


def markdown_report(summary: dict[str, Any]) -> str:
    seeds = summary["seeds"]
    several = len(seeds) > 1
    lines = [
        "# chatvector demo",
        "",
        f"Seeds {', '.join(map(str, seeds))}; held-out Traditional Chinese prompts per seed: "
        f"{summary['prompts']}. {'Cells: mean over seeds (min–max).' if several else ''} "
        f"Wall time {summary['seconds']['total']} s.",
        "",
        "| model | " + " | ".join(TABLE_METRICS) + " |",
        "|---|" + "---|" * len(TABLE_METRICS),
    ]
    for model in summary["models"]:
        cells = " | ".join(cell(model, m, several) for m in TABLE_METRICS)
        lines.append(f"| {model['name']} | {cells} |")
    lines += ["", f"Best ratio by mean fact_clean: **{summary['best']}**, pooled over seeds:", ""]
    lines += [f"- {line}" for line in headline(summary)]
    lines += [
        "",
        "Metrics: " + "; ".join(f"**{k}**: {v}" for k, v in summary["metrics"].items()),
        "",
        "![metrics against the ratio, one line per seed and the mean](ratio.png)",
        "",
    ]
    if "search" in summary:
        from chatvector.demo.search import markdown

        lines += [markdown(summary["search"]), ""]
    lines += ["## Sample conversations", ""]
    for run in summary["runs"]:
        for model in run["models"]:
            if model["name"] not in ("chat", "cp", summary["best"]):
                continue
            lines.append(f"### seed {run['seed']}, {model['name']}")
            for sample in model["samples"]:
                asked = sample["conversation"][-1]["content"]
                stopped = "" if sample["stopped"] else " (did not stop)"
                lines.append(f"- `{asked}` → `{sample['reply']}`{stopped}")
            lines.append("")
    return "\n".join(lines)


PLOT_METRICS = (
    "fact_clean",
    "fact_one",
    "refusal_zh",
    "over_refusal",
    "recall",
    "chat_format",
    "zh_hant",
    "english",
    "refusal",
    "repeat",
)


def plot(path: Path, summary: dict[str, Any]) -> None:
    """One panel per metric against the ratio: a thin line per seed, a thick one for the mean."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    models = summary["models"]
    merged = [m for m in models if m["ratio"] is not None]
    reference = {m["name"]: m["mean"] for m in models if m["ratio"] is None}
    ratios = [m["ratio"] for m in merged]
    figure, axes = plt.subplots(2, 5, figsize=(16, 6), dpi=100, sharex=True, sharey=True)
    for axis, metric in zip(axes.flat, PLOT_METRICS, strict=True):
        for index, seed in enumerate(summary["seeds"]):
            values = [m["per_seed"][metric][index] for m in merged]
            axis.plot(ratios, values, color=f"C{index}", linewidth=0.9, alpha=0.7, label=f"seed {seed}")
        axis.plot(ratios, [m["mean"][metric] for m in merged], color="black", linewidth=2.2, marker="o", label="mean")
        axis.axhline(reference["cp"][metric], color="tab:purple", linestyle=":", linewidth=1, label="cp")
        axis.axhline(reference["chat"][metric], color="tab:brown", linestyle="--", linewidth=1, label="chat")
        axis.set_title(metric, fontsize=10)
        axis.set_ylim(-0.03, 1.03)
        axis.grid(alpha=0.3)
    for axis in axes[1]:
        axis.set_xlabel("r in cp + r·(chat − base)")
    axes[0][0].legend(fontsize=7, loc="upper left")
    figure.suptitle("chatvector demo: held-out Traditional Chinese prompts (cp dotted, chat dashed)")
    figure.tight_layout()
    figure.savefig(path)
    plt.close(figure)


def write(out_dir: Path, summary: dict[str, Any]) -> None:
    """``results.json``, ``report.md`` and ``ratio.png`` in ``out_dir``."""
    out_dir.mkdir(parents=True, exist_ok=True)
    (out_dir / "results.json").write_text(json.dumps(summary, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")
    (out_dir / "report.md").write_text(markdown_report(summary), encoding="utf-8")
    plot(out_dir / "ratio.png", summary)
