"""The benchmark's smoke mode: bench/run.py --smoke runs end to end on a tiny model.

It must write its Markdown report and JSON, the floor, merge and apply rows must carry finite
numbers, and chatvector's outputs must be within one bf16 step of the float32 recomputation.
The checker itself is also shown to fail on a wrong output, so a passing row means something.
"""

from __future__ import annotations

import importlib.util
import json
import math
import subprocess
import sys
from pathlib import Path

import pytest

BENCH = Path(__file__).resolve().parents[1] / "bench"
NUMERIC_COLUMNS = ("wall s", "in GB/s", "× floor", "RSS GB", "RSS tree GB", "anon GB")


def parse_table(markdown: str) -> dict[tuple[str, str], dict[str, str]]:
    """(approach, size) → {column: cell} for the first Markdown table of a report."""
    lines = [line for line in markdown.splitlines() if line.startswith("|")]
    header = [cell.strip() for cell in lines[0].strip("|").split("|")]
    rows = {}
    for line in lines[2:]:
        cells = [cell.strip() for cell in line.strip("|").split("|")]
        row = dict(zip(header, cells, strict=True))
        rows[(row["approach"], row["size"])] = row
    return rows


def load_check_module():  # noqa: ANN201 - a module
    spec = importlib.util.spec_from_file_location("bench_check", BENCH / "check.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up by name
    spec.loader.exec_module(module)
    return module


@pytest.mark.slow
def test_smoke_benchmark_writes_finite_exact_results(tmp_path: Path) -> None:
    done = subprocess.run(
        [sys.executable, str(BENCH / "run.py"), "--smoke", "--work", str(tmp_path)],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]

    reports = sorted((tmp_path / "results").glob("*.md"))
    assert len(reports) == 1, reports
    markdown = reports[0].read_text()
    assert "| approach | size |" in done.stdout  # the table is printed too
    rows = parse_table(markdown)
    for approach in ("floor", "merge", "apply"):
        row = rows[(approach, "smoke")]
        for column in NUMERIC_COLUMNS:
            value = float(row[column])
            assert math.isfinite(value) and value >= 0, (approach, column, row[column])
        assert float(row["wall s"]) > 0 and float(row["RSS GB"]) > 0, row
    for approach in ("merge", "apply"):
        row = rows[(approach, "smoke")]
        assert row["≤1 step"] == "yes", row
        assert int(row["max steps"]) <= 1 and float(row["max abs err"]) < 1e-2, row

    results = json.loads(reports[0].with_suffix(".json").read_text())
    by_name = {(r["approach"], r["size"]): r for r in results["rows"]}
    for approach in ("merge", "apply"):
        deviation = by_name[(approach, "smoke")]["deviation"]
        assert deviation["within_one_step"] and deviation["problems"] == []
        assert deviation["tensors"] == 21 and deviation["elements"] > 0 and deviation["nonfinite"] == 0
    # apply reads the target and the float32 vector (twice the bf16 size), as much as merge's three inputs
    assert by_name[("apply", "smoke")]["bytes_read"] == pytest.approx(
        by_name[("merge", "smoke")]["bytes_read"], rel=0.05
    )

    # The checker can fail: the target itself is not target + r·(chat − base).
    check = load_check_module()
    models = {role: tmp_path / "models" / "smoke" / role for role in ("base", "chat", "cp")}
    wrong = check.compare(models, models["cp"], 0.5)
    assert not wrong.within_one_step and wrong.mismatched > 0 and wrong.max_steps > 1
    assert check.compare(models, models["cp"], 0.0).within_one_step  # ratio 0 gives the target exactly
