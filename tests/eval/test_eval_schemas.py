"""Every file the evaluation reads goes through a schema: a wrong type is one clear EvalError that
names the file, the line and the field (the hostile cases of issue 23, one by one; the fuzz test
in tests/hardening/test_fuzz_eval_readers.py covers the rest)."""

from __future__ import annotations

import json

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from chatvector.errors import EvalError
from chatvector.eval.backends import ScriptedBackend
from chatvector.eval.compare import compare_runs
from chatvector.eval.evaluation import evaluate
from chatvector.eval.judge import judges_from_options
from chatvector.eval.judge_endpoint import JudgeEndpoint
from chatvector.eval.options import JudgeOptions
from chatvector.eval.report import write_results
from chatvector.eval.suites import load_suite_data


def test_eval_data_that_is_not_utf8_names_the_line(tmp_path):
    path = tmp_path / "big5.jsonl"
    path.write_bytes(b'{"id": "a", "prompt": "ok"}\n' + '{"id": "b", "prompt": "你好"}\n'.encode("big5"))
    with pytest.raises(EvalError, match=r"big5.jsonl line 2: not UTF-8 text .*save the file as UTF-8"):
        load_suite_data("instruct", "en", str(path))


@pytest.mark.parametrize(
    ("row", "message"),
    [
        ({"id": "a", "prompt": {"text": "hi"}}, r"line 1: field 'prompt': Input should be a valid string"),
        ({"id": "a", "prompt": None}, r"line 1: a sample needs a 'prompt' \(text\) or 'turns'"),
        ({"id": "a", "turns": ["hi", 3]}, r"line 1: field 'turns.1': Input should be a valid string"),
        ({"id": "a", "prompt": "hi", "reference": 5}, r"line 1: field 'reference"),
        ({"id": "a", "prompt": "hi", "category": ["math"]}, r"line 1: field 'category'"),
        ({"id": "a", "prompt": "hi", "rules": "max_words"}, r"line 1: field 'rules'"),
    ],
)
def test_samples_of_the_wrong_type_name_the_field(tmp_path, row, message):
    path = tmp_path / "data.jsonl"
    path.write_text(json.dumps(row) + "\n", encoding="utf-8")
    with pytest.raises(EvalError, match=f"data.jsonl {message}"):
        load_suite_data("instruct", "en", str(path))


def test_a_rules_column_that_is_not_json_names_the_row_and_column(tmp_path):
    (tmp_path / "ds").mkdir()
    table = pa.table({"id": ["a"], "prompt": ["Say hi."], "constraints": ["{not json"]})
    pq.write_table(table, tmp_path / "ds" / "test-0.parquet")
    with pytest.raises(EvalError, match=r"row 0: column 'constraints' \('rules'\): not valid JSON"):
        load_suite_data("verifiable", "en", f"hf:{tmp_path / 'ds'}:test", data_map={"rules": "constraints"})


def run_to(folder, tmp_path):
    rows = [{"id": "q1", "lang": "en", "prompt": "Hi?"}]
    data = tmp_path / "q.jsonl"
    data.write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
    write_results(
        evaluate(ScriptedBackend(lambda c: "Hello."), ["instruct"], "en", data={"instruct": str(data)}), folder
    )
    return json.loads((folder / "results.json").read_text(encoding="utf-8"))


@pytest.mark.parametrize(
    ("change", "field"),
    [
        (lambda r: r.update(suites=["instruct"]), "suites"),
        (lambda r: r.update(metrics={"x": 3}), "metrics.x"),
        (lambda r: r["suites"]["instruct"].update(samples={"id": "q1"}), "suites.instruct.samples"),
        (lambda r: r["suites"]["instruct"]["samples"][0].update(replies="Hello."), "suites.instruct.samples.0.replies"),
        (lambda r: r.update(lang=None), "lang"),
    ],
)
def test_results_files_of_the_wrong_shape_are_refused_by_compare_and_judge_against(tmp_path, change, field):
    good, bad = tmp_path / "good", tmp_path / "bad"
    run_to(good, tmp_path)
    data = run_to(bad, tmp_path)
    change(data)
    (bad / "results.json").write_text(json.dumps(data), encoding="utf-8")
    expected = rf"bad/results.json: not a chatvector results.json: field '{field}"
    with pytest.raises(EvalError, match=expected):
        compare_runs([good, bad])
    with pytest.raises(EvalError, match=expected):
        judges_from_options(JudgeOptions(judge_url="http://x/v1", judge_model="j", judge_against=str(bad)))


def test_older_results_with_a_bare_nan_read_it_as_null(tmp_path):
    from chatvector.eval.report import load_results

    path = tmp_path / "results.json"
    path.write_text('{"lang": "en", "metrics": {"a": {"value": NaN, "n": 0}}, "suites": {}}', encoding="utf-8")
    assert load_results(path)["metrics"]["a"]["value"] is None


@pytest.mark.parametrize(
    "body",
    [
        b'{"choices": [{"message": {"content": 12345}}]}',
        b'{"choices": [{"message": {"content": ["[[7]]"]}}]}',
        b'{"choices": []}',
        b'{"choices": [{"message": {"content": "Rating: [[7',
        b"\xff\xfe not even text",
    ],
)
def test_judge_replies_whose_content_is_not_text_are_unreadable_not_a_crash(body):
    reply = JudgeEndpoint("http://127.0.0.1:1/v1", "j")._read(body)
    assert reply.text is None and reply.shown.startswith("(unreadable reply)")
