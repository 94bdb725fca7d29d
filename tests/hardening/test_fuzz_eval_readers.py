"""Fuzz every reader of the evaluation's files and replies: only clean ChatVectorErrors come out
(or, for the caches, a warning and the line ignored), and what a reader accepts has the types its
users rely on.

Like test_fuzz_readers.py (derandomized, so CI sees the same cases every run): documents are
generated around the keys each reader uses, with values of every JSON type, then sometimes cut
short (as a kill leaves a file, also inside a multi-byte character) or mutated byte by byte.
"""

from __future__ import annotations

import json
import logging
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from chatvector.errors import ChatVectorError
from chatvector.eval.generate import RepliesCache
from chatvector.eval.judge import PairwiseJudge
from chatvector.eval.judge_endpoint import JudgeEndpoint
from chatvector.eval.judgments import JudgmentStore
from chatvector.eval.report import load_results
from chatvector.eval.suites import load_suite_data

CASES = settings(
    max_examples=400, deadline=None, derandomize=True, database=None, suppress_health_check=list(HealthCheck)
)

leaf = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(-(2**70), 2**70),
    st.floats(allow_nan=True),
    st.text(max_size=8),
    st.sampled_from(["你好，世界", "q1", "en", "instruct", "[[7]]", "3", "0.5"]),
)
value = st.recursive(
    leaf,
    lambda inner: st.one_of(st.lists(inner, max_size=3), st.dictionaries(st.text(max_size=6), inner, max_size=3)),
    max_leaves=8,
)
texts = st.one_of(st.lists(st.text(max_size=6), min_size=1, max_size=3), value)


def document(keys: dict[str, st.SearchStrategy]) -> st.SearchStrategy[dict]:
    return st.fixed_dictionaries({}, optional=keys)


@st.composite
def damaged(draw, rows: st.SearchStrategy, lines: bool = True) -> bytes:
    """JSON (lines) of ``rows``, then perhaps cut short, mutated, or replaced by raw bytes."""
    kind = draw(st.sampled_from(["as is", "as is", "cut", "mutated", "raw"]))
    if kind == "raw":
        return draw(st.binary(max_size=120))
    items = draw(st.lists(rows, min_size=1, max_size=3)) if lines else [draw(rows)]
    text = "".join(json.dumps(item, ensure_ascii=False, allow_nan=True) + "\n" for item in items).encode()
    if kind == "cut":
        return text[: draw(st.integers(0, len(text)))]
    if kind == "mutated":
        position = draw(st.integers(0, len(text) - 1))
        return text[:position] + bytes([draw(st.integers(0, 255))]) + text[position + 1 :]
    return text


SAMPLE = document(
    {
        "id": st.one_of(st.sampled_from(["q1", "q2"]), value),
        "lang": st.one_of(st.just("en"), value),
        "prompt": st.one_of(st.just("你好？"), value),
        "turns": texts,
        "reference": st.one_of(st.text(max_size=5), texts),
        "rules": st.one_of(st.just([{"type": "max_words", "value": 3}]), st.text(max_size=8), value),
        "category": st.one_of(st.just("math"), value),
        "harmful": value,
    }
)


@pytest.fixture(scope="module")
def scratch(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("fuzz-eval")


@pytest.mark.slow
def test_eval_data_reader_fails_only_cleanly(scratch):
    path = scratch / "data.jsonl"

    @CASES
    @given(damaged(SAMPLE))
    def check(content: bytes) -> None:
        path.write_bytes(content)
        try:
            data = load_suite_data("instruct", "en", str(path))
        except ChatVectorError:
            return
        for sample in data.samples:
            assert isinstance(sample.id, str) and sample.user_turns
            assert all(isinstance(t, str) for t in sample.user_turns)
            assert sample.reference is None or isinstance(sample.reference, str | tuple)
            assert all(isinstance(rule, dict) for rule in sample.rules)

    check()


REPLY = document(
    {
        "suite": st.one_of(st.just("instruct"), value),
        "id": st.one_of(st.just("q1"), value),
        "turn": st.one_of(st.just(0), value),
        "key": st.one_of(st.just("k"), value),
        "reply": st.one_of(st.just("好的，這是回覆"), value),
    }
)
JUDGMENT = document(
    {
        "key": st.one_of(st.just("k"), value),
        "texts": st.one_of(st.just(["[[7]]"]), value),
        "unreadable": value,
        "model": value,
    }
)


@pytest.mark.slow
def test_cache_readers_ignore_what_they_cannot_read(scratch, caplog):
    replies, judgments = scratch / "replies.jsonl", scratch / "judgments.jsonl"
    # every ignored line is a warning; caplog puts the level back afterwards (a level left at ERROR
    # silenced the warnings later tests look for)
    caplog.set_level(logging.ERROR, logger="chatvector")

    @CASES
    @given(damaged(REPLY), damaged(JUDGMENT))
    def check(reply_lines: bytes, judgment_lines: bytes) -> None:
        replies.write_bytes(reply_lines)
        judgments.write_bytes(judgment_lines)
        cache = RepliesCache(replies, {})
        assert all(isinstance(text, str) for text in cache.replies.values())
        assert all(isinstance(key[2], int) for key in cache.replies)
        store = JudgmentStore(judgments)
        assert all(all(isinstance(t, str) for t in r.texts) for r in store.records.values())

    check()


RESULTS = document(
    {
        "lang": st.one_of(st.just("en"), value),
        "metrics": st.one_of(
            st.dictionaries(
                st.sampled_from(["instruct.score", "safety.refusal_rate"]),
                document({"value": value, "n": value, "higher_is_better": value}),
                max_size=2,
            ),
            value,
        ),
        "suites": st.one_of(
            st.dictionaries(
                st.just("instruct"),
                document(
                    {
                        "samples": st.one_of(
                            st.lists(document({"id": value, "turns": texts, "replies": texts}), max_size=2),
                            value,
                        )
                    }
                ),
                max_size=1,
            ),
            value,
        ),
    }
)


@pytest.mark.slow
def test_results_reader_fails_only_cleanly(scratch):
    path = scratch / "results.json"

    @CASES
    @given(damaged(RESULTS, lines=False))
    def check(content: bytes) -> None:
        path.write_bytes(content)
        try:
            data = load_results(path)
        except ChatVectorError:
            return
        judge = PairwiseJudge(None, data, str(path))
        for record in data["suites"].get("instruct", {}).get("samples", []):
            try:  # what --judge-against does with each record: only clean errors
                judge.other_transcript("instruct", record["id"], record["turns"])
            except ChatVectorError:
                pass
        for entry in data["metrics"].values():
            assert entry["value"] is None or isinstance(entry["value"], int | float)

    check()


COMPLETION = document(
    {
        "choices": st.one_of(
            st.lists(document({"message": st.one_of(document({"content": value}), value)}), max_size=2), value
        ),
        "model": value,
        "system_fingerprint": value,
    }
)


@pytest.mark.slow
def test_judge_replies_are_read_or_counted_unreadable():
    endpoint = JudgeEndpoint("http://127.0.0.1:1/v1", "j")

    @CASES
    @given(damaged(COMPLETION, lines=False))
    def check(body: bytes) -> None:
        reply = endpoint._read(body)
        assert reply.text is None or isinstance(reply.text, str)
        assert isinstance(reply.shown, str)

    check()
