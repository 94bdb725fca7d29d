"""Sweep reports: PNG plots with 95% error bars, report.md and a self-contained report.html (plots embedded).

Rows made by :func:`~chatvector.sweep.recommend.row_from_results` carry each metric's interval
and n; the plots draw the intervals as error bars and the tables show them beside the values.
Rows without intervals (older sweeps) are drawn and shown as plain values.

Every plot marks the recommended ratio (or, when no ratio beats the target, the best one, marked
as not significant). In the trade-off plot, ratios that land on the same point share one label,
and labels are moved apart until none overlaps another. report.html fits any window width: its
images scale down and its table (metrics as rows, ratios as columns) scrolls inside its own box.
"""

from __future__ import annotations

import base64
import html
import math
from pathlib import Path
from typing import Any

from chatvector.sweep import state
from chatvector.sweep.recommend import INSTRUCTION_METRICS, LANGUAGE_METRIC


def metric_names(summary: dict[str, Any]) -> list[str]:
    """Every metric any ratio measured, sorted."""
    return sorted({m for row in summary["rows"] for m in row["metrics"]})


def chosen_ratio(summary: dict[str, Any]) -> str:
    """The recommendation as people read it: ``r = 0.5``, ``no merge (keep the target)`` when no
    ratio beats the target, or ``none``."""
    advice = summary["recommendation"]
    if advice["ratio"] is not None:
        return f"r = {advice['ratio']:g}"
    return "no merge (keep the target)" if advice.get("beats_target") is False else "none"


def marked_ratio(summary: dict[str, Any]) -> tuple[float, str, str] | None:
    """The ratio the plots mark, what the mark means, and a short tag for a label: the
    recommendation, else the best ratio that does not beat the target; None when there is neither."""
    advice = summary["recommendation"]
    if advice["ratio"] is not None:
        return float(advice["ratio"]), f"recommended: r = {advice['ratio']:g}", "recommended"
    if advice.get("best_ratio") is not None:
        best = advice["best_ratio"]
        return float(best), f"best, r = {best:g}, which does not beat the target", "best; not significant"
    return None


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
    marked = marked_ratio(summary)
    for axis, name in zip(axes.flat, names, strict=False):
        values = [_number(r["metrics"].get(name)) for r in summary["rows"]]
        axis.errorbar(ratios, values, yerr=_errors(summary["rows"], name), marker="o", capsize=3)
        if marked is not None:
            axis.axvline(marked[0], color=MARK_COLOUR, linestyle="--", linewidth=2)
        axis.set_title(name, fontsize=9)
        if _is_share(name):
            axis.set_ylim(-0.05, 1.05)
        axis.set_xlabel("ratio", fontsize=8)
    for axis in list(axes.flat)[len(names) :]:
        axis.axis("off")
    mark = f"; dashed line: {marked[1]}" if marked is not None else ""
    figure.suptitle(f"bars: 95% intervals (Wilson for rates, bootstrap for means){mark}", fontsize=8)
    figure.tight_layout()
    figure.savefig(path, format="png")
    plt.close(figure)


def _number(value: float | None) -> float:
    return math.nan if value is None else value


MARK_COLOUR = "tab:green"


def tradeoff_points(summary: dict[str, Any]) -> list[dict[str, Any]]:
    """The trade-off plot's points: ratios at the same (language share, score) share one point and
    one label, so ties never stack labels on each other."""
    metric = _tradeoff_metric(summary)
    marked = marked_ratio(summary)
    points: dict[tuple[float, float], dict[str, Any]] = {}
    for row in summary["rows"]:
        x, y = row["metrics"].get(LANGUAGE_METRIC), row["metrics"].get(metric) if metric else None
        if x is None or y is None or math.isnan(x) or math.isnan(y):
            continue
        point = points.setdefault((round(x, 6), round(y, 6)), {"x": x, "y": y, "rows": [], "marked": False})
        point["rows"].append(row)
        point["marked"] |= marked is not None and row["ratio"] == marked[0]
    for point in points.values():
        point["label"] = "r=" + ", ".join(f"{r['ratio']:g}" for r in point["rows"])
    return list(points.values())


def _tradeoff_metric(summary: dict[str, Any]) -> str | None:
    return summary["recommendation"].get("metric") or next(
        (m for m in INSTRUCTION_METRICS if any(m in r["metrics"] for r in summary["rows"])), None
    )


def _x_range(points: list[dict[str, Any]], threshold: float) -> tuple[float, float]:
    """The language-share axis zoomed to the points and the threshold, at least 0.1 wide, within [0, 1]."""
    xs = [p["x"] for p in points] + [threshold]
    low, high = min(xs), max(xs)
    pad = max(0.02, (0.1 - (high - low)) / 2)
    return max(-0.05, low - pad), min(1.05, high + pad)


def _spread_labels(figure: Any, axis: Any, labels: list[Any]) -> list[tuple[str, tuple[float, float, float, float]]]:
    """Move each label up or down, in steps of its height, to the nearest place where it overlaps
    no label placed before it (inside the plot when there is room); return each label's text and
    extent in pixels."""
    from matplotlib.text import Text

    renderer = figure.canvas.get_renderer()

    def extent(label: Any) -> Any:  # the text alone, not its leader line
        label.update_positions(renderer)
        return Text.get_window_extent(label, renderer)

    inside = axis.get_window_extent(renderer)
    placed: list[Any] = []
    for label in sorted(labels, key=lambda a: (a.xy[1], a.xy[0])):
        dx, dy = label.get_position()
        height = extent(label).height * 72 / figure.dpi + 2  # points
        steps = [0] + [k * sign for k in range(1, 2 * len(labels) + 2) for sign in (1, -1)]
        fallback = None
        for step in steps:
            label.set_position((dx, dy + step * height))
            box = extent(label)
            if any(box.overlaps(other) for other in placed):
                continue
            fallback = fallback or step
            if inside.y0 <= box.y0 and box.y1 <= inside.y1:
                break
        else:
            label.set_position((dx, dy + (fallback or 0) * height))
        placed.append(extent(label))
    return [(a.get_text(), tuple(extent(a).extents)) for a in labels]


def plot_tradeoff(summary: dict[str, Any], path: Path) -> list[tuple[str, tuple[float, float, float, float]]]:
    """Instruction-following score against language fidelity with both 95% intervals as error
    bars; each point labelled by its ratios, the marked ratio drawn as a star. Returns the labels
    and their extents in pixels (none overlaps another)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    metric = _tradeoff_metric(summary)
    points = tradeoff_points(summary)
    marked = marked_ratio(summary)
    figure, axis = plt.subplots(figsize=(5.5, 4), dpi=100)
    labels = []
    for point in points:
        row = point["rows"][0]
        xerr, yerr = _errors([row], LANGUAGE_METRIC), _errors([row], metric or "")
        star = bool(point["marked"])
        axis.errorbar(
            [point["x"]],
            [point["y"]],
            xerr=xerr,
            yerr=yerr,
            capsize=3,
            fmt="*" if star else "o",
            markersize=14 if star else 6,
            color=MARK_COLOUR if star else "tab:blue",
        )
        text = point["label"] + (f" ({marked[2]})" if point["marked"] and marked else "")
        labels.append(
            axis.annotate(
                text,
                (point["x"], point["y"]),
                textcoords="offset points",
                xytext=(6, 4),
                fontsize=8,
                arrowprops={"arrowstyle": "-", "color": "grey", "linewidth": 0.5, "shrinkA": 0, "shrinkB": 3},
            )
        )
    axis.set_xlim(*_x_range(points, summary["threshold"]) if points else (-0.05, 1.05))
    if metric and _is_share(metric):
        axis.set_ylim(-0.05, 1.05)
    axis.axvline(summary["threshold"], color="grey", linestyle=":", linewidth=0.8)
    axis.set_xlabel(f"{LANGUAGE_METRIC} (target language and script)")
    axis.set_ylabel(metric or "instruction following")
    title = "Instruction following vs language fidelity (95% intervals)"
    axis.set_title(title + (f"\nstar: {marked[1]}" if marked else ""), fontsize=9)
    figure.tight_layout()
    extents = _spread_labels(figure, axis, labels)
    figure.savefig(path, format="png")
    plt.close(figure)
    return extents


def _cell(row: dict[str, Any], name: str) -> str:
    value = row["metrics"].get(name)
    if value is None or math.isnan(value):
        return "–"
    interval = row.get("intervals", {}).get(name)
    shown = f"{value:.3f}"
    return shown if interval is None else f"{shown} [{interval[0]:.2f}, {interval[1]:.2f}]"


def _table(summary: dict[str, Any]) -> tuple[list[str], list[list[str]]]:
    """Metrics as rows, ratios as columns: metric names stay readable however many ratios."""
    header = ["metric"] + [f"r={row['ratio']:g}" for row in summary["rows"]]
    body = [[name] + [_cell(row, name) for row in summary["rows"]] for name in metric_names(summary)]
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
    marked = marked_ratio(summary)
    lines = [
        f"# Ratio sweep ({summary['lang']})",
        "",
        f"**Recommended: {chosen}.** {advice['reason']}",
        "",
        *([f"Marked in the plots: {marked[1]}."] if marked else []),
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


STYLE = """
*{box-sizing:border-box} body{font-family:sans-serif;margin:0 auto;padding:1em 2em;max-width:75em}
p{overflow-wrap:anywhere} img{max-width:100%;height:auto;display:block}
.table{overflow-x:auto;max-width:100%} table{border-collapse:collapse}
td,th{border:1px solid #ccc;padding:4px 8px;text-align:right;white-space:nowrap}
td:first-child,th:first-child{text-align:left}
.pick{background:#eef6ee;padding:.6em} .marked{background:#eef6ee}
"""


def html_report(summary: dict[str, Any], folder: Path) -> str:
    """A self-contained page (plots embedded) that fits any window width."""
    header, body = _table(summary)
    advice = summary["recommendation"]
    chosen = chosen_ratio(summary)
    marked = marked_ratio(summary)
    column = None if marked is None else 1 + [r["ratio"] for r in summary["rows"]].index(marked[0])

    def cells(values: list[str], tag: str) -> str:
        return "".join(
            f"<{tag}{' class=marked' if i == column else ''}>{html.escape(c)}</{tag}>" for i, c in enumerate(values)
        )

    rows = "".join(f"<tr>{cells(row, 'td')}</tr>" for row in body)
    note = f"<p>Marked in the plots and the table: {html.escape(marked[1])}.</p>" if marked else ""
    return f"""<!doctype html>
<html lang="en"><head><meta charset="utf-8"><meta name="viewport" content="width=device-width, initial-scale=1">
<title>chatvector sweep</title><style>{STYLE}</style>
</head><body>
<h1>Ratio sweep ({html.escape(summary["lang"])})</h1>
<p class="pick" id="recommendation"><b>Recommended: {html.escape(chosen)}.</b> {html.escape(advice["reason"])}</p>
{note}<p>{html.escape(_sizes(summary))}</p>
<div class="table"><table><tr>{cells(header, "th")}</tr>{rows}</table></div>
<h2>Metrics against the ratio</h2><img alt="metrics" src="{_embedded(folder / "metrics.png")}">
<h2>Trade-off</h2><img alt="trade-off" src="{_embedded(folder / "tradeoff.png")}">
</body></html>
"""


def write_reports(folder: Path, summary: dict[str, Any]) -> None:
    """The plots, report.md and report.html, each written whole (a temporary name, then a rename)."""
    for name, plot in (("metrics.png", plot_metrics), ("tradeoff.png", plot_tradeoff)):
        partial = folder / f".{name}.partial"
        plot(summary, partial)
        partial.replace(folder / name)
    state.write_text(folder / "report.md", markdown(summary))
    state.write_text(folder / "report.html", html_report(summary, folder))
