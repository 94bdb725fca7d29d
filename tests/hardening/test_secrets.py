"""API keys (endpoint, judge, Perspective, hub token) are sent where they belong and nowhere else.

A local stand-in server plays an OpenAI-compatible endpoint, a judge and the Perspective API; it
records the keys it receives (so the test knows they were really used) and, on its failing route,
echoes the key back in its error body, as careless servers do. The keys must then appear in no
log line (at debug level), no output, no results or model-card file, and no error message.
"""

from __future__ import annotations

import json
import logging
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest
from helpers import run_cli, trio_merge

from chatvector.eval.toxicity import PerspectiveScorer

KEYS = {
    "OPENAI_API_KEY": "sk-endpoint-SECRET-1111",
    "JUDGE_API_KEY": "sk-judge-SECRET-2222",
    "PERSPECTIVE_API_KEY": "perspective-SECRET-3333",
    "HF_TOKEN": "hf_SECRETtoken4444",
}


class StandIn(BaseHTTPRequestHandler):
    received: list[str] = []

    def do_POST(self) -> None:  # noqa: N802 - http.server's naming
        body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
        key = self.headers.get("Authorization", "") + self.headers.get("X-Goog-Api-Key", "")
        StandIn.received.append(key)
        if self.path.startswith("/fail"):
            return self._send(401, {"error": f"invalid key {key}"})
        if self.path.startswith("/perspective"):
            return self._send(200, {"attributeScores": {"TOXICITY": {"summaryScore": {"value": 0.1}}}})
        judging = "judge" in json.dumps(body).lower() or "score" in json.dumps(body).lower()
        reply = "Rating: [[7]]" if judging else "好的，這是我的回答。"
        return self._send(200, {"choices": [{"message": {"role": "assistant", "content": reply}}]})

    def _send(self, status: int, payload: dict) -> None:
        data = json.dumps(payload, ensure_ascii=False).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def log_message(self, *args: object) -> None:
        pass


@pytest.fixture
def stand_in(monkeypatch):
    server = ThreadingHTTPServer(("127.0.0.1", 0), StandIn)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    StandIn.received = []
    for name, value in KEYS.items():
        monkeypatch.setenv(name, value)
    url = f"http://127.0.0.1:{server.server_address[1]}"
    monkeypatch.setattr(PerspectiveScorer, "URL", f"{url}/perspective")
    yield url
    server.shutdown()


def everything_written(folder) -> str:
    return "\n".join(
        p.read_text(encoding="utf-8", errors="replace")
        for p in sorted(folder.rglob("*"))
        if p.is_file() and p.suffix in {".json", ".md", ".yaml", ".txt", ".jsonl", ".html"}
    )


def assert_no_key(*texts: str) -> None:
    for text in texts:
        for name, value in KEYS.items():
            assert value not in text, f"{name} leaked"
            assert value[-8:] not in text, f"part of {name} leaked"


def test_keys_are_used_but_never_logged_or_written(stand_in, monkeypatch, capsys, caplog, tmp_path):
    caplog.set_level(logging.DEBUG)
    code, output = run_cli(
        monkeypatch,
        capsys,
        "-vv",
        "eval",
        "served-model",
        "--backend",
        "openai",
        "--base-url",
        f"{stand_in}/v1",
        "--judge-url",
        f"{stand_in}/v1",
        "--judge-model",
        "judge",
        "--suite",
        "instruct",
        "--suite",
        "toxicity",
        "--toxicity",
        "perspective",
        "-o",
        tmp_path / "eval",
    )
    assert code == 0, output
    received = " ".join(StandIn.received)
    for name in ("OPENAI_API_KEY", "JUDGE_API_KEY", "PERSPECTIVE_API_KEY"):
        assert KEYS[name] in received, f"{name} was not sent"
    assert_no_key(output, caplog.text, everything_written(tmp_path / "eval"))


def test_a_server_echoing_the_key_does_not_leak_it_into_errors(stand_in, monkeypatch, capsys, caplog, tmp_path):
    caplog.set_level(logging.DEBUG)
    code, output = run_cli(
        monkeypatch,
        capsys,
        "-vv",
        "eval",
        "served-model",
        "--backend",
        "openai",
        "--base-url",
        f"{stand_in}/fail/v1",
        "--suite",
        "verifiable",
        "-o",
        tmp_path / "eval",
    )
    assert code != 0 and "HTTP 401" in output, output
    assert KEYS["OPENAI_API_KEY"] in " ".join(StandIn.received)
    assert_no_key(output, caplog.text)


def test_hub_token_stays_out_of_merges_cards_and_errors(stand_in, trios, monkeypatch, capsys, caplog, tmp_path):
    caplog.set_level(logging.DEBUG)
    trio = trios["mistral"]
    code, output = run_cli(
        monkeypatch,
        capsys,
        "-vv",
        *trio_merge(trio, tmp_path / "out"),
    )
    assert code == 0, output
    code, failure = run_cli(
        monkeypatch,
        capsys,
        "-vv",
        "merge",
        "--base",
        "no-such-owner/no-such-model",
        "--chat",
        trio.chat,
        "--target",
        trio.cp,
        "-o",
        tmp_path / "out2",
    )
    assert code != 0
    safetensors_metadata = (tmp_path / "out" / "model.safetensors").read_bytes()[:65536].decode("latin-1")
    assert_no_key(output, failure, caplog.text, everything_written(tmp_path / "out"), safetensors_metadata)
