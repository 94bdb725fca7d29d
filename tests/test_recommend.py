"""The sweep's recommendation with statistics: ratios whose instruction score is not significantly
different are tied and the smallest is recommended; rows carry intervals and n; plots get error bars."""

from __future__ import annotations

import json

import pytest

from chatvector.eval.backends import ScriptedBackend
from chatvector.eval.evaluation import evaluate
from chatvector.sweep.recommend import paired_p, recommend, row_from_results
from chatvector.sweep.report import (
    _errors,
    chosen_ratio,
    markdown,
    marked_ratio,
    plot_tradeoff,
    tradeoff_points,
    write_reports,
)

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


def test_the_target_is_the_baseline_and_a_tie_with_it_recommends_no_merge(prompt_file):
    """The issue's case: with few prompts every ratio ties, and the smallest tied ratio, r = 0 (the
    target itself), was recommended. r = 0 is the baseline now: no ratio beats it, so none is
    recommended, and the best one is shown with its interval."""
    rows = [sweep_row(0.0, 33, prompt_file), sweep_row(0.5, 37, prompt_file), sweep_row(1.0, 35, prompt_file)]
    advice = recommend(rows)
    assert advice["ratio"] is None and advice["beats_target"] is False and advice["best_ratio"] == 0.5
    low, high = rows[1]["intervals"]["verifiable.pass_rate"]
    assert advice["reason"].startswith("no ratio beats the target on these prompts: the best, r=0.5, scored 0.617")
    assert (
        f"[95% interval {low:.3f}, {high:.3f}]" in advice["reason"]
        and "Holm-adjusted over 2 ratios" in advice["reason"]
    )
    summary = {"lang": "en", "threshold": 0.95, "rows": rows, "recommendation": advice}
    assert chosen_ratio(summary) == "no merge (keep the target)"
    assert "Recommended: r = 0" not in markdown(summary) and "no ratio beats the target on these" in markdown(summary)
    assert recommend(rows[:1])["reason"].startswith("no ratio beats the target on these prompts: no merged ratio")


def test_ratios_that_beat_the_target_after_holm_and_the_smallest_tied_one_wins(prompt_file):
    from statsmodels.stats.multitest import multipletests

    rows = [sweep_row(0.0, 30, prompt_file), sweep_row(0.5, 50, prompt_file), sweep_row(1.0, 53, prompt_file)]
    advice = recommend(rows)
    assert (advice["ratio"], advice["best_ratio"], advice["beats_target"]) == (0.5, 1.0, True)
    tests = advice["tests"]
    raw = [tests[0.5]["p"], tests[1.0]["p"]]
    assert raw == [pytest.approx(2 * 0.5**20), pytest.approx(2 * 0.5**23)]  # exact McNemar: 20 and 23 flips, none back
    assert [tests[0.5]["p_holm"], tests[1.0]["p_holm"]] == pytest.approx(list(multipletests(raw, method="holm")[1]))
    assert advice["reason"].startswith("r=0.5 beats the target on verifiable.pass_rate: 0.833")
    assert "exact McNemar" in advice["reason"] and "Holm-adjusted over 2 ratios" in advice["reason"]


def test_holm_keeps_two_lucky_ratios_from_beating_the_target(prompt_file):
    """6 of 40 prompts flip for each ratio: p = 0.031 alone, 0.0625 after Holm over two ratios."""
    rows = [sweep_row(0.0, 0, prompt_file), sweep_row(0.5, 6, prompt_file), sweep_row(1.0, 6, prompt_file)]
    for row in rows:  # 40 prompts, not 60
        row["per_sample"]["verifiable.pass_rate"] = {
            k: v for k, v in row["per_sample"]["verifiable.pass_rate"].items() if int(k[-2:]) < 40
        }
    advice = recommend(rows)
    assert advice["tests"][0.5]["p"] == pytest.approx(1 / 32) and advice["tests"][0.5]["p_holm"] == pytest.approx(
        1 / 16
    )
    assert advice["ratio"] is None and "no ratio beats the target" in advice["reason"]
    alone = recommend(rows[:2])  # one ratio tested: no adjustment, and p = 0.031 < 0.05
    assert alone["ratio"] == 0.5 and "Holm-adjusted over 1 ratio" in alone["reason"]


def test_ties_share_one_label_and_labels_never_overlap_in_the_tradeoff_plot(tmp_path):
    tie = [
        {"ratio": r, "metrics": {"language.target_share": 1.0, "verifiable.pass_rate": 0.5}} for r in (0, 0.25, 0.5, 1)
    ]
    summary = {"lang": "en", "threshold": 0.95, "rows": tie, "recommendation": recommend(tie)}
    [point] = tradeoff_points(summary)
    assert point["label"] == "r=0, 0.25, 0.5, 1"
    near = [
        {"ratio": r / 10, "metrics": {"language.target_share": 1.0 - r / 1000, "verifiable.pass_rate": 0.5 + r / 1000}}
        for r in range(11)
    ]
    for rows in (tie, near):
        summary = {"lang": "en", "threshold": 0.95, "rows": rows, "recommendation": recommend(rows)}
        extents = plot_tradeoff(summary, tmp_path / "tradeoff.png")
        assert len(extents) == len(tradeoff_points(summary))
        for i, (_, (x0, y0, x1, y1)) in enumerate(extents):
            for _, (u0, v0, u1, v1) in extents[i + 1 :]:
                assert x1 <= u0 or u1 <= x0 or y1 <= v0 or v1 <= y0, extents  # no two labels overlap


def _green_pixels(path):
    import matplotlib.image

    pixels = matplotlib.image.imread(path)[..., :3]
    return int(((abs(pixels - [0.173, 0.627, 0.173]) < 0.08).all(axis=-1)).sum())  # matplotlib's tab:green


def test_the_recommended_ratio_is_marked_in_every_plot(prompt_file, tmp_path):
    rows = [sweep_row(0.0, 30, prompt_file), sweep_row(0.5, 50, prompt_file), sweep_row(1.0, 53, prompt_file)]
    marked = {"lang": "en", "threshold": 0.95, "rows": rows, "recommendation": recommend(rows)}
    plain = {**marked, "recommendation": {"ratio": None, "metric": "verifiable.pass_rate", "reason": "none"}}
    for summary, folder in ((marked, tmp_path / "marked"), (plain, tmp_path / "plain")):
        folder.mkdir()
        write_reports(folder, summary)
    assert marked_ratio(marked)[0] == 0.5 and marked_ratio(plain) is None
    for name in ("metrics.png", "tradeoff.png"):
        assert _green_pixels(tmp_path / "marked" / name) > 50 and _green_pixels(tmp_path / "plain" / name) == 0, name
    page = (tmp_path / "marked" / "report.html").read_text()
    assert "Marked in the plots and the table: recommended: r = 0.5" in page and "<th class=marked>r=0.5</th>" in page
