"""A stand-in OpenAI-compatible server whose failures the serve tests control.

``python fake_openai_server.py --port P --model M [--fail-start] [--silent] [--die-after N]
[--delay S] [--child] [--ignore-term] [--port-taken-once FILE] [--verdict TEXT]
[--malformed-if TEXT] [--number-if TEXT] [--hang-if TEXT]``: answers ``GET /v1/models`` and
``POST /v1/chat/completions`` with a reply computed from the conversation (so reruns are
deterministic), and logs one line per completion to stdout (``completion N: ...``), which
chatvector keeps in ``server.log``. ``GET /stats`` tells how many completions were asked for.

As a judge: a request with a system message (the form of FastChat's judge prompts) is answered
with ``--verdict``; one whose last message contains ``--malformed-if`` gets a body that is not
JSON, ``--number-if`` a ``content`` that is a number, and ``--hang-if`` no answer at all.
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import subprocess
import sys
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer


def parse() -> argparse.Namespace:
    parser = argparse.ArgumentParser()
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--model", required=True)
    parser.add_argument("--fail-start", action="store_true", help="exit with an error before listening")
    parser.add_argument("--silent", action="store_true", help="never listen (a server stuck loading)")
    parser.add_argument("--die-after", type=int, default=0, help="crash after this many completions")
    parser.add_argument("--delay", type=float, default=0.0, help="seconds per completion")
    parser.add_argument("--child", action="store_true", help="start a worker process, as vLLM does")
    parser.add_argument("--ignore-term", action="store_true", help="ignore SIGTERM")
    parser.add_argument(
        "--port-taken-once",
        metavar="FILE",
        help="fail as if the port were taken, the first time (when FILE does not exist yet)",
    )
    parser.add_argument("--verdict", default="Rating: [[7]]", help="what judge requests are answered")
    parser.add_argument(
        "--malformed-if", action="append", default=[], help="a body that is not JSON for judge requests containing this"
    )
    parser.add_argument("--number-if", help="content 12345 (a number) for requests containing this")
    parser.add_argument("--hang-if", help="never answer requests containing this")
    return parser.parse_args()


def say(text: str) -> None:
    print(text, flush=True)


def reply_to(messages: list[dict]) -> str:
    users = [m["content"] for m in messages if m["role"] == "user"]
    return f"reply {len(users)} to {users[-1][::-1][:40]}"


def handler(args: argparse.Namespace) -> type[BaseHTTPRequestHandler]:
    lock = threading.Lock()
    served = [0]
    answered = [0]  # completions whose answer was written
    answered_all = threading.Condition()

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
                entry = {"id": args.model, "object": "model", "owned_by": "fake", "created": 1700000000}
                self._send({"object": "list", "data": [entry]})
            elif self.path == "/stats":
                self._send({"completions": served[0]})
            else:
                self._send({"error": "not found"}, 404)

        def do_POST(self) -> None:  # noqa: N802
            body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
            time.sleep(args.delay)
            with lock:
                served[0] += 1
                number = served[0]
                crash = bool(args.die_after) and number > args.die_after
                if not crash:
                    say(f"completion {number}: {body['messages'][-1]['content'][:40]}")
            if crash:
                # the completions counted before this one are answered first: a crash that cut off
                # a concurrent answer already counted would make "died after N" mean fewer than N
                with answered_all:
                    answered_all.wait_for(lambda: answered[0] >= args.die_after, timeout=30)
                say("fake server: simulated crash (out of memory)")
                os._exit(1)
            self._answer(body["messages"])
            with answered_all:
                answered[0] += 1
                answered_all.notify_all()

        def _answer(self, messages: list[dict]) -> None:
            last = messages[-1]["content"]
            judged = messages[0]["role"] == "system"
            if judged and args.hang_if and args.hang_if in last:
                time.sleep(3600)
            if judged and any(text in last for text in args.malformed_if):
                data = b'{"choices": [{"message": {"content": "Rating: [[9'  # cut off mid-body
                self.send_response(200)
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)
                return
            content = args.verdict if judged else reply_to(messages)
            if judged and args.number_if and args.number_if in last:
                content = 12345
            self._send(
                {
                    "model": f"{args.model}-served",
                    "system_fingerprint": "fp_fake_1",
                    "choices": [{"index": 0, "message": {"role": "assistant", "content": content}}],
                }
            )

    return Handler


def main() -> None:
    args = parse()
    if args.ignore_term:
        signal.signal(signal.SIGTERM, signal.SIG_IGN)
    if args.child:
        child = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(600)"])
        say(f"fake server: child PID {child.pid}")
    if args.port_taken_once and not os.path.exists(args.port_taken_once):
        with open(args.port_taken_once, "w") as marker:
            marker.write(str(args.port))
        say("OSError: [Errno 98] Address already in use")
        sys.exit(1)
    if args.fail_start:
        say("fake server: cannot load the weights (simulated)")
        sys.exit(3)
    if args.silent:
        say("fake server: loading forever")
        while True:
            time.sleep(1)
    server = ThreadingHTTPServer(("127.0.0.1", args.port), handler(args))
    say(f"fake server: listening on {args.port}")
    server.serve_forever()


if __name__ == "__main__":
    main()
