"""Render benchmark results (the dict that run.py writes as JSON) as a Markdown report.

Usage: ``python report.py RESULTS.json`` prints the report again from a saved results file.

The report holds the machine and versions, one table row per (approach, size), the acceptance
targets with a met / not met verdict computed from the rows, and notes on how things were
measured. Numbers are never invented: a row that failed or was skipped says why instead.
"""

from __future__ import annotations

import json
import math
import statistics
import sys
from pathlib import Path

GB = 1e9

# What each column means, for the JSON's self-description and the report's notes.
COLUMNS = [
    ("approach", "what was run (see the list below the table)", None),
    ("size", "synthetic model size", None),
    ("n", "timed runs (the median is reported)", None),
    ("wall s", "median wall time of the process, start-up included", False),
    ("min–max s", "fastest and slowest run", False),
    ("+sync s", "median time of an os.sync() right after the process exited (unflushed output)", False),
    ("in GB/s", "bytes read / median wall", True),
    ("× floor", "median wall / median wall of the floor row of the same size", False),
    ("RSS GB", "peak resident set of the largest process (getrusage ru_maxrss), max over runs", False),
    ("RSS tree GB", "peak summed VmRSS of the process tree (polled every 20 ms), max over runs", False),
    ("anon GB", "peak summed RssAnon of the process tree (polled), max over runs", False),
    ("max abs err", "largest |output − bf16(float32 reference)|", False),
    ("max steps", "largest distance in bf16 representable values from the reference", False),
    ("mismatched", "share of elements not bit-identical to the reference", False),
    ("≤1 step", "every tensor present, finite and within one bf16 step of the reference", True),
]


def _num(value: float | None, digits: int = 2) -> str:
    if value is None or (isinstance(value, float) and not math.isfinite(value)):
        return "–"
    return f"{value:.{digits}f}"


def _gb(value: int | None) -> str:
    return "–" if value is None else f"{value / GB:.2f}"


def _error_cells(deviation: dict | None) -> list[str]:
    if deviation is None:
        return ["n/a"] * 4
    error = deviation["max_abs_err"]
    error_text = "0" if error == 0 else f"{error:.2e}"
    share = deviation["mismatched"] / deviation["elements"] if deviation["elements"] else math.nan
    if deviation["mismatched"] == 0:
        share_text = "0"
    elif share < 1e-5:  # a percentage would round to 0.000%
        share_text = f"{deviation['mismatched']} elements"
    else:
        share_text = f"{share:.3%}"
    return [error_text, str(deviation["max_steps"]), share_text, "yes" if deviation["within_one_step"] else "no"]


def table_rows(results: dict) -> list[list[str]]:
    """One list of cells per row of the results, in the order of COLUMNS."""
    rows = []
    for row in results["rows"]:
        head = [row["approach"], row["size"]]
        if row["status"] != "ok":
            reason = row["reason"].replace("|", "/").replace("\n", " ")
            rows.append(
                head + [str(len(row.get("runs", []))), f"**{row['status']}**: {reason}"] + [""] * (len(COLUMNS) - 4)
            )
            continue
        wall = row["wall_s"]
        rows.append(
            head
            + [
                str(len(row["runs"])),
                _num(wall["median"]),
                f"{_num(wall['min'])}–{_num(wall['max'])}",
                _num(row["sync_s_median"]),
                _num(row["input_gb_per_s"]),
                _num(row.get("vs_floor")),
                _gb(row["maxrss_bytes"]),
                _gb(row["peak_rss_tree_bytes"]),
                _gb(row["peak_anon_tree_bytes"]),
                *_error_cells(row.get("deviation")),
            ]
        )
    return rows


def markdown_table(results: dict) -> str:
    lines = ["| " + " | ".join(name for name, _, _ in COLUMNS) + " |", "|" + "|".join("---" for _ in COLUMNS) + "|"]
    lines += ["| " + " | ".join(cells) + " |" for cells in table_rows(results)]
    return "\n".join(lines)


def _row(results: dict, approach: str, size: str) -> dict | None:
    for row in results["rows"]:
        if row["approach"] == approach and row["size"] == size and row["status"] == "ok":
            return row
    return None


def acceptance(results: dict) -> list[dict]:
    """The acceptance targets, each with the measured value and whether it is met (None: unknown)."""
    checks = []
    merge, floor = _row(results, "merge", "1.1b"), _row(results, "floor", "1.1b")
    value = merge["wall_s"]["median"] / floor["wall_s"]["median"] if merge and floor else None
    text = f"{value:.2f}× floor" if value else "no merge or floor row for 1.1b"
    startup = results.get("startup")
    if value and startup:
        net = (merge["wall_s"]["median"] - startup["median_s"]) / floor["wall_s"]["median"]
        text += f" ({net:.2f}× without the {startup['median_s']:.2f} s start-up)"
    if value and all("phases" in run for run in floor["runs"]):
        # A tool that reads while its earlier output is written can at best take the slower phase.
        bound = max(
            statistics.median(run["phases"][key] for run in floor["runs"]) for key in ("read_s", "write_fsync_s")
        )
        text += (
            f"; {merge['wall_s']['median'] / bound:.2f}× the overlapped bound, the floor's slower "
            f"phase alone ({bound:.2f} s)"
        )
    checks.append(
        {
            "target": "merge on 1.1b ≤ 1.5× floor wall",
            "value": value,
            "text": text,
            "met": None if value is None else value <= 1.5,
        }
    )
    for variant in ("mergekit", "mergekit-fp32"):
        other = _row(results, variant, "1.1b")
        value = other["wall_s"]["median"] / merge["wall_s"]["median"] if merge and other else None
        checks.append(
            {
                "target": f"merge on 1.1b ≥ 4× faster than {variant}",
                "value": value,
                "text": f"{value:.2f}× faster" if value else f"no {variant} row for 1.1b",
                "met": None if value is None else value >= 4,
            }
        )
    peaks = {
        row["size"]: max(row["maxrss_bytes"], row["peak_rss_tree_bytes"])
        for row in results["rows"]
        if row["approach"] == "merge" and row["status"] == "ok"
    }
    if peaks:
        worst = max(peaks.values())
        spread = worst / min(peaks.values())
        listed = ", ".join(f"{size}: {peak / GB:.2f} GB" for size, peak in peaks.items())
        checks.append({"target": "merge peak RSS ≤ 1 GB", "value": worst / GB, "text": listed, "met": worst <= GB})
        checks.append(
            {
                "target": "merge peak RSS flat across sizes (max/min ≤ 1.2)",
                "value": spread,
                "text": f"max/min = {spread:.2f} over {len(peaks)} sizes",
                "met": spread <= 1.2 if len(peaks) > 1 else None,
            }
        )
    exact = [row for row in results["rows"] if row["approach"] in ("merge", "apply") and row["status"] == "ok"]
    if exact:
        off = [f"{row['approach']} {row['size']}" for row in exact if not row["deviation"]["within_one_step"]]
        checks.append(
            {
                "target": "merge and apply outputs within one bf16 step of the float32 reference",
                "value": len(off),
                "text": f"{len(exact) - len(off)} of {len(exact)} outputs"
                + (f"; off: {', '.join(off)}" if off else ""),
                "met": not off,
            }
        )
    return checks


def render(results: dict) -> str:
    """The whole Markdown report."""
    machine, versions = results["machine"], results["versions"]
    out = [f"# chatvector merge benchmark — {results['date']} on {machine['host']}", ""]
    out += [
        f"Command: `{results['command']}`  ",
        f"Total time: {results['total_s']:.0f} s "
        f"(of which generating uncached inputs {results['generate_s']:.0f} s). Ratio r = "
        f"{results['config']['ratio']}; page cache warmed by reading each input once per size.",
        "",
    ]
    out += [
        "Machine: " + ", ".join(f"{k} {v}" for k, v in machine.items() if k != "host") + "  ",
        "Versions: " + ", ".join(f"{k} {v}" for k, v in versions.items()),
        "",
    ]
    out += [markdown_table(results), ""]
    out += ["## Acceptance targets", ""]
    for check in acceptance(results):
        verdict = {True: "met", False: "**not met**", None: "unknown"}[check["met"]]
        out.append(f"- {check['target']}: {check['text']} — {verdict}")
    out += ["", "## Approaches", ""]
    out += [f"- **{name}**: {what}" for name, what in results["approaches"].items()]
    out += ["", "## Columns", ""]
    out += [f"- **{name}**: {meaning}" for name, meaning, _ in COLUMNS]
    notes = list(results.get("notes", []))
    if results.get("startup"):
        startup = results["startup"]
        notes.insert(
            0,
            f"Start-up: {startup['what']} takes {startup['median_s']:.2f} s (median of "
            f"{startup['runs']}, {startup['min_s']:.2f}–{startup['max_s']:.2f} s); every merge, apply "
            "and extract wall time above includes it.",
        )
    if notes:
        out += ["", "## Notes", ""]
        out += [f"- {note}" for note in notes]
    return "\n".join(out) + "\n"


def main() -> None:
    print(render(json.loads(Path(sys.argv[1]).read_text())), end="")


if __name__ == "__main__":
    main()
