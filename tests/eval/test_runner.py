"""The runner with a scripted backend: metrics, multi-turn history, judge, files, comparison."""

from __future__ import annotations

import json

import pytest

from chatvector.errors import EvalError
from chatvector.eval.backends import ScriptedBackend
from chatvector.eval.judge import Judge
from chatvector.eval.report import comparison_rows, write_results
from chatvector.eval.runner import evaluate
from chatvector.eval.suites import OFFLINE_SUITES, load_samples


def refuser(conversation):
    return "抱歉，我無法協助這個請求。"


def test_offline_suites_metrics_follow_the_replies(tmp_path):
    result = evaluate(ScriptedBackend(refuser), list(OFFLINE_SUITES), "zh-Hant")
    assert result.metric("safety.refusal_rate") == 1.0
    assert result.metric("toxicity.mean") == 0.0 and result.metric("toxicity.over_0_5") == 0.0
    assert result.metric("language.target_share") == 1.0
    assert result.metric("language.english_share") == 0.0
    # only the "answer in at most 20 words" conversation is passed by a short zh-Hant refusal
    passed = [s["id"] for s in result.suites["multiturn"]["samples"] if s["passed"]]
    assert passed == ["multiturn-zh-Hant-03"] and result.metric("multiturn.pass_rate") == 0.25
    assert 0.0 < result.metric("verifiable.rule_pass_rate") < 1.0
    assert all(m["higher_is_better"] in (True, False) for m in result.metrics.values())
    write_results(result, tmp_path / "a")
    data = json.loads((tmp_path / "a" / "results.json").read_text())
    assert data["suites"]["safety"]["version"] == "1" and data["lang"] == "zh-Hant"
    assert data["suites"]["safety"]["samples"][0]["refused"] is True
    assert "safety.refusal_rate" in (tmp_path / "a" / "report.md").read_text()


def test_english_drift_is_measured():
    result = evaluate(ScriptedBackend(lambda c: "Sorry, I cannot help with that."), ["safety"], "zh-Hant")
    assert result.metric("safety.refusal_rate") == 1.0
    assert result.metric("language.target_share") == 0.0 and result.metric("language.english_share") == 1.0


def test_multiturn_model_receives_the_whole_history():
    seen = []

    def remember(conversation):
        seen.append(len(conversation))
        return "你叫小美，住在台南。" if len(conversation) == 5 else "好的。"

    result = evaluate(ScriptedBackend(remember), ["multiturn"], "zh-Hant")
    assert max(seen) == 5  # user, assistant, user, assistant, user
    samples = result.suites["multiturn"]["samples"]
    recall = next(s for s in samples if s["id"] == "multiturn-zh-Hant-01")
    assert recall["passed"] is True and len(recall["replies"]) == 3


def test_judge_scores_and_unparseable_judgments_are_counted():
    verdicts = iter(["Good. Rating: [[8]]", "meh", "Rating: [[6]]", "???", "[[10]]", "Rating: [[4]]"])
    judge = Judge(ScriptedBackend(lambda c: next(verdicts)))  # type: ignore[arg-type]
    result = evaluate(ScriptedBackend(lambda c: "答案。"), ["instruct"], "zh-Hant", judge=judge)
    assert result.metric("instruct.score") == pytest.approx((8 + 6 + 10 + 4) / 4)
    assert result.metric("instruct.unparsed") == 2.0


def test_user_prompt_file_and_errors(tmp_path):
    good = tmp_path / "mine.jsonl"
    row = {"id": "a", "lang": "zh-TW", "prompt": "請列出兩種水果", "rules": [{"type": "bullets", "value": 2}]}
    good.write_text(json.dumps(row, ensure_ascii=False) + "\n")
    result = evaluate(
        ScriptedBackend(lambda c: "- 蘋果\n- 香蕉"), ["verifiable"], "zh-Hant", data={"verifiable": str(good)}
    )
    assert result.metric("verifiable.pass_rate") == 1.0
    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"id": "a", "lang": "zh-Hant", "prompt": "x"}\n{oops\n')
    with pytest.raises(EvalError, match="bad.jsonl line 2: not valid JSON"):
        load_samples("verifiable", "zh-Hant", str(bad))
    with pytest.raises(EvalError, match="did you mean 'safety'"):
        evaluate(ScriptedBackend(refuser), ["safty"], "zh-Hant")
    with pytest.raises(EvalError, match="no safety prompts in fr"):
        evaluate(ScriptedBackend(refuser), ["safety"], "fr")


def test_compare_puts_runs_side_by_side(tmp_path):
    for name, reply in (("refuses", refuser), ("complies", lambda c: "好的，步驟如下。")):
        write_results(evaluate(ScriptedBackend(reply), ["safety"], "zh-Hant"), tmp_path / name)
    header, rows = comparison_rows([tmp_path / "refuses", tmp_path / "complies"])
    assert header[1:] == [str(tmp_path / "refuses"), str(tmp_path / "complies")]
    refusal = next(r for r in rows if r[0].startswith("safety.refusal_rate"))
    assert refusal[1:] == ["1.000", "0.000"]
