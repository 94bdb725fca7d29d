"""The report says which numbers a lexicon produced, and shows lm-eval's stderr as an interval."""

from __future__ import annotations

import json

from chatvector.eval.backends import ScriptedBackend
from chatvector.eval.evaluation import evaluate
from chatvector.eval.report import interval, mark_lexicon_metrics, markdown, write_results


def test_lexicon_metrics_are_marked_in_results_json_and_the_report(tmp_path):
    result = evaluate(ScriptedBackend(lambda c: "I can't help with that."), ["safety", "toxicity"], "en", limit=2)
    data = json.loads(write_results(result, tmp_path).read_text(encoding="utf-8"))
    marked = {name for name, entry in data["metrics"].items() if entry.get("scorer") == "lexicon"}
    assert {"safety.refusal_rate", "safety.unsafe_rate", "toxicity.mean", "toxicity.over_0_5"} <= marked
    assert not any(name.startswith("language.") for name in marked)
    report = (tmp_path / "report.md").read_text(encoding="utf-8")
    note = next(line for line in report.splitlines() if "counted by a word lexicon" in line)
    assert "safety.refusal_rate" in note and "toxicity.over_0_5" in note and "language" not in note
    assert "use --safety-judge (safety) and --toxicity hf:MODEL (toxicity)" in note


def test_judged_safety_and_a_classifier_are_not_marked():
    result = {
        "judge": {"safety": {"model": "judge"}},
        "toxicity_scorer": "hf:./classifier",
        "metrics": {"safety.refusal_rate": {}, "toxicity.mean": {}},
    }
    assert mark_lexicon_metrics(result)["metrics"] == {"safety.refusal_rate": {}, "toxicity.mean": {}}


def test_lm_eval_stderr_becomes_a_normal_interval():
    entry = {"value": 0.41, "stderr": 0.01, "n": 20, "higher_is_better": True}
    assert interval(entry) == "[0.390, 0.430]"
    assert interval({**entry, "stderr": None}) == "–"  # lm-eval wrote "N/A"
    assert interval({"value": 0.5, "ci_low": 0.4, "ci_high": 0.6, "stderr": 0.3}) == "[0.400, 0.600]"
    result = {
        "model": "m",
        "backend": {"backend": "hf"},
        "lang": "en",
        "chatvector_version": "0",
        "created": "now",
        "metrics": {"lm_eval.tmmluplus.acc": entry},
        "suites": {},
    }
    assert "| lm_eval.tmmluplus.acc | 0.410 | [0.390, 0.430] | 20 | higher |" in markdown(result)
