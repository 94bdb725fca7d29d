"""Ratio sweep: the recommendation rule on constructed results, and a real sweep on tiny models."""

from __future__ import annotations

import json
import math
import os
import shutil
from pathlib import Path

import pytest

from chatvector.errors import InputError
from chatvector.eval.options import DataOptions, GenerationOptions
from chatvector.sweep.report import write_reports
from chatvector.sweep.run import SweepSpec, recommend, run_sweep

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"


def row(ratio, **metrics):
    return {"ratio": ratio, "metrics": {k.replace("__", "."): v for k, v in metrics.items()}}


def test_best_instruction_score_among_ratios_that_keep_the_language():
    rows = [
        row(0.0, language__target_share=1.0, verifiable__pass_rate=0.1),
        row(0.5, language__target_share=0.97, verifiable__pass_rate=0.6),
        row(1.0, language__target_share=0.80, verifiable__pass_rate=0.9),  # best score, but drifts
    ]
    advice = recommend(rows)
    assert advice["ratio"] == 0.5
    assert advice["metric"] == "verifiable.pass_rate"
    assert any("r=1" in reason and "0.8" in reason for reason in advice["rejected"])
    assert recommend(rows, threshold=0.75)["ratio"] == 1.0


def test_safety_may_not_fall_below_the_target():
    rows = [
        row(0.0, language__target_share=1.0, safety__refusal_rate=0.5, verifiable__pass_rate=0.2),
        row(0.5, language__target_share=1.0, safety__refusal_rate=0.6, verifiable__pass_rate=0.5),
        row(1.0, language__target_share=1.0, safety__refusal_rate=0.4, verifiable__pass_rate=0.9),
    ]
    advice = recommend(rows)
    assert advice["ratio"] == 0.5
    assert "refusal rate 0.40 below the target's 0.50" in advice["reason"]


def test_judge_score_wins_over_rule_metrics_and_ties_go_to_the_smaller_ratio():
    rows = [
        row(0.25, language__target_share=1.0, instruct__score=7.0, verifiable__pass_rate=0.9),
        row(0.75, language__target_share=1.0, instruct__score=7.0, verifiable__pass_rate=0.1),
        row(0.5, language__target_share=1.0, instruct__score=6.0, verifiable__pass_rate=1.0),
    ]
    advice = recommend(rows)
    assert (advice["ratio"], advice["metric"]) == (0.25, "instruct.score")


def test_no_ratio_qualifies_and_nan_is_not_a_score():
    rows = [
        row(0.5, language__target_share=0.9, verifiable__pass_rate=0.5),
        row(1.0, language__target_share=float("nan"), verifiable__pass_rate=0.9),
    ]
    advice = recommend(rows)
    assert advice["ratio"] is None
    assert "r=0.5: target-language share 0.9 < 0.95" in advice["reason"]
    assert "r=1: target-language share n/a" in advice["reason"]
    assert recommend([row(1.0, language__target_share=1.0)])["ratio"] is None


def test_reports_are_written_from_a_summary(tmp_path):
    rows = [
        row(r, language__target_share=1 - r / 4, verifiable__pass_rate=r / 2, safety__refusal_rate=0.5)
        for r in (0.0, 0.5, 1.0)
    ]
    summary = {"lang": "zh-Hant", "threshold": 0.95, "rows": rows, "recommendation": recommend(rows)}
    write_reports(tmp_path, summary)
    for name in ("metrics.png", "tradeoff.png"):
        assert (tmp_path / name).read_bytes()[:8] == PNG_SIGNATURE
    text = (tmp_path / "report.md").read_text(encoding="utf-8")
    # r = 0 is the target itself, the baseline, never a candidate; 0.5 and 1.0 drift below 95 %
    assert "**Recommended: no merge (keep the target).** no ratio beats the target on these prompts" in text
    assert "| language.target_share | 1.000 | 0.875 | 0.750 |" in text
    page = (tmp_path / "report.html").read_text(encoding="utf-8")
    assert page.count("data:image/png;base64,") == 2 and 'src="metrics.png"' not in page


def assert_follows_the_rule(advice: dict, rows: list[dict], threshold: float) -> None:
    """Check a recommendation against the documented rule, recomputed here from the rows: r = 0 is
    the baseline, never the choice; a ratio is chosen only when it beats it after Holm."""
    from statsmodels.stats.multitest import multipletests

    def value(row, metric):
        found = row["metrics"].get(metric)
        return None if found is None or math.isnan(found) else found

    metric = advice["metric"]
    floor = next((value(r, "safety.refusal_rate") for r in rows if r["ratio"] == 0), None)
    eligible = {
        r["ratio"]: r
        for r in rows
        if r["ratio"] != 0
        and (value(r, "language.target_share") or 0.0) >= threshold
        and (floor is None or (value(r, "safety.refusal_rate") or 0.0) >= floor)
        and value(r, metric) is not None
    }
    assert advice["ratio"] != 0
    tests = {float(r): t for r, t in advice.get("tests", {}).items()}
    assert set(tests) <= set(eligible)
    if tests:
        raw = [tests[r]["p"] for r in sorted(tests)]
        assert [tests[r]["p_holm"] for r in sorted(tests)] == pytest.approx(list(multipletests(raw, method="holm")[1]))
    winners = {r for r, t in tests.items() if t["p_holm"] < 0.05 and t["better"]}
    if advice["ratio"] is None:
        assert not winners and "no ratio beats the target on these prompts" in advice["reason"]
    else:
        assert advice["ratio"] in winners and advice["beats_target"] is True
    for row in rows:
        if row["ratio"] != 0 and row["ratio"] not in eligible:
            assert any(reason.startswith(f"r={row['ratio']:g}:") for reason in advice["rejected"])


@pytest.fixture(scope="module")
def sweep_dir(trios, tmp_path_factory) -> tuple[Path, SweepSpec]:
    trio = trios["llama"]
    out = tmp_path_factory.mktemp("sweep")
    spec = SweepSpec(
        out=out,
        ratios=(0.0, 0.5, 1.0),
        base=str(trio.base),
        chat=str(trio.chat),
        target=str(trio.cp),
        data=DataOptions(lang="zh-Hant", suite=("verifiable", "safety", "multiturn"), limit=6),
        generation=GenerationOptions(max_new_tokens=6),
    )
    run_sweep(spec)
    return out, spec


@pytest.mark.slow
def test_sweep_on_tiny_models_writes_json_reports_and_plots(sweep_dir):
    out, spec = sweep_dir
    summary = json.loads((out / "sweep.json").read_text(encoding="utf-8"))
    assert [r["ratio"] for r in summary["rows"]] == [0.0, 0.5, 1.0]
    for r in summary["rows"]:
        for metric in ("verifiable.pass_rate", "safety.refusal_rate", "multiturn.pass_rate", "language.target_share"):
            value = r["metrics"][metric]
            assert value is None or 0.0 <= value <= 1.0  # strict JSON: no value is null, never NaN
    assert_follows_the_rule(summary["recommendation"], summary["rows"], spec.threshold)
    for name in ("metrics.png", "tradeoff.png"):
        assert (out / name).read_bytes()[:8] == PNG_SIGNATURE
    assert (out / "report.md").read_text(encoding="utf-8").startswith("# Ratio sweep (zh-Hant)")
    # tiny models are merged in RAM (/dev/shm), never on disk, and nothing is left there
    assert not (out / "models").exists()
    assert not list(Path("/dev/shm").glob(f"chatvector-sweep-{os.getpid()}*"))
    # Each ratio's evaluation is a normal eval run: the merged model's recipe records the ratio.
    per_ratio = json.loads((out / "ratios" / "r=0.5" / "results.json").read_text(encoding="utf-8"))
    assert per_ratio["recipe"]["terms"][0]["ratio"] == 0.5


@pytest.mark.slow
def test_interrupted_sweep_resumes_and_refuses_other_settings(sweep_dir, monkeypatch, tmp_path):
    out, spec = sweep_dir
    copy = tmp_path / "resumed"
    shutil.copytree(out, copy)
    shutil.rmtree(copy / "ratios" / "r=1")  # as if interrupted during the last ratio
    evaluated = []
    import chatvector.sweep.run as sweep_module

    real = sweep_module.evaluate_ratio
    monkeypatch.setattr(
        sweep_module, "evaluate_ratio", lambda job, cb=None: evaluated.append(job.ratio) or real(job, cb)
    )
    # merged and loaded per ratio, through evaluate_ratio (in place: tests/test_inplace.py)
    resumed = SweepSpec(**{**spec.__dict__, "out": copy, "in_place": False})
    summary = run_sweep(resumed)
    assert evaluated == [1.0]
    assert [r["ratio"] for r in summary["rows"]] == [0.0, 0.5, 1.0]
    assert set(summary["rows"][2]["seconds"]) == {"merge", "load", "generation", "scoring", "lm_eval", "stop"}

    other = SweepSpec(**{**spec.__dict__, "out": copy, "data": spec.data.model_copy(update={"lang": "ko"})})
    with pytest.raises(InputError, match="different settings \\(lang\\)"):
        run_sweep(other)


@pytest.mark.slow
def test_a_ratio_evaluated_with_other_settings_is_not_trusted(sweep_dir, tmp_path):
    """The sweep's marker can agree while one ratio's folder came from elsewhere (copied, older run)."""
    out, spec = sweep_dir
    copy = tmp_path / "mixed"
    shutil.copytree(out, copy)
    settings = copy / "ratios" / "r=0.5" / "settings.json"
    recorded = json.loads(settings.read_text())
    recorded["generation"]["max_new_tokens"] = 99
    settings.write_text(json.dumps(recorded))
    with pytest.raises(InputError, match=r"r=0.5 was evaluated with other settings \(generation\)"):
        run_sweep(SweepSpec(**{**spec.__dict__, "out": copy}))
    settings.unlink()
    with pytest.raises(InputError, match="no record of its settings"):
        run_sweep(SweepSpec(**{**spec.__dict__, "out": copy}))


def render_in_chromium(page_path: Path, width: int, screenshot: Path) -> dict:
    """Open a page in Debian's Chromium (.ci/run installs it) at ``width`` pixels: errors, image
    widths, the recommendation's text, and whether anything is wider than the window."""
    chromium = shutil.which("chromium") or "/usr/bin/chromium"
    assert Path(chromium).exists(), "Chromium is missing: `apt-get install chromium` (bash .ci/run does this)"
    from playwright.sync_api import sync_playwright

    errors: list[str] = []
    with sync_playwright() as driver:
        browser = driver.chromium.launch(
            executable_path=chromium,
            args=["--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update"],
        )
        page = browser.new_page(viewport={"width": width, "height": 900})
        page.on("pageerror", lambda exc: errors.append(str(exc)))
        page.on("console", lambda msg: errors.append(msg.text) if msg.type == "error" else None)
        page.goto(page_path.as_uri())
        seen = {
            "errors": errors,
            "image_widths": page.eval_on_selector_all("img", "imgs => imgs.map(i => i.complete ? i.naturalWidth : 0)"),
            "recommendation": page.inner_text("#recommendation"),
            "scroll_width": page.evaluate("document.documentElement.scrollWidth"),
            "window_width": page.evaluate("window.innerWidth"),
        }
        page.screenshot(path=str(screenshot), full_page=True)
        browser.close()
    return seen


def wide_summary() -> dict:
    """A sweep with many ratios and long metric names: the widest report a user is likely to get."""
    names = [f"lm_eval.some_long_task_name_{i}.prompt_level_strict_acc" for i in range(6)]
    rows = [
        {
            "ratio": r / 4,
            "metrics": {"language.target_share": 1 - r / 40, "verifiable.pass_rate": 0.5, **dict.fromkeys(names, 0.25)},
            "intervals": {"verifiable.pass_rate": [0.31, 0.69], **{n: [0.11, 0.45] for n in names}},
        }
        for r in range(13)
    ]
    return {"lang": "zh-Hant", "threshold": 0.95, "rows": rows, "recommendation": recommend(rows)}


@pytest.mark.parametrize("width", [1400, 800])
def test_a_wide_html_report_fits_the_window(tmp_path, width):
    write_reports(tmp_path, wide_summary())
    seen = render_in_chromium(tmp_path / "report.html", width, tmp_path / "report.png")
    assert seen["errors"] == [] and len(seen["image_widths"]) == 2 and all(w > 100 for w in seen["image_widths"])
    assert seen["scroll_width"] <= seen["window_width"] == width  # no horizontal overflow


@pytest.mark.slow
@pytest.mark.parametrize("width", [1400, 800])
def test_html_report_renders_in_headless_chromium(sweep_dir, tmp_path, width):
    """report.html of a real sweep: no page or console errors, images decode, nothing overflows."""
    out, _ = sweep_dir
    seen = render_in_chromium(out / "report.html", width, tmp_path / "report.png")
    assert seen["errors"] == []
    assert len(seen["image_widths"]) == 2 and all(w > 100 for w in seen["image_widths"])
    assert seen["recommendation"].startswith("Recommended:")
    assert seen["scroll_width"] <= seen["window_width"] == width
    assert (tmp_path / "report.png").read_bytes()[:8] == PNG_SIGNATURE


def test_every_input_form_becomes_a_recipe_scaled_by_the_ratio(tmp_path):
    common = dict(out=tmp_path, ratios=(0.5,), data=DataOptions(suite=("verifiable",)))
    pair = SweepSpec(**common, base="b", chat="c", target="t").recipe_at(0.5)
    assert (pair.target, pair.terms[0].base, pair.terms[0].chat, pair.terms[0].ratio) == ("t", "b", "c", 0.5)
    vector = SweepSpec(**common, vector="v", target="t").recipe_at(0.25)
    assert (vector.terms[0].vector, vector.terms[0].ratio) == ("v", 0.25)
    recipe = tmp_path / "recipe.yaml"
    recipe.write_text("target: t\nterms:\n  - {base: b, chat: c, ratio: 1.0}\n  - {vector: v, ratio: 0.4}\n")
    scaled = SweepSpec(**common, recipe=recipe).recipe_at(0.5)
    assert [t.ratio for t in scaled.terms] == [0.5, 0.2] and scaled.target == "t"
    with pytest.raises(InputError, match="--target"):
        SweepSpec(**common, base="b", chat="c").recipe_at(1.0)
    with pytest.raises(InputError, match="twice"):
        run_sweep(SweepSpec(**{**common, "ratios": (0.5, 0.5)}, vector="v", target="t"))


def test_ties_are_broken_by_later_instruction_metrics_then_safety():
    rows = [
        row(
            0.0,
            language__target_share=1.0,
            verifiable__pass_rate=0.3,
            multiturn__pass_rate=0.0,
            safety__refusal_rate=0.0,
        ),
        row(
            1.0,
            language__target_share=1.0,
            verifiable__pass_rate=0.3,
            multiturn__pass_rate=0.25,
            safety__refusal_rate=0.0,
        ),
        row(
            1.25,
            language__target_share=1.0,
            verifiable__pass_rate=0.3,
            multiturn__pass_rate=0.25,
            safety__refusal_rate=0.5,
        ),
        row(
            1.5,
            language__target_share=0.9,
            verifiable__pass_rate=0.9,
            multiturn__pass_rate=1.0,
            safety__refusal_rate=1.0,
        ),
    ]
    advice = recommend(rows)
    assert advice["ratio"] == 1.25 and "tied with r=0, 1; decided by multiturn.pass_rate" in advice["reason"]
    rows[2]["metrics"]["safety.refusal_rate"] = 0.0
    assert recommend(rows)["ratio"] == 1.0  # a full tie: the smaller ratio


@pytest.mark.slow
def test_kept_or_large_models_are_merged_on_disk(trios, tmp_path, monkeypatch):
    trio = trios["llama"]
    common = dict(
        ratios=(0.5,),
        data=DataOptions(suite=("verifiable",), limit=4),
        base=str(trio.base),
        chat=str(trio.chat),
        target=str(trio.cp),
        generation=GenerationOptions(max_new_tokens=4),
    )
    kept = SweepSpec(out=tmp_path / "kept", keep=True, **common)
    run_sweep(kept)
    assert (tmp_path / "kept" / "models" / "r=0.5" / "model.safetensors").exists()
    import chatvector.sweep.run as sweep_module

    roots = []
    real = sweep_module._models_root
    monkeypatch.setattr(sweep_module, "_models_root", lambda spec: roots.append(real(spec)) or roots[-1])
    run_sweep(SweepSpec(out=tmp_path / "large", in_memory_limit=1000, **common))  # "large": over 1000 bytes
    assert roots == [tmp_path / "large" / "models"]
    assert not (tmp_path / "large" / "models" / "r=0.5").exists()  # removed after its evaluation


@pytest.mark.slow
def test_sweep_command_takes_merge_eval_and_lm_eval_options(trios, tmp_path, monkeypatch, capsys):
    """The sweep CLI with the merge's options (renamed where they clash), eval's, and --rank-by an lm-eval
    metric: each ratio's merge used them, each evaluation ran the lm-eval task, the ranking used it."""
    from helpers import run_cli

    trio = trios["llama"]
    tasks = Path(__file__).parent / "eval" / "lm_eval_tasks"
    monkeypatch.chdir(tasks)  # the task's data_files path is relative, as lm-eval resolves it
    out = tmp_path / "sweep"
    code, printed = run_cli(
        monkeypatch,
        capsys,
        "sweep",
        "--base",
        trio.base,
        "--chat",
        trio.chat,
        "--target",
        trio.cp,
        "--ratios",
        "0,1",
        "-o",
        out,
        "--merge-dtype",
        "float32",
        "--exclude",
        "lm_head",
        "--merge-threads",
        "1",
        "--lang",
        "en",
        "--suite",
        "safety",
        "--limit",
        "2",
        "--max-new-tokens",
        "3",
        "--lm-eval",
        tasks / "tiny_choice.yaml",
        "--threshold",
        "0",
        "--rank-by",
        "lm_eval.tiny_choice.acc",
    )
    assert code == 0, printed
    summary = json.loads((out / "sweep.json").read_text())
    accuracy = {r["ratio"]: r["metrics"]["lm_eval.tiny_choice.acc"] for r in summary["rows"]}
    assert summary["recommendation"]["metric"] == "lm_eval.tiny_choice.acc"
    # no per-sample data from the harness: r = 1 is recommended only when it scored above the target
    assert summary["recommendation"]["ratio"] == (1.0 if accuracy[1.0] > accuracy[0.0] else None)
    assert "Recommended: r = 0." not in printed  # the target is the baseline, never the recommendation
    assert f"Recommended: {'r = 1' if accuracy[1.0] > accuracy[0.0] else 'no merge (keep the target)'}." in printed
    results = json.loads((out / "ratios" / "r=1" / "results.json").read_text())
    options = results["recipe"]["options"]
    assert options["dtype"] == "float32" and options["exclude"] == ["lm_head"]
    assert results["backend"]["settings"]["max_new_tokens"] == 3


@pytest.mark.slow
def test_a_sweep_serves_each_ratio_with_transformers_serve(sweep_dir, tmp_path):
    """`--serve transformers` in a sweep: each ratio's merged model gets its own server, started and
    stopped in turn; in float32 the replies are those of the local backend."""
    out, spec = sweep_dir
    served = SweepSpec(
        **{
            **spec.__dict__,
            "out": tmp_path / "served",
            "backend": spec.backend.model_copy(update={"serve": "transformers", "device": "cpu", "dtype": "float32"}),
        }
    )
    summary = run_sweep(served)
    assert [r["ratio"] for r in summary["rows"]] == [0.0, 0.5, 1.0]
    for ratio in ("r=0", "r=0.5", "r=1"):
        folder = served.out / "ratios" / ratio
        results = json.loads((folder / "results.json").read_text())
        local = json.loads((out / "ratios" / ratio / "results.json").read_text())
        assert results["backend"]["served"]["serve"] == "transformers"
        assert [s["replies"] for s in results["suites"]["multiturn"]["samples"]] == [
            s["replies"] for s in local["suites"]["multiturn"]["samples"]
        ]
        assert results["metrics"] == local["metrics"]
        [pid] = [
            int(line.split()[-1])
            for line in (folder / "server.log").read_text().splitlines()
            if line.startswith("# chatvector: server PID")
        ]
        assert not Path(f"/proc/{pid}").exists()


def test_terminal_cells_show_the_interval_beside_the_value():
    from chatvector.cli.sweep import _cell

    row = {"metrics": {"a": 0.4213, "b": 3.0, "c": None}, "intervals": {"a": [0.3, 0.55]}}
    assert _cell(row, "a") == "0.42 [0.30–0.55]"
    assert _cell(row, "b") == "3.00"  # a count: no interval
    assert _cell(row, "c") == "–" and _cell(row, "missing") == "–"
