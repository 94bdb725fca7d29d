"""The replies cache is keyed by what decides a reply, by content: new weights under the same path
are a new model, and its replies are generated again; a torn or mistyped line of replies.jsonl
is ignored with a warning (generated again), never a traceback."""

from __future__ import annotations

import json
import shutil

import pytest

from chatvector.eval.generate import RepliesCache
from chatvector.eval.job import EvalJob, run_eval
from chatvector.eval.options import BackendOptions, DataOptions, GenerationOptions


def eval_job(model, out) -> EvalJob:
    return EvalJob(
        model=str(model),
        out=out,
        backend=BackendOptions(device="cpu"),
        generation=GenerationOptions(max_new_tokens=3),
        data=DataOptions(lang="en", suite=("verifiable",), limit=2),
    )


@pytest.mark.slow
def test_replacing_the_weights_under_the_same_path_makes_new_replies(fresh, tmp_path):
    model, out = fresh["chat"], tmp_path / "out"
    first = run_eval(eval_job(model, out))
    assert (first.generated, first.reused) == (2, 0)
    assert run_eval(eval_job(model, out)).reused == 2  # the same weights: reused
    shutil.copy(fresh["cp"] / "model.safetensors", model / "model.safetensors")  # same path, other weights
    after = run_eval(eval_job(model, out))
    assert (after.generated, after.reused) == (2, 0)


def test_torn_and_mistyped_reply_lines_are_ignored(tmp_path, caplog):
    path = tmp_path / "replies.jsonl"
    cache = RepliesCache(path, {"model": "m"})
    history = [{"role": "user", "content": "你好"}]
    cache.put("s", "a", 0, history, "好的，這是回覆")
    cache.close()
    good = path.read_bytes()
    key = json.loads(good)["key"]
    mistyped = json.dumps({"suite": "s", "id": "b", "turn": 0, "key": key, "reply": 12345}).encode() + b"\n"
    torn = good[: good.index("回".encode()) + 1]  # cut inside a three-byte character, as a kill leaves it
    path.write_bytes(good + mistyped + torn)
    again = RepliesCache(path, {"model": "m"})
    assert again.get("s", "a", 0, history) == "好的，這是回覆"
    assert len(again.replies) == 1
    assert "line 2" in caplog.text and "line 3" in caplog.text
