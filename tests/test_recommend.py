"""The sweep's recommendation with statistics: ratios whose instruction score is not significantly
different are tied and the smallest is recommended; rows carry intervals and n; plots get error bars."""

from __future__ import annotations

import json

import pytest

from chatvector.eval.backends import ScriptedBackend
from chatvector.eval.evaluation import evaluate
from chatvector.sweep.recommend import paired_p, recommend, row_from_results
from chatvector.sweep.report import _errors, markdown, write_reports

PROMPTS = 60


@pytest.fixture(scope="module")
def prompt_file(tmp_path_factory):
    path = tmp_path_factory.mktemp("data") / "verifiable.jsonl"
    rows = [
        {
            "id": f"v{i:02d}",
            "lang": "en",
            "prompt": f"Mention the word apple, please ({i}).",
            "rules": [{"type": "include", "value": ["apple"]}],
        }
        for i in range(PROMPTS)
    ]
    path.write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
    return str(path)


def sweep_row(ratio, passes, prompt_file):
    """The row of a ratio whose model follows the instruction on the first ``passes`` prompts."""

    def reply(conversation):
        number = int(conversation[-1]["content"].split("(")[1].rstrip(").,"))
        return "I like the apple very much." if number < passes else "I like the pear very much."

    result = evaluate(ScriptedBackend(reply), ["verifiable"], "en", data={"verifiable": prompt_file})
    return row_from_results(ratio, result.to_json())


def test_rows_carry_intervals_n_and_per_sample_values(prompt_file):
    row = sweep_row(0.5, 54, prompt_file)
    assert row["metrics"]["verifiable.pass_rate"] == 0.9 and row["n"]["verifiable.pass_rate"] == PROMPTS
    low, high = row["intervals"]["verifiable.pass_rate"]
    assert low < 0.9 < high
    values = row["per_sample"]["verifiable.pass_rate"]
    assert len(values) == PROMPTS and values["verifiable/v53"] == 1.0 and values["verifiable/v54"] == 0.0
    assert "verifiable.rule_pass_rate" not in row["per_sample"]  # not a ranking metric: kept out of sweep.json


def test_ratios_not_significantly_worse_tie_and_the_smallest_wins(prompt_file):
    rows = [sweep_row(0.25, 45, prompt_file), sweep_row(0.5, 55, prompt_file), sweep_row(1.0, 58, prompt_file)]
    assert paired_p(rows[2], rows[1], "verifiable.pass_rate")[0] >= 0.05  # 3 prompts apart: noise at n = 60
    assert paired_p(rows[2], rows[0], "verifiable.pass_rate")[0] < 0.05  # 13 apart: real
    advice = recommend(rows)
    assert (advice["ratio"], advice["best_ratio"], advice["tied"]) == (0.5, 1.0, [0.5])
    assert "r=1 (0.967)" in advice["reason"]
    assert "r=0.5 (0.917, p=" in advice["reason"] and "n=60" in advice["reason"]
    assert (
        "not significantly different from it" in advice["reason"] and "smallest ratio is preferred" in advice["reason"]
    )
    alone = recommend([rows[0], rows[2]])
    assert (alone["ratio"], alone["tied"]) == (1.0, []) and "significantly worse" in alone["reason"]


def test_rank_by_follows_the_metrics_direction(prompt_file):
    rows = [sweep_row(0.5, 30, prompt_file), sweep_row(1.0, 58, prompt_file)]
    for row, toxicity in zip(rows, (0.4, 0.1), strict=True):
        row["metrics"]["toxicity.mean"] = toxicity
        row["higher_is_better"]["toxicity.mean"] = False
        row["metrics"]["lm_eval.ifeval.acc"] = 1 - toxicity
    assert recommend(rows, rank_by="toxicity.mean")["ratio"] == 1.0  # lower is better
    harness = recommend(rows, rank_by="lm_eval.ifeval.acc")
    assert (harness["ratio"], harness["metric"]) == (1.0, "lm_eval.ifeval.acc")  # no per-sample data: exact rule


def test_report_tables_show_intervals_and_plots_get_error_bars(prompt_file, tmp_path):
    rows = [sweep_row(0.0, 40, prompt_file), sweep_row(0.5, 54, prompt_file)]
    summary = {"lang": "en", "threshold": 0.95, "rows": rows, "recommendation": recommend(rows)}
    low, high = rows[1]["intervals"]["verifiable.pass_rate"]
    assert _errors(rows, "verifiable.pass_rate") == [
        [pytest.approx(40 / 60 - rows[0]["intervals"]["verifiable.pass_rate"][0]), pytest.approx(0.9 - low)],
        [pytest.approx(rows[0]["intervals"]["verifiable.pass_rate"][1] - 40 / 60), pytest.approx(high - 0.9)],
    ]
    assert _errors([{"ratio": 1, "metrics": {"x": 0.5}}], "x") is None  # older rows: plain points
    text = markdown(summary)
    assert f"0.900 [{low:.2f}, {high:.2f}]" in text and "n: " in text and "verifiable.pass_rate 60" in text
    write_reports(tmp_path, summary)
    assert (tmp_path / "metrics.png").stat().st_size > 0 and "95% intervals" in (tmp_path / "report.html").read_text()
