"""A stand-in SGLang server: the OpenAI-compatible chat endpoint plus the documented
``POST /update_weights_from_disk`` (https://docs.sglang.ai/basic_usage/native_api.html).

``python -m sglang.launch_server --model-path DIR --host H --port P [--dtype D]
[--fail-reload-at N] [--fail-start]``. It reads the weights of DIR (every safetensors tensor's name, dtype,
shape and bytes) and answers each chat request with a reply that starts with those weights'
fingerprint, so replies change exactly when the weights do. ``/update_weights_from_disk`` with
``{"model_path": DIR}`` loads DIR's weights the same way: refused, as SGLang refuses it, with
``{"success": false, "message": ...}`` and status 400 when DIR holds no weights or weights of
another architecture or size, and, with ``--fail-reload-at N``, at the N-th reload (a simulated
failure). Each start appends a line to the file ``$FAKE_SGLANG_STARTS`` names, when set, so tests
count process starts; each reload is logged to stdout (``server.log``).
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import struct
import sys
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path


def read_weights(model_dir: str) -> tuple[str, dict[str, tuple[str, tuple[int, ...]]]]:
    """The fingerprint of a directory's safetensors tensors (name, dtype, shape and bytes, in name
    order, whatever the sharding) and each tensor's dtype and shape.

    Raises:
        FileNotFoundError: no safetensors file in ``model_dir``.
    """
    files = sorted(Path(model_dir).glob("*.safetensors"))
    if not files:
        raise FileNotFoundError(f"Failed to get weights iterator: {model_dir} (no safetensors files found).")
    tensors: dict[str, tuple[str, tuple[int, ...], bytes]] = {}
    for file in files:
        data = file.read_bytes()
        (size,) = struct.unpack("<Q", data[:8])
        header = json.loads(data[8 : 8 + size])
        body = data[8 + size :]
        for name, info in header.items():
            if name == "__metadata__":
                continue
            start, end = info["data_offsets"]
            tensors[name] = (info["dtype"], tuple(info["shape"]), body[start:end])
    digest = hashlib.sha256()
    for name in sorted(tensors):
        dtype, shape, raw = tensors[name]
        digest.update(f"{name}|{dtype}|{shape}|".encode())
        digest.update(raw)
    return digest.hexdigest()[:16], {name: (dtype, shape) for name, (dtype, shape, _) in tensors.items()}


def reply_to(fingerprint: str, messages: list[dict]) -> str:
    users = [m["content"] for m in messages if m["role"] == "user"]
    return f"[{fingerprint}] reply {len(users)} to {users[-1][::-1][:30]}"


def say(text: str) -> None:
    print(text, flush=True)


class Engine:
    """The weights being served, swapped by a reload (as a lock-guarded pair)."""

    def __init__(self, model_dir: str, fail_reload_at: int) -> None:
        self.fingerprint, self.layout = read_weights(model_dir)
        self.fail_reload_at = fail_reload_at
        self.reloads = 0
        self.lock = threading.Lock()

    def reload(self, model_dir: str) -> tuple[bool, str]:
        with self.lock:
            self.reloads += 1
            if self.reloads == self.fail_reload_at:
                return False, "Failed to update weights: CUDA out of memory (simulated)."
            try:
                fingerprint, layout = read_weights(model_dir)
            except FileNotFoundError as error:
                return False, str(error)
            if layout != self.layout:
                return False, "Failed to update weights: the new weights' architecture or parameter size differs."
            self.fingerprint = fingerprint
            say(f"reload {self.reloads}: {model_dir} -> {fingerprint}")
            return True, "Succeeded to update model weights."


def handler(engine: Engine, served_name: str) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        def log_message(self, *_: object) -> None:
            pass

        def _send(self, body: dict, status: int = 200) -> None:
            data = json.dumps(body).encode()
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        def do_GET(self) -> None:  # noqa: N802 - http.server's naming
            if self.path == "/v1/models":
                self._send({"object": "list", "data": [{"id": served_name, "object": "model", "owned_by": "sglang"}]})
            else:
                self._send({"detail": "Not Found"}, 404)

        def do_POST(self) -> None:  # noqa: N802
            body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
            if self.path == "/update_weights_from_disk":
                success, message = engine.reload(body["model_path"])
                self._send({"success": success, "message": message, "num_paused_requests": 0}, 200 if success else 400)
            elif self.path == "/v1/chat/completions":
                with engine.lock:
                    content = reply_to(engine.fingerprint, body["messages"])
                choice = {"index": 0, "message": {"role": "assistant", "content": content}, "finish_reason": "stop"}
                self._send({"model": served_name, "choices": [choice]})
            else:
                self._send({"detail": "Not Found"}, 404)

    return Handler


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--model-path", required=True)
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--dtype", default="auto")
    parser.add_argument(
        "--fail-reload-at",
        type=int,
        default=int(os.environ.get("FAKE_SGLANG_FAIL_RELOAD_AT", "0")),
        help="refuse the N-th reload (simulated; default $FAKE_SGLANG_FAIL_RELOAD_AT, which a sweep's settings omit)",
    )
    parser.add_argument("--fail-start", action="store_true", help="exit with an error before listening")
    args = parser.parse_args()
    starts = os.environ.get("FAKE_SGLANG_STARTS")
    if starts:
        with open(starts, "a") as record:
            record.write(f"{os.getpid()} {args.model_path}\n")
    if args.fail_start:
        say("fake sglang: cannot allocate the KV cache (simulated)")
        sys.exit(3)
    try:
        engine = Engine(args.model_path, args.fail_reload_at)
    except FileNotFoundError as error:
        say(str(error))
        sys.exit(1)
    server = ThreadingHTTPServer((args.host, args.port), handler(engine, args.model_path))
    say(f"fake sglang: serving {args.model_path} ({engine.fingerprint}) on {args.port}")
    server.serve_forever()


if __name__ == "__main__":
    main()
