"""``--serve llama.cpp``: the model is written as GGUF, served by llama-cpp-python, evaluated
through the openai backend and stopped; greedy replies in f32 equal the hf backend's."""

from __future__ import annotations

import pytest

from chatvector.errors import MissingExtraError
from chatvector.eval.backends import open_backend
from chatvector.eval.options import BackendOptions, GenerationOptions

CONVERSATIONS = [
    [{"role": "user", "content": "hello world, what is your name?"}],
    [{"role": "user", "content": "你好，台北 在哪裡？"}],
    [{"role": "user", "content": "안녕하세요 tell me about the river"}],
]


@pytest.fixture(scope="module")
def chat_model(tmp_path_factory):
    from gguf_models import build_gguf_model

    root = tmp_path_factory.mktemp("gguf-serve")
    return build_gguf_model("llama", "llama3", root / "chat", seed=0, perturb_seed=1, chat_stop=True)


def replies(model, **backend):
    options = BackendOptions(dtype="float32", device="cpu", concurrency=2, **backend)
    generation = GenerationOptions(max_new_tokens=8, temperature=0.0)
    with open_backend(str(model), options, generation) as opened:
        return opened.generate(CONVERSATIONS)


def test_serve_llama_cpp_needs_the_extra(chat_model, monkeypatch, tmp_path):
    import importlib.util

    from chatvector.eval import serve_llamacpp

    real = importlib.util.find_spec
    monkeypatch.setattr(
        serve_llamacpp.importlib.util, "find_spec", lambda name, *a: None if name == "llama_cpp" else real(name, *a)
    )
    with pytest.raises(MissingExtraError, match=r"chatvector\[gguf\]"):
        replies(chat_model, backend="openai", serve="llama.cpp")


def test_served_replies_equal_the_hf_backends_in_f32(chat_model):
    pytest.importorskip("gguf", reason="the gguf extra is not installed")
    pytest.importorskip("llama_cpp", reason="llama-cpp-python is not installed (the gguf extra)")
    served = replies(chat_model, backend="openai", serve="llama.cpp", serve_timeout=120)
    local = replies(chat_model, backend="hf")
    # Random tiny models emit byte tokens that form no valid UTF-8: transformers decodes them as
    # U+FFFD, llama-cpp-python's server drops them, and when the token limit falls inside a
    # character it generates on until the character is complete (a reply that runs on past
    # max_tokens); the hf backend strips the reply, the openai one not. The token ids themselves
    # are compared in test_gguf.py::test_greedy_generation_matches_transformers_in_f32.
    for mine, theirs in zip(served, local, strict=True):
        assert clean(mine).startswith(clean(theirs)), (mine, theirs)
    assert all(len(clean(reply)) >= 4 for reply in local)  # the comparison is not between empty replies


def clean(reply: str) -> str:
    return reply.replace("\ufffd", "").strip()
