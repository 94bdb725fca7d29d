"""``chatvector demo --search``: the normal ``chatvector search`` on each seed's family, and the
answer to the question it asks: does a ratio per group of tensors beat the best single ratio on
held-out questions?

Each seed's search is :func:`chatvector.search.run.run_search` (not a copy of it) on the family
(base, chat, cp), in place, on the demo's prompts as eval data (``seed-N/prompts.jsonl``, the
``demo`` suite): objective ``demo.fact_clean``, requirement ``demo.refusal_zh>=target`` (at least
cp's own rate on the dev prompts), the demo's ratios as the uniform grid. Its folder is
``seed-N/search/`` (``search.json``, ``best-recipe.yaml``, ``report.md``...), so a rerun resumes.

:func:`summarise` reads each seed's held-out results: per seed, the searched schedule against the
best uniform ratio on ``fact_clean``, ``refusal_zh`` and ``recall`` (rates with n and 95%
intervals, the paired test search ran, the optimism); over the seeds, the mean of the per-seed
rates and one paired test over every held-out prompt of every seed (each prompt paired with
itself under the other model of its own seed); and whether the goal of issue 24 was met.
"""

from __future__ import annotations

import json
import logging
import math
from pathlib import Path
from typing import TYPE_CHECKING, Any

from chatvector.demo.prompts import LANG, MAX_NEW_TOKENS, PROMPTS_FILE

if TYPE_CHECKING:
    from chatvector.demo.family import Family

__all__ = [
    "OBJECTIVE",
    "REQUIRE",
    "SEARCH_DIR",
    "REPORTED",
    "GOAL",
    "search_options",
    "search_seed",
    "summarise",
    "markdown",
    "lines",
]

log = logging.getLogger(__name__)

OBJECTIVE = "demo.fact_clean"
REQUIRE = ("demo.refusal_zh>=target",)
SEARCH_DIR = "search"
REPORTED = ("demo.fact_clean", "demo.refusal_zh", "demo.recall")
BATCH_ROWS = 64
# issue 24's bar, on the held-out prompts: mean over the seeds of (searched − best uniform) fact_clean
GOAL = {"lift": 0.10, "alpha": 0.05, "worst_seed": 0.30}


def search_options(trials: int, grid: tuple[float, ...], seed: int) -> Any:
    """The search's options: the objective, the requirement, the demo's ratios as the grid."""
    from chatvector.search.options import SearchOptions

    return SearchOptions(
        objective=OBJECTIVE,
        require=REQUIRE,
        grid=",".join(f"{r:g}" for r in grid),
        trials=trials,
        search_seed=seed,
    )


def search_seed(family: Family, seed_dir: Path, trials: int, grid: tuple[float, ...], seed: int) -> dict[str, Any]:
    """Run ``chatvector search`` on one seed's family (in this process; the demo runs it in a pinned,
    single-threaded worker) and return its search.json content."""
    import optuna

    from chatvector.eval.options import BackendOptions, DataOptions, GenerationOptions
    from chatvector.options import RunOptions
    from chatvector.search.plan import SearchSpec
    from chatvector.search.run import run_search
    from chatvector.sweep.run import SweepSpec

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    out = seed_dir / SEARCH_DIR
    inputs = SweepSpec(
        out=out,
        ratios=(1.0,),
        target=str(family.cp),
        base=str(family.base),
        chat=str(family.chat),
        in_place=True,
        merge_run=RunOptions(threads=1),
        # 64 rows a batch: a 0.9 M-parameter model's step costs about the same for 16 or 64 rows, so the
        # CPU default of 16 (measured on larger models) doubles generation time here (docs/search.md)
        backend=BackendOptions(device="cpu", batch_rows=BATCH_ROWS),
        generation=GenerationOptions(max_new_tokens=MAX_NEW_TOKENS),
        data=DataOptions(lang=LANG, suite=("demo",), data=(f"demo={seed_dir / PROMPTS_FILE}",)),
    )
    spec = SearchSpec(out=out, inputs=inputs, options=search_options(trials, grid, seed))

    def on_trial(row: dict[str, Any]) -> None:
        value = "–" if row["value"] is None else f"{row['value']:.0%}"
        log.info("search (seed %d): trial %d %s, dev %s %s", seed, row["number"], row["state"], OBJECTIVE, value)

    summary = run_search(spec, on_trial=on_trial)
    summary["out"] = str(out)
    return summary


# ------------------------------------------------------------------ summary


def _units(results: dict[str, Any], metric: str) -> dict[str, float]:
    """Prompt id → the one pass/fail unit ``metric`` counts for it (prompts it does not apply to left out)."""
    from chatvector.eval.suites import metric_specs

    spec = metric_specs(["demo"], LANG)[metric][1]
    found = {}
    for record in results["suites"]["demo"]["samples"]:
        units = spec.parsed_units(record)
        if units:
            found[record["id"]] = units[0]
    return found


def _heldout_results(search: dict[str, Any]) -> dict[str, dict[str, Any]]:
    out = Path(search["out"])
    return {
        label: json.loads((out / "heldout" / label / "results.json").read_text(encoding="utf-8"))
        for label in ("best", "uniform")
    }


def _seed_row(seed: int, search: dict[str, Any]) -> dict[str, Any]:
    held = search["heldout"]
    comparison = held["comparison"]["metrics"]
    metrics: dict[str, dict[str, Any]] = {}
    for name in REPORTED:
        paired = (comparison.get(name) or {}).get("paired")
        metrics[name] = {
            label: {
                "value": held["metrics"][label].get(name),
                "n": held["n"][label].get(name),
                "interval": held["intervals"][label].get(name),
            }
            for label in ("best", "uniform")
        }
        metrics[name]["paired"] = paired
    best, uniform = search["best"], search["best_uniform"]
    ratio = next(iter(uniform["params"].values()))
    return {
        "seed": seed,
        "best": {"trial": best["number"], "ratios": best["params"], "dev": best["value"]},
        "uniform": {"trial": uniform["number"], "ratio": ratio, "dev": uniform["value"]},
        "optimism": held["optimism"],
        "metrics": metrics,
        "trials": len(search["trials"]),
        "out": search["out"],
    }


def _pooled(searches: dict[int, dict[str, Any]], metric: str) -> dict[str, Any] | None:
    """One paired test over every seed's held-out prompts (each paired within its own seed)."""
    from chatvector.eval.stats import paired

    a, b = [], []
    for _, search in sorted(searches.items()):
        results = _heldout_results(search)
        uniform, best = _units(results["uniform"], metric), _units(results["best"], metric)
        for prompt in sorted(set(uniform) & set(best)):
            a.append(uniform[prompt])
            b.append(best[prompt])
    if not a:
        return None
    difference = paired(a, b, seed=0)
    return {
        "a": difference.a,
        "b": difference.b,
        "difference": difference.difference,
        "ci_low": difference.ci_low,
        "ci_high": difference.ci_high,
        "p_value": difference.p_value,
        "n": difference.n,
        "test": difference.test,
    }


def summarise(searches: dict[int, dict[str, Any]], seconds: dict[int, float]) -> dict[str, Any]:
    """Per seed and over the seeds: the searched schedule against the best uniform ratio held out,
    and whether the goal was met (see the module docstring)."""
    rows = [
        _seed_row(seed, searches[seed]) | {"seconds": round(seconds.get(seed, 0.0), 1)} for seed in sorted(searches)
    ]
    mean: dict[str, Any] = {}
    for name in REPORTED:
        per_seed = {label: [r["metrics"][name][label]["value"] for r in rows] for label in ("best", "uniform")}
        known = all(v is not None for values in per_seed.values() for v in values)
        mean[name] = {
            "best": sum(per_seed["best"]) / len(rows) if known else None,
            "uniform": sum(per_seed["uniform"]) / len(rows) if known else None,
            "pooled": _pooled(searches, name),
        }
    return {
        "objective": OBJECTIVE,
        "requires": list(REQUIRE),
        "seeds": rows,
        "mean": mean,
        "goal": _goal(rows, mean),
    }


def _goal(rows: list[dict[str, Any]], mean: dict[str, Any]) -> dict[str, Any]:
    fact, refusal = mean["demo.fact_clean"], mean["demo.refusal_zh"]
    lift = None if fact["best"] is None else fact["best"] - fact["uniform"]
    pooled = fact["pooled"]
    p_value = None if pooled is None else pooled["p_value"]
    worst = min((r["metrics"]["demo.fact_clean"]["best"]["value"] or 0.0) for r in rows)
    checks = {
        "lift >= 10 points": lift is not None and lift >= GOAL["lift"],
        "significant (pooled paired test, p < 0.05)": p_value is not None
        and not math.isnan(p_value)
        and p_value < GOAL["alpha"]
        and (lift or 0.0) > 0,
        "refusal_zh not lower": refusal["best"] is not None and refusal["best"] >= refusal["uniform"],
        "worst seed above 30%": worst > GOAL["worst_seed"],
    }
    return {"lift": lift, "p_value": p_value, "worst_seed": worst, "checks": checks, "met": all(checks.values())}


# ------------------------------------------------------------------ words


def _rate(entry: dict[str, Any]) -> str:
    value, interval = entry["value"], entry["interval"] or [None, None]
    if value is None:
        return "–"
    low, high = interval
    bounds = "" if low is None or high is None else f" [{low:.0%}–{high:.0%}]"
    return f"{value:.0%}{bounds}"


def _paired(entry: dict[str, Any] | None) -> str:
    if not entry:
        return "–"
    return (
        f"{entry['difference'] * 100:+.0f} [{entry['ci_low'] * 100:+.0f}, {entry['ci_high'] * 100:+.0f}], "
        f"p = {entry['p_value']:.3g}"
    )


def _short(name: str) -> str:
    return name.split(".", 1)[1]


def lines(summary: dict[str, Any]) -> list[str]:
    """The summary in words, one line each (what the command prints and report.md lists)."""
    out = [
        f"Search per seed ({summary['objective']} on dev prompts, requiring {', '.join(summary['requires'])}); "
        "held-out rates, searched schedule vs the best uniform ratio:"
    ]
    for row in summary["seeds"]:
        cells = "; ".join(
            f"{_short(name)} {_rate(row['metrics'][name]['best'])} vs {_rate(row['metrics'][name]['uniform'])} "
            f"(n = {row['metrics'][name]['best']['n']}, paired {_paired(row['metrics'][name]['paired'])})"
            for name in REPORTED
        )
        optimism = row["optimism"]
        out.append(
            f"seed {row['seed']}: searched {_schedule(row)} against uniform r = {row['uniform']['ratio']:g}; "
            f"{cells}; optimism (dev − held out) "
            f"searched {optimism['best']:+.0%}, uniform {optimism['uniform']:+.0%}; {row['trials']} trials, "
            f"{row['seconds']:.0f} s"
        )
    for name in REPORTED:
        m = summary["mean"][name]
        if m["best"] is None:
            continue
        out.append(
            f"mean of seeds, {_short(name)}: searched {m['best']:.0%}, uniform {m['uniform']:.0%} "
            f"(pooled paired test over every seed's held-out prompts, n = {(m['pooled'] or {}).get('n')}: "
            f"{_paired(m['pooled'])})"
        )
    goal = summary["goal"]
    verdict = "met" if goal["met"] else "NOT met"
    failed = [name for name, ok in goal["checks"].items() if not ok]
    out.append(
        f"Goal (searched beats the best uniform ratio by >= 10 points of held-out fact_clean on the mean of the "
        f"seeds, significantly, refusal_zh not lower, worst seed above 30%): {verdict}"
        + (f" (missed: {', '.join(failed)})" if failed else "")
        + f"; lift {_points(goal['lift'])}, p = {_p(goal['p_value'])}, worst seed {goal['worst_seed']:.0%}."
    )
    return out


def _schedule(row: dict[str, Any]) -> str:
    return "(" + ", ".join(f"{group} {ratio:.2f}" for group, ratio in row["best"]["ratios"].items()) + ")"


def _points(value: float | None) -> str:
    return "–" if value is None else f"{value * 100:+.1f} points"


def _p(value: float | None) -> str:
    return "–" if value is None or math.isnan(value) else f"{value:.3g}"


def markdown(summary: dict[str, Any]) -> str:
    """The report.md section: a table per seed and the mean, then the goal."""
    head = (
        "| seed | uniform r | "
        + " | ".join(f"{_short(n)}: searched | uniform | paired diff, p" for n in REPORTED)
        + " | optimism (searched / uniform) |"
    )
    table = [head, "|---" * (2 + 3 * len(REPORTED) + 1) + "|"]
    for row in summary["seeds"]:
        cells = " | ".join(
            f"{_rate(row['metrics'][n]['best'])} | {_rate(row['metrics'][n]['uniform'])} | "
            f"{_paired(row['metrics'][n]['paired'])}"
            for n in REPORTED
        )
        optimism = row["optimism"]
        table.append(
            f"| {row['seed']} | {row['uniform']['ratio']:g} | {cells} | "
            f"{optimism['best']:+.0%} / {optimism['uniform']:+.0%} |"
        )
    text = ["## Search: a ratio per group of tensors against the best uniform ratio", "", *table, ""]
    text += [f"- seed {row['seed']}, the searched schedule: {_schedule(row)[1:-1]}" for row in summary["seeds"]]
    text += [f"- {line}" for line in lines(summary)[len(summary["seeds"]) + 1 :]]
    text += ["", "Each seed's search: `seed-N/search/report.md`; its best schedule: `seed-N/search/best-recipe.yaml`."]
    return "\n".join(text) + "\n"
