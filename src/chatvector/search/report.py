"""Search reports: three PNG plots, report.md and a self-contained report.html (plots embedded).

- ``objective.png``: the dev objective of every trial in order (grid trials marked, pruned
  trials at their last reported stage), with the best so far;
- ``schedule.png``: the best candidate's ratio per group against the best uniform ratio;
- ``heldout.png``: the objective of both on the held-out prompts, with 95% intervals.
"""

from __future__ import annotations

import base64
import html
from pathlib import Path
from typing import Any

from chatvector.sweep import state

__all__ = ["write_reports", "markdown"]

PLOTS = ("objective.png", "schedule.png", "heldout.png")


def _pyplot() -> Any:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def plot_objective(summary: dict[str, Any], path: Path) -> None:
    plt = _pyplot()
    figure, axis = plt.subplots(figsize=(7, 3.5))
    for row in summary["trials"]:
        steps = row["intermediate"]
        value = row["value"] if row["value"] is not None else (list(steps.values())[-1] if steps else None)
        if value is None:
            continue
        style = {"complete": "o", "pruned": "x"}.get(row["state"], ".")
        color = "tab:orange" if row["uniform"] else ("tab:blue" if row["feasible"] else "tab:gray")
        axis.plot(row["number"], value, style, color=color)
    pick = max if summary["direction"] == "maximize" else min
    best: list[tuple[int, float]] = []
    for row in summary["trials"]:
        if row["state"] == "complete" and row["feasible"]:
            value = row["value"] if not best else pick(best[-1][1], row["value"])
            best.append((row["number"], value))
    if best:
        axis.step(*zip(*best, strict=True), where="post", color="tab:green", label="best so far (feasible)")
        axis.legend(loc="best")
    axis.set_xlabel("trial (orange: uniform grid; x: pruned; gray: misses a --require)")
    axis.set_ylabel(f"{summary['objective']} (dev)")
    figure.tight_layout()
    figure.savefig(path, dpi=100)
    plt.close(figure)


def plot_schedule(summary: dict[str, Any], path: Path) -> None:
    plt = _pyplot()
    groups = list(summary["groups"])
    best, uniform = summary["best"]["params"], summary["best_uniform"]["params"]
    figure, axis = plt.subplots(figsize=(max(5, 1.1 * len(groups)), 3.5))
    positions = range(len(groups))
    axis.bar(
        [p - 0.2 for p in positions], [best[g] for g in groups], 0.4, label=f"best (trial {summary['best']['number']})"
    )
    axis.bar([p + 0.2 for p in positions], [uniform[g] for g in groups], 0.4, label="best uniform ratio")
    axis.set_xticks(list(positions), groups, rotation=30, ha="right")
    axis.set_ylabel("ratio")
    axis.set_ylim(0, 1.3 * max([*best.values(), *uniform.values(), 0.1]))  # room for the legend
    axis.legend(loc="upper right")
    figure.tight_layout()
    figure.savefig(path, dpi=100)
    plt.close(figure)


def plot_heldout(summary: dict[str, Any], path: Path) -> None:
    plt = _pyplot()
    name, held = summary["objective"], summary["heldout"]
    labels = ["uniform", "best"]
    values = [held["metrics"][label].get(name) or 0.0 for label in labels]
    errors: list[list[float]] = [[], []]
    for label, value in zip(labels, values, strict=True):
        low, high = held["intervals"][label].get(name, [None, None])
        errors[0].append(max(0.0, value - low) if low is not None else 0.0)
        errors[1].append(max(0.0, high - value) if high is not None else 0.0)
    figure, axis = plt.subplots(figsize=(4.5, 3.5))
    axis.bar(labels, values, yerr=errors, capsize=6, color=["tab:orange", "tab:blue"])
    axis.set_title(f"{name}, held out")
    axis.set_ylabel("value (95% interval)")
    figure.tight_layout()
    figure.savefig(path, dpi=100)
    plt.close(figure)


def _fmt(value: Any) -> str:
    return "–" if value is None else f"{value:.3f}" if isinstance(value, float) else str(value)


def _comparison_rows(summary: dict[str, Any]) -> list[str]:
    rows = []
    for name, row in summary["heldout"]["comparison"]["metrics"].items():
        paired = row.get("paired")
        if paired is None:
            rows.append(f"| {name} | {_fmt(row['first'])} | {_fmt(row['other'])} | – | – | – | {row.get('note', '')} |")
            continue
        rows.append(
            f"| {name} | {paired['a']:.3f} | {paired['b']:.3f} | {paired['difference']:+.3f} | "
            f"[{paired['ci_low']:+.3f}, {paired['ci_high']:+.3f}] | {paired['p_value']:.3f} | {paired['n']} |"
        )
    return rows


def markdown(summary: dict[str, Any]) -> str:
    """report.md: what was searched, the winners, the held-out check and the optimism."""
    best, uniform, held = summary["best"], summary["best_uniform"], summary["heldout"]
    objective = summary["objective"]
    splits = summary["splits"]
    n_dev = sum(len(v) for v in splits["dev"].values())
    n_held = sum(len(v) for v in splits["heldout"].values())
    states: dict[str, int] = {}
    for row in summary["trials"]:
        states[row["state"]] = states.get(row["state"], 0) + 1
    lines = [
        f"# Ratio search ({summary['lang']})",
        "",
        f"Objective: {objective} ({summary['direction']}), on {n_dev} dev prompts; {n_held} prompts held out "
        f"(split seed {splits['seed']}). Requirements: {', '.join(summary['requires']) or 'none'}. "
        f"Sampler: {summary['sampler']} (seed {summary['seed']}). Trials: "
        + ", ".join(f"{n} {state}" for state, n in sorted(states.items()))
        + ".",
        "",
        "| group | tensors | bounds | best | best uniform |",
        "|---|---|---|---|---|",
    ]
    for name, group in summary["groups"].items():
        lines.append(
            f"| {name} | {group['tensors']} | {group['low']:g}–{group['high']:g} | "
            f"{best['params'][name]:.3f} | {uniform['params'][name]:g} |"
        )
    optimism = held["optimism"]
    lines += [
        "",
        f"Best trial {best['number']}: dev {objective} {_fmt(best['value'])}, held out "
        f"{_fmt(held['metrics']['best'].get(objective))} (optimism {_fmt(optimism['best'])}). "
        f"Best uniform (trial {uniform['number']}): dev {_fmt(uniform['value'])}, held out "
        f"{_fmt(held['metrics']['uniform'].get(objective))} (optimism {_fmt(optimism['uniform'])}).",
        "",
        "Optimism = dev minus held-out: how much the search's choice was fitted to the dev prompts.",
        "",
        "## Held out: best against best uniform (paired bootstrap, difference = best − uniform)",
        "",
        "| metric | uniform | best | difference | 95% interval | p | n pairs |",
        "|---|---|---|---|---|---|---|",
        *_comparison_rows(summary),
        "",
        "![objective by trial](objective.png)",
        "",
        "![best schedule against the best uniform ratio](schedule.png)",
        "",
        "![held-out comparison](heldout.png)",
        "",
    ]
    return "\n".join(lines)


def _embedded(path: Path) -> str:
    return "data:image/png;base64," + base64.b64encode(path.read_bytes()).decode("ascii")


def html_report(summary: dict[str, Any], folder: Path) -> str:
    """report.html: the markdown's text and tables as preformatted text, and the plots inline."""
    text = html.escape(markdown(summary).split("\n![")[0])
    images = "".join(f'<p><img alt="{name}" src="{_embedded(folder / name)}"></p>' for name in PLOTS)
    return (
        '<!doctype html><html><head><meta charset="utf-8"><title>chatvector search</title></head>'
        f"<body><pre>{text}</pre>{images}</body></html>\n"
    )


def write_reports(folder: Path, summary: dict[str, Any]) -> None:
    """The plots, report.md and report.html of ``summary`` into ``folder``."""
    plot_objective(summary, folder / "objective.png")
    plot_schedule(summary, folder / "schedule.png")
    plot_heldout(summary, folder / "heldout.png")
    state.write_text(folder / "report.md", markdown(summary))
    state.write_text(folder / "report.html", html_report(summary, folder))
