"""What an OpenAI-compatible endpoint answers, read strictly: a refusal shows the server's own reason
(the key masked), reply content of every kind the spec allows is text and any other kind is a clear
error, and requests to a served model ask for no more tokens than its context leaves."""

from __future__ import annotations

import json
import logging
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from chatvector.errors import EvalError
from chatvector.eval.backends import GenerationSettings, OpenAIBackend
from chatvector.eval.backends.context import ContextCap, context_of_config
from chatvector.eval.backends.openai import _stream_piece, reply_text, server_reason

KEY = "sk-endpoint-SECRET-7777"


class Endpoint(BaseHTTPRequestHandler):
    """Answers every chat completion with ``status`` and ``body``; keeps the requests it got."""

    status = 200
    body: object = {}
    requests: list[dict] = []

    def do_POST(self):
        Endpoint.requests.append(json.loads(self.rfile.read(int(self.headers["Content-Length"]))))
        data = (self.body if isinstance(self.body, str) else json.dumps(self.body)).encode()
        self.send_response(self.status)
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def log_message(self, *args):
        pass


@pytest.fixture
def endpoint():
    server = ThreadingHTTPServer(("127.0.0.1", 0), Endpoint)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    Endpoint.requests = []
    yield f"http://127.0.0.1:{server.server_address[1]}/v1"
    server.shutdown()
    server.server_close()


def answer(status: int, body: object) -> None:
    Endpoint.status, Endpoint.body = status, body


def ask(url: str, **kwargs) -> list[str]:
    backend = OpenAIBackend(url, "m", retries=0, backoff=0.0, timeout=10, **kwargs)
    return backend.generate([[{"role": "user", "content": "hi"}]])


def completion(content: object, **message: object) -> dict:
    return {"choices": [{"message": {"role": "assistant", "content": content, **message}}]}


def test_a_refusal_shows_the_servers_reason_not_a_guess(endpoint, monkeypatch):
    monkeypatch.setenv("OPENAI_API_KEY", KEY)
    answer(400, {"error": {"message": "The prompt has 202 tokens, but the model takes at most 128", "code": 400}})
    with pytest.raises(EvalError) as refused:
        ask(endpoint)
    message = str(refused.value)
    assert "HTTP 400" in message and "The prompt has 202 tokens, but the model takes at most 128" in message
    assert "OPENAI_API_KEY" not in message and "model name" not in message
    answer(401, {"error": f"invalid key Bearer {KEY}"})  # a careless server echoing the key
    with pytest.raises(EvalError, match=r"HTTP 401\): invalid key Bearer \*\*\*; check the key in \$OPENAI_API_KEY"):
        ask(endpoint)
    answer(404, "<html>\n  no such model\n</html>")
    with pytest.raises(EvalError, match=r"HTTP 404\): <html> no such model </html>; check the model name \('m'\)"):
        ask(endpoint)


def test_a_server_error_after_the_retries_keeps_its_reason(endpoint):
    answer(503, {"detail": "the engine is still loading"})
    with pytest.raises(EvalError, match=r"no answer after 1 attempts \(HTTP 503: the engine is still loading\)"):
        ask(endpoint)


def test_reasons_are_one_bounded_line_with_every_piece_of_the_key_masked():
    long = server_reason("x" * 5000)
    assert len(long) == 300 and long.endswith("…")
    assert server_reason("") == "no reason given"
    assert server_reason('{"message": "bad\\nrequest"}') == "bad request"
    assert server_reason('{"detail": [{"loc": ["body"], "msg": "field required"}]}').startswith('[{"loc"')
    starred = server_reason(f"Incorrect API key provided: {KEY[:7]}********7777.", KEY)
    assert KEY[:7] not in starred and "7777" not in starred and starred.startswith("Incorrect API key provided: ***")
    assert server_reason(f"key={KEY}", KEY) == "***"


@pytest.mark.parametrize(
    ("content", "extra", "text"),
    [
        ("好的", {}, "好的"),
        ("", {}, ""),
        ([{"type": "text", "text": "one "}, {"type": "text", "text": "two"}], {}, "one two"),
        ([{"type": "output_text", "text": "x"}, {"type": "image_url", "image_url": {}}], {}, "x"),
        (None, {"refusal": "I can't help with that."}, "I can't help with that."),
    ],
)
def test_reply_content_the_spec_allows_is_text(content, extra, text):
    assert reply_text(completion(content, **extra), "server") == text


@pytest.mark.parametrize(
    "body",
    [
        completion(12345),
        completion(None),
        completion({"text": "x"}),
        completion([1, 2]),
        completion([{"type": "text", "text": 5}]),
        {"choices": []},
        {"error": "nope"},
        [],
    ],
    ids=["number", "null", "object", "list-of-numbers", "part-without-text", "no-choice", "no-choices", "list"],
)
def test_other_reply_content_is_a_clear_error(body, endpoint):
    with pytest.raises(EvalError, match="content is|has no choices"):
        reply_text(body, "server")
    answer(200, body)
    with pytest.raises(EvalError, match="content is|has no choices"):
        ask(endpoint)  # through the backend too: an EvalError at once, not a traceback or a retry
    assert len(Endpoint.requests) == 1


def test_streamed_chunks_with_odd_content_are_clear_errors():
    assert _stream_piece('data: {"choices": [{"delta": {"content": [{"type": "text", "text": "好"}]}}]}') == "好"
    assert _stream_piece('data: {"choices": [{"delta": {"content": null}}]}') == ""
    with pytest.raises(EvalError, match="content is 7"):
        _stream_piece('data: {"choices": [{"delta": {"content": 7}}]}')


def test_new_tokens_are_capped_to_the_context_and_it_is_said_once(caplog):
    cap = ContextCap(256, 128, "model")
    with caplog.at_level(logging.WARNING):
        assert [cap.new_tokens(n) for n in (10, 100, 120, 127)] == [118, 28, 8, 1]
    assert len([r for r in caplog.records if "capped" in r.getMessage()]) == 1
    assert ContextCap(16, 128, "model").new_tokens(100) == 16
    assert ContextCap(256, None, "model").new_tokens(10_000) == 256
    with pytest.raises(EvalError, match="a prompt of 128 tokens fills the model's context of 128 tokens"):
        cap.new_tokens(128)
    assert context_of_config({"max_position_embeddings": 4096}) == 4096
    assert context_of_config({"n_positions": 1024}) == 1024
    assert context_of_config({"text_config": {"max_position_embeddings": 32768}}) == 32768
    assert context_of_config({"max_position_embeddings": True}) is None and context_of_config({}) is None


def test_requests_to_a_served_model_fit_its_context(endpoint):
    answer(200, completion("ok"))
    backend = OpenAIBackend(
        endpoint,
        "m",
        retries=0,
        settings=GenerationSettings(max_new_tokens=256),
        context=128,
        count_tokens=lambda conversation: 20 * len(conversation),
    )
    backend.generate([[{"role": "user", "content": "a"}], [{"role": "user", "content": "b"}] * 5])
    assert sorted(r["max_tokens"] for r in Endpoint.requests) == [28, 108]
    unknown = OpenAIBackend(endpoint, "m", retries=0, settings=GenerationSettings(max_new_tokens=256), context=128)
    Endpoint.requests = []
    unknown.generate([[{"role": "user", "content": "a"}]])
    assert Endpoint.requests[0]["max_tokens"] == 256  # prompt lengths unknown: sent as given


@pytest.mark.parametrize(("wanted", "said"), [(100, "longer than 28 tokens"), (256, "every reply is cut shorter")])
def test_the_context_cap_warning_names_a_real_prompt_length(wanted, said, caplog):
    """A --max-new-tokens above the whole context once said "prompts longer than -128 tokens"."""
    cap = ContextCap(wanted, 128, "MODEL")
    with caplog.at_level("WARNING"):
        assert cap.new_tokens(50) == 78
    assert said in caplog.text and "-1" not in caplog.text
