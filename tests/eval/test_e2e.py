"""End to end: `chatvector eval` on a tiny local model, and the openai backend and judge against a
real OpenAI-compatible server (`transformers serve`) started here on 127.0.0.1."""

from __future__ import annotations

import json
import math
import os
import socket
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest

from chatvector.cli import main
from chatvector.errors import EvalError
from chatvector.eval.backends import GenerationSettings, OpenAIBackend
from chatvector.eval.judge import Judge
from chatvector.eval.runner import evaluate

SECRET = "sk-test-DO-NOT-LEAK-4242"


def run_cli(monkeypatch, *args):
    monkeypatch.setattr(sys, "argv", ["chatvector", *map(str, args)])
    with pytest.raises(SystemExit) as exit_info:
        main()
    return exit_info.value.code


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@pytest.fixture(scope="module")
def server(trios, tmp_path_factory):
    """`transformers serve` on the tiny chat model; yields (base_url, model name)."""
    model = str(trios["llama"].chat)
    port = free_port()
    log = tmp_path_factory.mktemp("serve") / "serve.log"
    exe = Path(sys.executable).parent / "transformers"
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "OMP_NUM_THREADS": "1"}
    with open(log, "w") as handle:
        process = subprocess.Popen(
            [str(exe), "serve", model, "--host", "127.0.0.1", "--port", str(port), "--device", "cpu"],
            stdout=handle,
            stderr=subprocess.STDOUT,
            env=env,
        )
    try:
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline:
            if process.poll() is not None:
                raise RuntimeError(f"transformers serve exited: {log.read_text()[-2000:]}")
            try:
                if httpx.get(f"http://127.0.0.1:{port}/health", timeout=1).status_code == 200:
                    break
            except httpx.TransportError:
                time.sleep(0.5)
        else:
            raise RuntimeError(f"transformers serve did not start: {log.read_text()[-2000:]}")
        yield f"http://127.0.0.1:{port}/v1", model
    finally:
        process.terminate()
        process.wait(timeout=30)


@pytest.mark.slow
def test_eval_command_runs_offline_suites_on_a_local_model(trios, tmp_path, monkeypatch):
    merged = tmp_path / "merged"
    assert (
        run_cli(
            monkeypatch,
            "merge",
            "--base",
            trios["llama"].base,
            "--chat",
            trios["llama"].chat,
            "--target",
            trios["llama"].cp,
            "--ratio",
            "0.5",
            "-o",
            merged,
        )
        == 0
    )
    out = tmp_path / "eval"
    assert run_cli(monkeypatch, "eval", merged, "--lang", "zh-Hant", "-o", out, "--max-new-tokens", "8") == 0
    results = json.loads((out / "results.json").read_text())
    assert set(results["suites"]) == {"verifiable", "safety", "toxicity", "multiturn"}
    assert results["recipe"]["terms"][0]["ratio"] == 0.5  # the model was made by chatvector
    assert results["backend"]["backend"] == "hf" and results["toxicity_scorer"] == "lexicon"
    for entry in results["metrics"].values():
        assert 0.0 <= entry["value"] <= 1.0 and isinstance(entry["higher_is_better"], bool)
    for suite in results["suites"].values():
        assert all(len(s["replies"]) == len(s["turns"]) for s in suite["samples"])
    assert (out / "report.md").exists()
    assert run_cli(monkeypatch, "compare", out, out) == 0  # `eval --compare` became `chatvector compare`


@pytest.mark.slow
def test_openai_backend_and_judge_against_a_real_server(server, tmp_path, monkeypatch):
    base_url, model = server
    monkeypatch.setenv("OPENAI_API_KEY", SECRET)
    monkeypatch.setenv("JUDGE_API_KEY", SECRET)
    backend = OpenAIBackend(base_url, model, settings=GenerationSettings(max_new_tokens=6), concurrency=2)
    replies = backend.generate(
        [[{"role": "user", "content": "hello cat"}], [{"role": "user", "content": "red"}]]
    )
    assert len(replies) == 2 and all(isinstance(r, str) for r in replies)
    judge = Judge(
        OpenAIBackend(
            base_url, model, api_key_env="JUDGE_API_KEY", settings=GenerationSettings(max_new_tokens=6)
        )
    )
    result = evaluate(backend, ["instruct", "safety"], "en", judge=judge)
    # the tiny judge's vocabulary has no digits, so no judgment holds a score: all are counted as
    # unparsed (not dropped), and the mean score is undefined rather than invented
    total = result.suites["instruct"]["n"]
    assert total > 0 and result.metric("instruct.unparsed") == total
    assert math.isnan(result.metric("instruct.score"))
    assert all(s["judgment"] is not None for s in result.suites["instruct"]["samples"])
    # the 1-10 judge no longer decides refusals: that is --safety-judge's job (tests/eval/test_judge.py)
    assert result.suites["safety"]["samples"][0]["refusal_method"] == "refusal lexicon"
    # through the CLI as a user would; the key must not leak into any output
    out = tmp_path / "served"
    code = run_cli(
        monkeypatch,
        "eval",
        model,
        "--backend",
        "openai",
        "--base-url",
        base_url,
        "--lang",
        "en",
        "--suite",
        "verifiable",
        "--max-new-tokens",
        "6",
        "-o",
        out,
    )
    assert code == 0
    for path in out.iterdir():
        assert SECRET not in path.read_text()
    assert json.loads((out / "results.json").read_text())["backend"]["api_key_env"] == "OPENAI_API_KEY"


@pytest.mark.slow
def test_unreachable_endpoint_is_a_clear_error():
    backend = OpenAIBackend(f"http://127.0.0.1:{free_port()}/v1", "m", retries=1, backoff=0.01, timeout=2)
    with pytest.raises(EvalError, match="no answer after 2 attempts"):
        backend.generate([[{"role": "user", "content": "hi"}]])


@pytest.mark.slow
def test_streamed_reply_equals_the_whole_reply_and_chat_uses_it(server, tmp_path):
    base_url, model = server
    backend = OpenAIBackend(base_url, model, settings=GenerationSettings(max_new_tokens=8))
    conversation = [{"role": "user", "content": "hello cat"}]
    pieces = list(backend.stream(conversation))
    assert pieces and "".join(pieces).strip() == backend.generate([conversation])[0].strip()
    exe = Path(sys.executable).parent / "chatvector"
    done = subprocess.run([str(exe), "chat", model, "--backend", "openai", "--base-url", base_url,
                           "--max-new-tokens", "4"], input="hello\nwhat is my name\n/save talk.json\n/quit\n",
                          capture_output=True, text=True, timeout=120, cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    saved = json.loads((tmp_path / "talk.json").read_text())
    messages = saved["messages"] if isinstance(saved, dict) else saved
    assert [m["role"] for m in messages] == ["user", "assistant", "user", "assistant"]


def test_stream_lines_are_parsed_and_bad_chunks_named():
    from chatvector.eval.backends import _stream_piece

    assert _stream_piece(': keep-alive') == ""
    assert _stream_piece('data: {"choices": [{"delta": {"role": "assistant"}}]}') == ""
    assert _stream_piece('data: {"choices": [{"delta": {"content": "好"}}]}') == "好"
    assert _stream_piece("data: [DONE]") is None
    with pytest.raises(EvalError, match="unexpected streamed chunk"):
        _stream_piece("data: {not json")
