"""``--serve llama.cpp`` / ``--serve llama-server``: the model is written as GGUF, served by
llama.cpp, evaluated through the openai backend and stopped; greedy replies in f32 equal the hf
backend's; the server gets the model's context; a failing server is a clear error and leaves
neither a process nor a GGUF file behind.

The served checks run llama-cpp-python's server (the ``gguf`` extra, installed in CI); the
``llama-server`` ones run only where llama.cpp's own server is on PATH (it is built separately).
"""

from __future__ import annotations

import importlib.util
import json
import os
import re
import shutil
import signal
import tempfile

import pytest

from chatvector.errors import EvalError, InputError, MissingExtraError
from chatvector.eval.backends import open_backend
from chatvector.eval.options import BackendOptions, DataOptions, GenerationOptions
from chatvector.eval.serve_llamacpp import SLOT_CONTEXT_CAP, LlamaCppServedModel

CONVERSATIONS = [
    [{"role": "user", "content": "hello world, what is your name?"}],
    [{"role": "user", "content": "你好，台北 在哪裡？"}],
    [{"role": "user", "content": "안녕하세요 tell me about the river"}],
]
needs_llama_cpp = pytest.mark.skipif(
    not all(importlib.util.find_spec(m) for m in ("gguf", "llama_cpp")),
    reason="llama-cpp-python is not installed (the gguf extra)",
)
needs_llama_server = pytest.mark.skipif(
    shutil.which("llama-server") is None, reason="llama.cpp's llama-server is not on PATH (built separately)"
)


@pytest.fixture(scope="module")
def chat_model(tmp_path_factory):
    from gguf_models import build_gguf_model

    root = tmp_path_factory.mktemp("gguf-serve")
    return build_gguf_model("llama", "llama3", root / "chat", seed=0, perturb_seed=1, chat_stop=True)


@pytest.fixture
def own_tmp(tmp_path, monkeypatch):
    """Temporary files (the GGUF's folder, the server log's) go here, to be checked for leftovers."""
    folder = tmp_path / "tmp"
    folder.mkdir()
    monkeypatch.setattr(tempfile, "tempdir", str(folder))
    return folder


def replies(model, max_new_tokens=8, **backend):
    options = BackendOptions(dtype="float32", device="cpu", concurrency=2, **backend)
    generation = GenerationOptions(max_new_tokens=max_new_tokens, temperature=0.0)
    with open_backend(str(model), options, generation) as opened:
        return opened.generate(CONVERSATIONS), opened.describe()


def clean(reply: str) -> str:
    return reply.replace("\ufffd", "").strip()


def assert_same_replies(served, local):
    # Random tiny models emit byte tokens that form no valid UTF-8: transformers decodes them as
    # U+FFFD, llama.cpp's servers drop them, and llama-cpp-python's generates on until the
    # character is complete (a reply that runs on past max_tokens). The token ids themselves are compared in
    # test_gguf.py::test_greedy_generation_matches_transformers_in_f32.
    for mine, theirs in zip(served, local, strict=True):
        assert clean(mine).startswith(clean(theirs)), (mine, theirs)
    assert all(len(clean(reply)) >= 4 for reply in local)  # the comparison is not between empty replies


# --- the command line each engine gets (no server) ---------------------------------------------------


def test_each_engine_gets_the_context_slots_and_threads_in_its_own_flags(chat_model, tmp_path):
    options = BackendOptions(serve="llama.cpp", concurrency=8, threads=3)
    served = LlamaCppServedModel(str(chat_model), options, log_dir=tmp_path)
    served.context = 1024
    args = served.command_for(1234)
    assert args[1:3] == ["-m", "llama_cpp.server"]
    joined = " ".join(args)
    assert "--port 1234" in joined and "--n_ctx 1024" in joined and "--interrupt_requests false" in joined
    assert "--n_threads 3 --n_threads_batch 3" in joined

    served.context = None  # unknown: the engine's own default, no flag
    assert "--n_ctx" not in served.command_for(1234)


def test_llama_server_gets_one_slot_per_request_each_with_the_models_context(chat_model, tmp_path, monkeypatch):
    # only the command is built, nothing is run: a stand-in executable on PATH is enough
    stand_in = tmp_path / "bin" / "llama-server"
    stand_in.parent.mkdir()
    stand_in.write_text("#!/bin/sh\nexit 1\n")
    stand_in.chmod(0o755)
    monkeypatch.setenv("PATH", f"{stand_in.parent}{os.pathsep}{os.environ['PATH']}")
    options = BackendOptions(serve="llama-server", concurrency=4)
    served = LlamaCppServedModel(str(chat_model), options, log_dir=tmp_path)
    served.context = 1024
    joined = " ".join(served.command_for(1234))
    assert "--parallel 4" in joined and "--ctx-size 4096" in joined and "--threads" not in joined


def test_a_missing_llama_server_is_refused_before_any_gguf_is_written(chat_model, monkeypatch, own_tmp):
    monkeypatch.setenv("PATH", str(own_tmp))
    monkeypatch.setattr("sys.executable", str(own_tmp / "python"))  # nor beside the interpreter
    with pytest.raises(InputError, match=r"program 'llama-server' not found on PATH; install it \(build llama\.cpp"):
        replies(chat_model, backend="openai", serve="llama-server")
    assert list(own_tmp.iterdir()) == []


def test_serve_llama_cpp_needs_the_extra(chat_model, monkeypatch, own_tmp):
    from chatvector.eval import serve_llamacpp

    real = importlib.util.find_spec
    monkeypatch.setattr(
        serve_llamacpp.importlib.util, "find_spec", lambda name, *a: None if name == "llama_cpp" else real(name, *a)
    )
    with pytest.raises(MissingExtraError, match=r"chatvector\[gguf\]"):
        replies(chat_model, backend="openai", serve="llama.cpp")
    assert list(own_tmp.iterdir()) == []  # nothing was made: no GGUF, no log folder


def test_llama_cpp_pythons_run_on_failure_is_explained(chat_model, tmp_path):
    """llama-cpp-python 0.3.x generates past max_tokens while a reply ends inside a UTF-8
    character and fails with HTTP 500 when the context is full: the error says so."""
    served = LlamaCppServedModel(str(chat_model), BackendOptions(serve="llama.cpp"), log_dir=tmp_path)
    served.context = 512
    failure = EvalError(f"{served.base_url}: no answer after 4 attempts (HTTP 500: llama_decode returned 1)")
    with pytest.raises(EvalError) as raised:
        served.__exit__(EvalError, failure, None)
    first, second = str(raised.value).splitlines()[:2]
    assert first == str(failure)
    assert "generated past max_tokens" in second and "context of 512 tokens" in second
    assert "--serve llama-server" in second
    other = EvalError(f"{served.base_url}: no answer after 4 attempts (HTTP 500: out of memory)")
    with pytest.raises(EvalError) as raised:
        served.__exit__(EvalError, other, None)
    assert "generated past max_tokens" not in str(raised.value)


# --- served by llama-cpp-python ----------------------------------------------------------------------


@needs_llama_cpp
def test_served_replies_equal_the_hf_backends_in_f32(chat_model, own_tmp):
    # 24 tokens: long enough to repeat, where llama-cpp-python's default repetition penalty (1.1,
    # unless the request says otherwise) would change greedy replies
    served, described = replies(chat_model, 24, backend="openai", serve="llama.cpp", serve_timeout=120)
    local, _ = replies(chat_model, 24, backend="hf")
    assert_same_replies(served, local)
    assert "--n_ctx 1024" in described["served"]["command"]  # the model's context (tiny_models.CONTEXT)
    assert "weights_reloaded_from" not in described["served"]  # the GGUF it was started on, not a reload
    assert described["extra_fields"]["repeat_penalty"] == 1.0
    assert not list(own_tmp.glob("chatvector-gguf-*"))  # the GGUF is removed after a clean run


@needs_llama_cpp
@pytest.mark.slow
def test_a_prompt_longer_than_llama_cpp_pythons_default_context_is_answered(chat_model, tmp_path):
    """The server's context is the model's (4096 here), not llama-cpp-python's default of 2048."""
    long_model = tmp_path / "long"
    shutil.copytree(chat_model, long_model)
    config = json.loads((long_model / "config.json").read_text())
    config["max_position_embeddings"] = 4096
    (long_model / "config.json").write_text(json.dumps(config))
    prompt = [{"role": "user", "content": "the cat sat on the mat. " * 450}]  # about 3,150 tokens
    options = BackendOptions(dtype="float32", serve="llama.cpp", serve_timeout=120)
    with open_backend(str(long_model), options, GenerationOptions(max_new_tokens=4)) as opened:
        assert opened.count_tokens(prompt) > 2048
        [reply] = opened.generate([prompt])
    assert isinstance(reply, str)


def spoil(monkeypatch, how):
    """``--serve`` writes the GGUF, then ``how(path)`` spoils it before the server reads it."""
    from chatvector.eval import serve_llamacpp

    real_export = serve_llamacpp.export_gguf

    def export(model, path, gguf_type):
        real_export(model, path, gguf_type=gguf_type)
        how(path)

    monkeypatch.setattr(serve_llamacpp, "export_gguf", export)


def truncate(path):
    with path.open("r+b") as handle:
        handle.truncate(path.stat().st_size // 2)


def rename_architecture(path):
    """``general.architecture`` "llama" -> "llamx": a well-formed file llama.cpp cannot load."""
    data = path.read_bytes()
    at = data.index(b"general.architecture") + len(b"general.architecture") + 4 + 8  # value type, length
    assert data[at : at + 5] == b"llama"
    with path.open("r+b") as handle:
        handle.seek(at)
        handle.write(b"llamx")


@needs_llama_cpp
@pytest.mark.slow
def test_a_truncated_gguf_is_refused_before_the_server_starts_and_removed(chat_model, monkeypatch, own_tmp):
    spoil(monkeypatch, truncate)
    options = BackendOptions(dtype="float32", serve="llama.cpp", serve_timeout=120)
    with pytest.raises(EvalError, match=r"model\.gguf: not a readable GGUF file") as raised:
        with open_backend(str(chat_model), options, GenerationOptions(), log_dir=own_tmp / "log"):
            pass
    assert "\n" not in str(raised.value)
    assert not (own_tmp / "log" / "server.log").exists()  # no server was started
    assert not list(own_tmp.glob("chatvector-gguf-*"))


@needs_llama_cpp
@pytest.mark.slow
def test_a_gguf_the_server_cannot_load_stops_it_with_a_clear_error_and_leaves_nothing(chat_model, monkeypatch, own_tmp):
    spoil(monkeypatch, rename_architecture)
    log_dir = own_tmp / "log"
    options = BackendOptions(dtype="float32", serve="llama.cpp", serve_timeout=120)
    with pytest.raises(EvalError) as raised:
        with open_backend(str(chat_model), options, GenerationOptions(), log_dir=log_dir):
            pass
    message = str(raised.value)
    first = message.splitlines()[0]
    assert first.startswith("the server exited (exit code 1)") and "llama_cpp.server" in first, message
    assert "llamx" in message  # the server's own reason, from the end of its log
    assert not list(own_tmp.glob("chatvector-gguf-*"))
    assert_no_server_left(log_dir)


@needs_llama_cpp
@pytest.mark.slow
def test_a_server_that_dies_mid_eval_is_a_clear_error_and_leaves_nothing(chat_model, own_tmp):
    log_dir = own_tmp / "log"
    options = BackendOptions(dtype="float32", serve="llama.cpp", serve_timeout=120, concurrency=1)
    with pytest.raises(EvalError) as raised:  # noqa: PT012 - the kill happens inside the block
        with open_backend(str(chat_model), options, GenerationOptions(max_new_tokens=4), log_dir=log_dir) as opened:
            [pid] = server_pids(log_dir)

            def kill_after_the_first(index, reply, finish=None):
                os.killpg(pid, signal.SIGKILL)

            opened.generate(CONVERSATIONS, on_reply=kill_after_the_first)
    first = str(raised.value).splitlines()[0]
    assert first.startswith("the server exited (exit signal 9)"), str(raised.value)
    assert not list(own_tmp.glob("chatvector-gguf-*"))
    assert_no_server_left(log_dir)


def server_pids(log_dir):
    return [int(p) for p in re.findall(r"server PID (\d+)", (log_dir / "server.log").read_text())]


def assert_no_server_left(log_dir):
    for pid in server_pids(log_dir):
        with pytest.raises(ProcessLookupError):
            os.killpg(pid, 0)


@needs_llama_cpp
@pytest.mark.slow
def test_a_sweep_through_llama_cpp_evaluates_every_ratio_and_leaves_no_gguf(tmp_path, own_tmp):
    from gguf_models import build_gguf_trio

    from chatvector.sweep.run import SweepSpec, run_sweep

    trio = build_gguf_trio("llama", "llama3", tmp_path / "trio")
    out = tmp_path / "sweep"
    spec = SweepSpec(
        out=out,
        ratios=(0.5, 1.0),
        base=str(trio.base),
        chat=str(trio.chat),
        target=str(trio.cp),
        data=DataOptions(lang="en", suite=("verifiable", "safety"), limit=3),
        backend=BackendOptions(serve="llama.cpp", dtype="float32", serve_timeout=120),
        generation=GenerationOptions(max_new_tokens=4),
        threshold=0.0,
    )
    summary = run_sweep(spec)
    assert [row["ratio"] for row in summary["rows"]] == [0.0, 0.5, 1.0]  # the target itself first
    evaluated = sorted((out / "ratios").glob("r=*/results.json"))
    assert len(evaluated) == 3
    for path in evaluated:
        results = json.loads(path.read_text())
        assert results["backend"]["served"]["serve"] == "llama.cpp"
        assert "llama_cpp.server" in results["backend"]["served"]["command"]
        assert results["metrics"]["verifiable.pass_rate"]["n"] > 0
    assert not list(own_tmp.glob("chatvector-gguf-*"))


# --- served by llama.cpp's own llama-server ----------------------------------------------------------


@needs_llama_cpp
@needs_llama_server
def test_llama_server_replies_equal_the_hf_backends_in_f32_with_parallel_slots(chat_model, own_tmp):
    served, described = replies(chat_model, backend="openai", serve="llama-server", serve_timeout=120)
    local, _ = replies(chat_model, backend="hf")
    assert_same_replies(served, local)
    assert "--parallel 2" in described["served"]["command"]
    assert f"--ctx-size {2 * min(1024, SLOT_CONTEXT_CAP)}" in described["served"]["command"]
    assert not list(own_tmp.glob("chatvector-gguf-*"))
