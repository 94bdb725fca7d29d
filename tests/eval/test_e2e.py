"""End to end: `chatvector eval` on a tiny local model, and the openai backend and judge against a
real OpenAI-compatible server (`transformers serve`) started here on 127.0.0.1."""

from __future__ import annotations

import json
import re
import socket
import subprocess
import sys
from pathlib import Path

import pytest

from chatvector.cli import main
from chatvector.errors import EvalError
from chatvector.eval.backends import GenerationSettings, OpenAIBackend
from chatvector.eval.evaluation import evaluate
from chatvector.eval.judge import Judge
from chatvector.eval.options import BackendOptions
from chatvector.eval.serve import ServedModel

TASKS = Path(__file__).parent / "lm_eval_tasks"

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
    """`transformers serve` on the tiny chat model, started and stopped by chatvector's own lifecycle
    (the same one --serve uses); yields (base_url, model name)."""
    model = str(trios["llama"].chat)
    options = BackendOptions(serve="transformers", device="cpu", serve_timeout=180)
    with ServedModel(model, options, log_dir=tmp_path_factory.mktemp("serve")) as served:
        yield served.base_url, served.model_name
    assert served.process.poll() is not None


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
    assert (
        run_cli(
            monkeypatch,
            "eval",
            merged,
            "--lang",
            "zh-Hant",
            "-o",
            out,
            "--max-new-tokens",
            "8",
            "--limit",
            "6",
            "--device",
            "cpu",
            "--dtype",
            "bfloat16",
        )
        == 0
    )
    results = json.loads((out / "results.json").read_text())
    assert set(results["suites"]) == {"verifiable", "safety", "toxicity", "multiturn"}
    assert results["recipe"]["terms"][0]["ratio"] == 0.5  # the model was made by chatvector
    assert results["backend"]["backend"] == "hf" and results["toxicity_scorer"] == "lexicon"
    assert (results["backend"]["device"], results["backend"]["dtype"]) == ("cpu", "bfloat16")
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
    replies = backend.generate([[{"role": "user", "content": "hello cat"}], [{"role": "user", "content": "red"}]])
    assert len(replies) == 2 and all(isinstance(r, str) for r in replies)
    judge = Judge(
        OpenAIBackend(base_url, model, api_key_env="JUDGE_API_KEY", settings=GenerationSettings(max_new_tokens=6))
    )
    result = evaluate(backend, ["instruct", "safety"], "en", judge=judge)
    # the tiny judge's vocabulary has no digits, so no judgment holds a score: all are counted as
    # unparsed (not dropped), and the mean score is undefined rather than invented
    total = result.suites["instruct"]["n"]
    assert total > 0 and result.metric("instruct.unparsed") == total
    assert result.metric("instruct.score") is None
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
    done = subprocess.run(
        [str(exe), "chat", model, "--backend", "openai", "--base-url", base_url, "--max-new-tokens", "4"],
        input="hello\nwhat is my name\n/save talk.json\n/quit\n",
        capture_output=True,
        text=True,
        timeout=120,
        cwd=tmp_path,
    )
    assert done.returncode == 0, done.stderr
    saved = json.loads((tmp_path / "talk.json").read_text())
    messages = saved["messages"] if isinstance(saved, dict) else saved
    assert [m["role"] for m in messages] == ["user", "assistant", "user", "assistant"]


def test_stream_lines_are_parsed_and_bad_chunks_named():
    from chatvector.eval.backends.openai import _stream_piece

    assert _stream_piece(": keep-alive") == ""
    assert _stream_piece('data: {"choices": [{"delta": {"role": "assistant"}}]}') == ""
    assert _stream_piece('data: {"choices": [{"delta": {"content": "好"}}]}') == "好"
    assert _stream_piece("data: [DONE]") is None
    with pytest.raises(EvalError, match="unexpected streamed chunk"):
        _stream_piece("data: {not json")


def replies_of(folder: Path) -> dict[tuple[str, str], list[str]]:
    results = json.loads((folder / "results.json").read_text())
    return {(suite, s["id"]): s["replies"] for suite, data in results["suites"].items() for s in data["samples"]}


@pytest.mark.slow
def test_serve_transformers_evaluates_like_the_local_model_and_stops_the_server(trios, tmp_path, monkeypatch):
    """`--serve transformers` for eval: chatvector starts the real server on the model, evaluates through
    it, and stops it; greedy float32 replies equal those of the same model run here."""
    model = trios["mistral"].chat
    common = [
        "--lang",
        "en",
        "--suite",
        "verifiable",
        "--suite",
        "multiturn",
        "--limit",
        "3",
        "--max-new-tokens",
        "6",
        "--device",
        "cpu",
    ]
    assert run_cli(monkeypatch, "eval", model, "-o", tmp_path / "local", *common) == 0
    served = tmp_path / "served"
    assert run_cli(monkeypatch, "eval", model, "-o", served, "--serve", "transformers", *common) == 0
    results = json.loads((served / "results.json").read_text())
    assert results["backend"]["backend"] == "openai" and results["backend"]["served"]["serve"] == "transformers"
    assert replies_of(served) == replies_of(tmp_path / "local")
    [pid] = map(int, re.findall(r"server PID (\d+)", (served / "server.log").read_text()))
    assert not Path(f"/proc/{pid}").exists()


@pytest.mark.slow
def test_chat_through_a_server_it_starts(trios, tmp_path):
    exe = Path(sys.executable).parent / "chatvector"
    done = subprocess.run(
        [
            str(exe),
            "-v",
            "chat",
            str(trios["llama"].chat),
            "--serve",
            "transformers",
            "--device",
            "cpu",
            "--max-new-tokens",
            "4",
        ],
        input="hello\nwhat is my name\n/save talk.json\n/quit\n",
        capture_output=True,
        text=True,
        timeout=180,
        cwd=tmp_path,
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.count("bot> ") == 2
    messages = json.loads((tmp_path / "talk.json").read_text())
    assert [m["role"] for m in messages] == ["user", "assistant", "user", "assistant"]
    [pid] = map(int, re.findall(r"\(PID (\d+)\)", done.stderr))
    assert not Path(f"/proc/{pid}").exists()


@pytest.mark.slow
def test_lm_eval_task_runs_for_real_and_lands_in_results(trios, tmp_path, monkeypatch):
    """lm-evaluation-harness on our own task (a local JSONL file, offline) on the same loaded model."""
    monkeypatch.chdir(TASKS)  # the task's data_files path is relative to the working directory
    out = tmp_path / "lm"
    assert (
        run_cli(
            monkeypatch,
            "eval",
            trios["mistral"].chat,
            "-o",
            out,
            "--lang",
            "en",
            "--suite",
            "safety",
            "--limit",
            "4",
            "--max-new-tokens",
            "3",
            "--lm-eval",
            TASKS / "tiny_choice.yaml",
        )
        == 0
    )
    results = json.loads((out / "results.json").read_text())
    harness = json.loads((out / "lm_eval.json").read_text())["results"]["tiny_choice"]
    for metric in ("acc", "acc_norm"):
        entry = results["metrics"][f"lm_eval.tiny_choice.{metric}"]
        assert entry["value"] == harness[f"{metric},none"] and entry["stderr"] == harness[f"{metric}_stderr,none"]
        assert entry["n"] == 4 and entry["higher_is_better"] is True
        assert entry["value"] * 4 == round(entry["value"] * 4)  # a share of the 4 documents
    ran = results["backend"]["lm_eval"]
    assert ran["lm"]["model"] == "hf" and ran["lm"]["dtype"] == "float32" and ran["tasks"] == ["tiny_choice"]
    assert set(results["suites"]) == {"safety"}
