"""lm-evaluation-harness glue: task lists, metric names and directions, and the checks made before it runs.
(The harness itself runs for real in test_e2e.py and test_sweep.py.)"""

from __future__ import annotations

import pytest

from chatvector.errors import EvalError
from chatvector.eval import lmeval
from chatvector.eval.lmeval import check_serve, metrics_of, parse_tasks


def test_tasks_are_comma_separated_or_repeated():
    assert parse_tasks(("tmmluplus,kmmlu", " ifeval ", "kmmlu,")) == ["tmmluplus", "kmmlu", "ifeval"]
    assert parse_tasks(()) == []


OUTPUT = {
    "results": {
        "tmmluplus": {"alias": "tmmluplus", "acc,none": 0.41, "acc_stderr,none": 0.01},
        "tmmluplus_law": {"alias": " - law", "acc,none": 0.3, "acc_stderr,none": 0.05},
        "gsm8k": {
            "alias": "gsm8k",
            "exact_match,strict-match": 0.2,
            "exact_match_stderr,strict-match": 0.02,
            "exact_match,flexible-extract": 0.25,
            "exact_match_stderr,flexible-extract": "N/A",
        },
        "perplexity_task": {"word_perplexity,none": 12.5, "word_perplexity_stderr,none": "N/A"},
    },
    "group_subtasks": {"tmmluplus": ["tmmluplus_law"], "gsm8k": [], "perplexity_task": []},
    "higher_is_better": {
        "tmmluplus_law": {"acc": True},
        "gsm8k": {"exact_match": True},
        "perplexity_task": {"word_perplexity": False},
    },
    "n-samples": {
        "tmmluplus_law": {"original": 20, "effective": 20},
        "gsm8k": {"original": 1319, "effective": 50},
        "perplexity_task": {"original": 10, "effective": 10},
    },
}


def test_metrics_are_named_by_task_metric_and_filter_with_their_error_and_direction():
    metrics = metrics_of(OUTPUT)
    assert set(metrics) == {
        "lm_eval.tmmluplus.acc",
        "lm_eval.gsm8k.exact_match.strict-match",
        "lm_eval.gsm8k.exact_match.flexible-extract",
        "lm_eval.perplexity_task.word_perplexity",
    }
    assert metrics["lm_eval.tmmluplus.acc"] == {"value": 0.41, "stderr": 0.01, "n": 20, "higher_is_better": True}
    assert metrics["lm_eval.gsm8k.exact_match.strict-match"] == {
        "value": 0.2,
        "stderr": 0.02,
        "n": 50,
        "higher_is_better": True,
    }
    assert metrics["lm_eval.gsm8k.exact_match.flexible-extract"]["stderr"] is None  # "N/A" is no number
    assert metrics["lm_eval.perplexity_task.word_perplexity"]["higher_is_better"] is False


def test_ifeval_without_nltk_data_is_said_before_anything_runs(monkeypatch):
    import nltk

    def missing(resource):
        raise LookupError(resource)

    monkeypatch.setattr(nltk.data, "find", missing)
    with pytest.raises(EvalError, match="python -m nltk.downloader punkt_tab"):
        lmeval._check_nltk(["tmmluplus", "ifeval"])
    lmeval._check_nltk(["tmmluplus"])  # other tasks do not need it


def test_served_transformers_is_refused_for_lm_eval_and_task_files_are_checked(tmp_path):
    with pytest.raises(EvalError, match="transformers serve does not"):
        check_serve("transformers")
    check_serve("vllm")
    check_serve(None)
    with pytest.raises(EvalError, match="no such task file"):
        lmeval._task_name(tmp_path / "missing.yaml")
    nameless = tmp_path / "nameless.yaml"
    nameless.write_text("dataset_path: json\nprocess_results: !function utils.process\n")
    with pytest.raises(EvalError, match="needs a 'task: NAME' line"):
        lmeval._task_name(nameless)
    named = tmp_path / "named.yaml"
    named.write_text("task: mine\nprocess_results: !function utils.process\n")
    assert lmeval._task_name(named) == "mine"
