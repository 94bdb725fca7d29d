"""Sweep reports: PNG plots with 95% error bars, report.md and a self-contained report.html (plots embedded).

Rows made by :func:`~chatvector.sweep.recommend.row_from_results` carry each metric's interval
and n; the plots draw the intervals as error bars and the tables show them beside the values.
Rows without intervals (older sweeps) are drawn and shown as plain values.
"""

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


def _errors(rows: list[dict[str, Any]], name: str) -> list[list[float]] | None:
    """Distances from each value down and up to its interval's ends (matplotlib's ``yerr``); None
    when no row has an interval for ``name``."""
    low, high, found = [], [], False
    for row in rows:
        value = row["metrics"].get(name, math.nan)
        interval = row.get("intervals", {}).get(name)
        if interval is None or value is None or math.isnan(value):
            low.append(0.0)
            high.append(0.0)
            continue
        found = True
        low.append(max(0.0, value - interval[0]))
        high.append(max(0.0, interval[1] - value))
    return [low, high] if found else None


def plot_metrics(summary: dict[str, Any], path: Path) -> None:
    """One panel per metric against the ratio, with 95% error bars where the rows have intervals."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    names = metric_names(summary)
    columns = 3
    rows = max(1, math.ceil(len(names) / columns))
    figure, axes = plt.subplots(rows, columns, figsize=(4 * columns, 2.6 * rows), dpi=100, squeeze=False)
    ratios = [r["ratio"] for r in summary["rows"]]
    for axis, name in zip(axes.flat, names, strict=False):
        values = [_number(r["metrics"].get(name)) for r in summary["rows"]]
        axis.errorbar(ratios, values, yerr=_errors(summary["rows"], name), marker="o", capsize=3)
        axis.set_title(name, fontsize=9)
        if _is_share(name):
            axis.set_ylim(-0.05, 1.05)
        axis.set_xlabel("ratio", fontsize=8)
    for axis in list(axes.flat)[len(names) :]:
        axis.axis("off")
    figure.suptitle("bars: 95% intervals (Wilson for rates, bootstrap for means)", fontsize=8)
    figure.tight_layout()
    figure.savefig(path)
    plt.close(figure)


def _number(value: float | None) -> float:
    return math.nan if value is None else value


def plot_tradeoff(summary: dict[str, Any], path: Path) -> None:
    """Instruction-following score against language fidelity, each point labelled by its ratio,
    with both 95% intervals as error bars."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    metric = summary["recommendation"].get("metric") or next(
        (m for m in INSTRUCTION_METRICS if any(m in r["metrics"] for r in summary["rows"])), None
    )
    figure, axis = plt.subplots(figsize=(5.5, 4), dpi=100)
    for row in summary["rows"]:
        x, y = row["metrics"].get(LANGUAGE_METRIC), row["metrics"].get(metric) if metric else None
        if metric is None or x is None or y is None or math.isnan(x) or math.isnan(y):
            continue
        xerr, yerr = _errors([row], LANGUAGE_METRIC), _errors([row], metric)
        axis.errorbar([x], [y], xerr=xerr, yerr=yerr, fmt="o", color="tab:blue", capsize=3)
        axis.annotate(f"r={row['ratio']:g}", (x, y), textcoords="offset points", xytext=(4, 4), fontsize=8)
    axis.set_xlim(-0.05, 1.05)
    if metric and _is_share(metric):
        axis.set_ylim(-0.05, 1.05)
    axis.axvline(summary["threshold"], color="grey", linestyle=":", linewidth=0.8)
    axis.set_xlabel(f"{LANGUAGE_METRIC} (target language and script)")
    axis.set_ylabel(metric or "instruction following")
    axis.set_title("Instruction following vs language fidelity (95% intervals)", fontsize=10)
    figure.tight_layout()
    figure.savefig(path)
    plt.close(figure)


def _cell(row: dict[str, Any], name: str) -> str:
    value = row["metrics"].get(name)
    if value is None or math.isnan(value):
        return "–"
    interval = row.get("intervals", {}).get(name)
    shown = f"{value:.3f}"
    return shown if interval is None else f"{shown} [{interval[0]:.2f}, {interval[1]:.2f}]"


def _table(summary: dict[str, Any]) -> tuple[list[str], list[list[str]]]:
    names = metric_names(summary)
    header = ["ratio"] + names
    body = [[f"{row['ratio']:g}"] + [_cell(row, n) for n in names] for row in summary["rows"]]
    return header, body


def _sizes(summary: dict[str, Any]) -> str:
    """ "n: metric 64, ..." when the rows record sample sizes (the same at every ratio)."""
    sizes: dict[str, set[int]] = {}
    for row in summary["rows"]:
        for name, n in row.get("n", {}).items():
            sizes.setdefault(name, set()).add(n)
    if not sizes:
        return ""
    shown = ", ".join(f"{name} {'/'.join(str(n) for n in sorted(ns))}" for name, ns in sorted(sizes.items()))
    return f"Values with 95% intervals (Wilson for rates, bootstrap for means). n: {shown}."


def markdown(summary: dict[str, Any]) -> str:
    header, body = _table(summary)
    advice = summary["recommendation"]
    chosen = chosen_ratio(summary)
    lines = [
        f"# Ratio sweep ({summary['lang']})",
        "",
        f"**Recommended: {chosen}.** {advice['reason']}",
        "",
        "| " + " | ".join(header) + " |",
        "|" + "---|" * len(header),
    ]
    lines += ["| " + " | ".join(row) + " |" for row in body]
    lines += ["", _sizes(summary)] if _sizes(summary) else []
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
<h1>Ratio sweep ({html.escape(summary["lang"])})</h1>
<p class="pick" id="recommendation"><b>Recommended: {html.escape(chosen)}.</b> {html.escape(advice["reason"])}</p>
<p>{html.escape(_sizes(summary))}</p>
<table><tr>{"".join(f"<th>{html.escape(h)}</th>" for h in header)}</tr>{rows}</table>
<h2>Metrics against the ratio</h2><img alt="metrics" src="{_embedded(folder / "metrics.png")}">
<h2>Trade-off</h2><img alt="trade-off" src="{_embedded(folder / "tradeoff.png")}">
</body></html>
"""


def write_reports(folder: Path, summary: dict[str, Any]) -> None:
    plot_metrics(summary, folder / "metrics.png")
    plot_tradeoff(summary, folder / "tradeoff.png")
    (folder / "report.md").write_text(markdown(summary), encoding="utf-8")
    (folder / "report.html").write_text(html_report(summary, folder), encoding="utf-8")
