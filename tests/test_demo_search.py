"""`chatvector demo --search` end to end on the quick family: each seed's search is a normal
`chatvector search` (its folder, recipe and held-out comparison), its trials evaluate the demo's
own prompts, and the report states the comparison and the goal."""

from __future__ import annotations

import json

import pytest
import yaml

from chatvector.demo import corpus
from chatvector.demo.world import make_world


@pytest.mark.slow
def test_demo_search_runs_end_to_end_on_the_quick_family(monkeypatch, capsys, tmp_path):
    from helpers import run_cli

    out, cache = tmp_path / "report", tmp_path / "cache"
    args = ["demo", "--quick", "--search", "--trials", "5", "--ratios", "0.5,1,1.5"]
    code, printed = run_cli(monkeypatch, capsys, *args, "--out", out, "--cache-dir", cache)
    assert code == 0, printed

    prompts = [json.loads(line) for line in (out / "seed-0" / "prompts.jsonl").read_text(encoding="utf-8").splitlines()]
    assert [row["id"] for row in prompts] == [item.id for item in corpus.eval_items(make_world(0))]

    folder = out / "seed-0" / "search"
    search = json.loads((folder / "search.json").read_text(encoding="utf-8"))
    assert search["objective"] == "demo.fact_clean" and search["requires"] == ["demo.refusal_zh>=target"]
    assert len(search["trials"]) == 5 and sum(t["uniform"] for t in search["trials"]) == 3  # the grid first
    dev, held = search["splits"]["dev"]["demo"], search["splits"]["heldout"]["demo"]
    assert not set(dev) & set(held) and sorted(dev + held) == sorted(row["id"] for row in prompts)
    assert yaml.safe_load((folder / "best-recipe.yaml").read_text(encoding="utf-8"))["terms"]

    results = json.loads((out / "results.json").read_text(encoding="utf-8"))
    summary = results["search"]
    seed = summary["seeds"][0]
    heldout = json.loads((folder / "heldout" / "best" / "results.json").read_text(encoding="utf-8"))
    assert seed["metrics"]["demo.fact_clean"]["best"]["value"] == heldout["metrics"]["demo.fact_clean"]["value"]
    assert seed["metrics"]["demo.fact_clean"]["best"]["n"] == sum(1 for i in held if i.startswith("fact-"))
    assert isinstance(summary["goal"]["met"], bool) and set(summary["goal"]["checks"]) == {
        "lift >= 10 points",
        "significant (pooled paired test, p < 0.05)",
        "refusal_zh not lower",
        "worst seed above 30%",
    }
    report = (out / "report.md").read_text(encoding="utf-8")
    assert "## Search: a ratio per group of tensors against the best uniform ratio" in report
    assert "Goal (searched beats the best uniform ratio" in printed and "seed 0: searched (embeddings " in printed
