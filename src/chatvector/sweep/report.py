"""Sweep reports: PNG plots, report.md and a self-contained report.html (plots embedded)."""

from __future__ import annotations

import base64
import html
import math
from pathlib import Path
from typing import Any

from chatvector.sweep.recommend import INSTRUCTION_METRICS, LANGUAGE_METRIC


def metric_names(summary: dict[str, Any]) -> list[str]:
    """Every metric any ratio measured, sorted."""
    return sorted({m for row in summary["rows"] for m in row["metrics"]})


def chosen_ratio(summary: dict[str, Any]) -> str:
    """The recommendation as people read it: ``r = 0.5`` or ``none``."""
    ratio = summary["recommendation"]["ratio"]
    return "none" if ratio is None else f"r = {ratio:g}"


def _is_share(metric: str) -> bool:
    """Rates and shares live in [0, 1]; fixed axes keep flat lines from looking like swings."""
    return metric.endswith(("_rate", "_share"))


def plot_metrics(summary: dict[str, Any], path: Path) -> None:
    """One panel per metric, against the ratio."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    names = metric_names(summary)
    columns = 3
    rows = max(1, math.ceil(len(names) / columns))
    figure, axes = plt.subplots(rows, columns, figsize=(4 * columns, 2.6 * rows), dpi=100, squeeze=False)
    ratios = [r["ratio"] for r in summary["rows"]]
    for axis, name in zip(axes.flat, names, strict=False):
        axis.plot(ratios, [r["metrics"].get(name, float("nan")) for r in summary["rows"]], marker="o")
        axis.set_title(name, fontsize=9)
        if _is_share(name):
            axis.set_ylim(-0.05, 1.05)
        axis.set_xlabel("ratio", fontsize=8)
    for axis in list(axes.flat)[len(names):]:
        axis.axis("off")
    figure.tight_layout()
    figure.savefig(path)
    plt.close(figure)


def plot_tradeoff(summary: dict[str, Any], path: Path) -> None:
    """Instruction-following score against language fidelity, each point labelled by its ratio."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    metric = summary["recommendation"].get("metric") or next(
        (m for m in INSTRUCTION_METRICS if any(m in r["metrics"] for r in summary["rows"])), None)
    figure, axis = plt.subplots(figsize=(5.5, 4), dpi=100)
    for row in summary["rows"]:
        x, y = row["metrics"].get(LANGUAGE_METRIC), row["metrics"].get(metric) if metric else None
        if x is None or y is None:
            continue
        axis.scatter([x], [y], color="tab:blue")
        axis.annotate(f"r={row['ratio']:g}", (x, y), textcoords="offset points", xytext=(4, 4), fontsize=8)
    axis.set_xlim(-0.05, 1.05)
    if metric and _is_share(metric):
        axis.set_ylim(-0.05, 1.05)
    axis.axvline(summary["threshold"], color="grey", linestyle=":", linewidth=0.8)
    axis.set_xlabel(f"{LANGUAGE_METRIC} (target language and script)")
    axis.set_ylabel(metric or "instruction following")
    axis.set_title("Instruction following vs language fidelity", fontsize=10)
    figure.tight_layout()
    figure.savefig(path)
    plt.close(figure)


def _table(summary: dict[str, Any]) -> tuple[list[str], list[list[str]]]:
    names = metric_names(summary)
    header = ["ratio"] + names
    body = [[f"{row['ratio']:g}"] + [
        "–" if row["metrics"].get(n) is None or math.isnan(row["metrics"][n]) else f"{row['metrics'][n]:.3f}"
        for n in names] for row in summary["rows"]]
    return header, body


def markdown(summary: dict[str, Any]) -> str:
    header, body = _table(summary)
    advice = summary["recommendation"]
    chosen = chosen_ratio(summary)
    lines = [f"# Ratio sweep ({summary['lang']})", "", f"**Recommended: {chosen}.** {advice['reason']}", "",
             "| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(row) + " |" for row in body]
    lines += ["", "![metrics](metrics.png)", "", "![trade-off](tradeoff.png)", ""]
    return "\n".join(lines)


def _embedded(path: Path) -> str:
    return "data:image/png;base64," + base64.b64encode(path.read_bytes()).decode()


def html_report(summary: dict[str, Any], folder: Path) -> str:
    header, body = _table(summary)
    advice = summary["recommendation"]
    chosen = chosen_ratio(summary)
    rows = "".join("<tr>" + "".join(f"<td>{html.escape(c)}</td>" for c in row) + "</tr>" for row in body)
    return f"""<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>chatvector sweep</title>
<style>body{{font-family:sans-serif;margin:2em;max-width:70em}} table{{border-collapse:collapse}}
td,th{{border:1px solid #ccc;padding:4px 8px;text-align:right}} .pick{{background:#eef6ee;padding:.6em}}</style>
</head><body>
<h1>Ratio sweep ({html.escape(summary['lang'])})</h1>
<p class="pick" id="recommendation"><b>Recommended: {html.escape(chosen)}.</b> {html.escape(advice['reason'])}</p>
<table><tr>{''.join(f'<th>{html.escape(h)}</th>' for h in header)}</tr>{rows}</table>
<h2>Metrics against the ratio</h2><img alt="metrics" src="{_embedded(folder / 'metrics.png')}">
<h2>Trade-off</h2><img alt="trade-off" src="{_embedded(folder / 'tradeoff.png')}">
</body></html>
"""


def write_reports(folder: Path, summary: dict[str, Any]) -> None:
    plot_metrics(summary, folder / "metrics.png")
    plot_tradeoff(summary, folder / "tradeoff.png")
    (folder / "report.md").write_text(markdown(summary), encoding="utf-8")
    (folder / "report.html").write_text(html_report(summary, folder), encoding="utf-8")
