"""`--serve`: the server's command line, its start, its failures and its stop, with no process left behind.

Failures are driven by a stand-in server (fake_openai_server.py) that fails on cue; the real
`transformers serve` runs in test_e2e.py.
"""

from __future__ import annotations

import http.server
import json
import os
import re
import shlex
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest
from helpers import as_from_a_terminal

from chatvector.errors import EvalError, InputError
from chatvector.eval.options import BackendOptions
from chatvector.eval.serve import ServedModel, serve_command

FAKE = Path(__file__).with_name("fake_openai_server.py")
EXE = Path(sys.executable).parent / "chatvector"


def fake(*flags: str) -> str:
    """A --serve command running the stand-in server with ``flags``."""
    return shlex.join([sys.executable, str(FAKE), "--port", "{port}", "--model", "{model}", *flags])


def alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    status = Path(f"/proc/{pid}/stat")
    return not (status.exists() and status.read_text().split(")")[-1].split()[0] == "Z")  # zombies are gone


def pids_in(log: Path) -> list[int]:
    """The server's PID (chatvector's header line) and any worker PID the server logged."""
    text = log.read_text()
    return [int(p) for p in re.findall(r"server PID (\d+)", text) + re.findall(r"child PID (\d+)", text)]


def gone(pids: list[int], within: float = 5.0) -> bool:
    deadline = time.monotonic() + within
    while time.monotonic() < deadline:
        if not any(alive(p) for p in pids):
            return True
        time.sleep(0.1)
    return False


def test_presets_and_custom_commands_are_filled_in():
    """Placeholders filled word by word (a path with a space stays one argument), --serve-arg appended."""
    options = BackendOptions(serve="vllm", serve_arg=("--tensor-parallel-size", "2"), dtype="bfloat16")
    command = serve_command("/models/my model", 8123, options.model_copy(update={"serve": "transformers"}))
    assert command[0].endswith("transformers") and command[1:4] == ["serve", "/models/my model", "--host"]
    assert command[-6:] == ["--device", "auto", "--dtype", "bfloat16", "--tensor-parallel-size", "2"]
    python = serve_command("m", 1, options.model_copy(update={"serve": "sglang"}))
    assert python[:3] == [sys.executable, "-m", "sglang.launch_server"] and "8123" not in python
    custom = serve_command(
        "m", 9, options.model_copy(update={"serve": "python3 -m srv --path {model} -p {port}", "serve_arg": ()})
    )
    assert custom[1:] == ["-m", "srv", "--path", "m", "-p", "9"]
    with pytest.raises(InputError, match=r"\{model\} and \{port\}"):
        serve_command("m", 9, options.model_copy(update={"serve": "my-server --port 8000"}))
    with pytest.raises(InputError, match="program 'no-such-server-xyz' not found"):
        serve_command("m", 9, options.model_copy(update={"serve": "no-such-server-xyz {model} {port}"}))


def test_a_missing_engine_names_what_to_install(monkeypatch, tmp_path):
    monkeypatch.setenv("PATH", str(tmp_path))  # no vllm on it, whatever this machine has
    with pytest.raises(InputError, match=r"program 'vllm' not found on PATH; install it \(pip install vllm\)"):
        serve_command("m", 9, BackendOptions(serve="vllm"))


def test_a_server_that_fails_to_start_is_a_clear_error_and_leaves_nothing(tmp_path):
    options = BackendOptions(serve=fake("--fail-start", "--child"), serve_timeout=60)
    with pytest.raises(EvalError) as error, ServedModel("m", options, log_dir=tmp_path):
        pass
    message = str(error.value)
    assert "the server exited (exit code 3)" in message and "cannot load the weights (simulated)" in message
    assert str(tmp_path / "server.log") in message
    assert len(pids_in(tmp_path / "server.log")) == 2 and gone(pids_in(tmp_path / "server.log"))


def test_a_server_that_never_answers_times_out_and_is_stopped(tmp_path):
    options = BackendOptions(serve=fake("--silent", "--child"), serve_timeout=2)
    started = time.monotonic()
    with (
        pytest.raises(EvalError, match=r"did not answer GET .*/v1/models within 2 s") as error,
        ServedModel("m", options, log_dir=tmp_path),
    ):
        pass
    assert time.monotonic() - started < 30
    assert "loading forever" in str(error.value)
    assert gone(pids_in(tmp_path / "server.log"))  # the worker too: the whole process group was stopped


def test_a_server_ignoring_sigterm_is_killed_after_the_grace_period(tmp_path):
    options = BackendOptions(serve=fake("--ignore-term"), serve_timeout=30)
    with ServedModel("m", options, log_dir=tmp_path, grace=1.0) as served:
        assert served.model_name == "m"
        pid = served.process.pid
    assert served.process.returncode == -signal.SIGKILL and not alive(pid)


def test_a_port_taken_before_the_server_binds_it_is_replaced(tmp_path):
    marker = tmp_path / "taken"
    options = BackendOptions(serve=fake("--port-taken-once", str(marker)), serve_timeout=30)
    with ServedModel("m", options, log_dir=tmp_path) as served:
        assert served.port != int(marker.read_text())
        assert served.model_name == "m"
    with pytest.raises(EvalError, match="exit code 3"), ServedModel("m", BackendOptions(serve=fake("--fail-start"))):
        pass  # any other early exit is not retried


@pytest.mark.slow
def test_a_server_killed_mid_eval_gives_its_log_and_keeps_the_replies(tmp_path):
    out = tmp_path / "out"
    done = subprocess.run(
        [
            str(EXE),
            "eval",
            "my-model",
            "-o",
            str(out),
            "--serve",
            fake("--die-after", "3", "--child"),
            "--lang",
            "en",
            "--suite",
            "verifiable",
            "--limit",
            "6",
            "--concurrency",
            "1",
        ],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 2, done.stderr
    assert "EvalError" in done.stderr and "Traceback" not in done.stderr, done.stderr
    assert "the server exited (exit code 1)" in done.stderr and "simulated crash (out of memory)" in done.stderr
    assert "3 replies (3 new in this run) are kept" in done.stderr and "rerun the same command" in done.stderr
    assert len((out / "replies.jsonl").read_text().splitlines()) == 3
    assert gone(pids_in(out / "server.log"))
    assert not (out / "results.json").exists()


@pytest.mark.slow
@pytest.mark.parametrize("signum", [signal.SIGINT, signal.SIGTERM])
def test_ctrl_c_and_sigterm_during_a_served_eval_leave_no_server(tmp_path, signum):
    out = tmp_path / "out"
    process = subprocess.Popen(
        [
            str(EXE),
            "eval",
            "my-model",
            "-o",
            str(out),
            "--serve",
            fake("--delay", "0.5", "--child"),
            "--lang",
            "en",
            "--suite",
            "verifiable",
            "--concurrency",
            "1",
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        preexec_fn=as_from_a_terminal,
    )
    replies = out / "replies.jsonl"
    deadline = time.monotonic() + 60
    while not (replies.exists() and replies.read_text().count("\n") >= 2) and time.monotonic() < deadline:
        time.sleep(0.1)
    pids = pids_in(out / "server.log")
    assert len(pids) == 2 and all(alive(p) for p in pids)
    process.send_signal(signum)
    _, stderr = process.communicate(timeout=60)
    assert process.returncode != 0
    assert gone(pids), f"server processes left after {signal.Signals(signum).name}"
    assert not (out / "results.json").exists()
    assert all(json.loads(line)["reply"] for line in replies.read_text().splitlines())


@pytest.mark.slow
def test_a_killed_chatvector_takes_its_server_along(tmp_path):
    """Even SIGKILL (or the OOM killer), which no handler sees: the kernel stops the server."""
    out = tmp_path / "out"
    process = subprocess.Popen(
        [
            str(EXE),
            "eval",
            "my-model",
            "-o",
            str(out),
            "--serve",
            fake("--delay", "0.5"),
            "--lang",
            "en",
            "--suite",
            "verifiable",
            "--concurrency",
            "1",
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    replies = out / "replies.jsonl"
    deadline = time.monotonic() + 60
    while not replies.exists() and time.monotonic() < deadline:
        time.sleep(0.1)
    [pid] = pids_in(out / "server.log")
    process.kill()
    process.wait(timeout=30)
    assert gone([pid], within=10)


@pytest.mark.slow
def test_a_rerun_after_a_kill_generates_only_the_missing_replies(tmp_path):
    """Kill an eval half-way (SIGKILL: nothing is cleaned up), rerun the same command: the replies kept
    are reused, the server is asked only for the others, and the results equal an uninterrupted run."""
    # the same command each time: the server's command line is part of what a cached reply is keyed by
    command = [
        "--serve",
        fake("--delay", "0.2"),
        "--lang",
        "en",
        "--suite",
        "verifiable",
        "--suite",
        "multiturn",
        "--limit",
        "4",
        "--concurrency",
        "1",
    ]
    whole = tmp_path / "whole"
    subprocess.run([str(EXE), "eval", "m", "-o", str(whole), *command], check=True, capture_output=True, timeout=120)
    total = len((whole / "replies.jsonl").read_text().splitlines())
    out = tmp_path / "resumed"
    process = subprocess.Popen(
        [str(EXE), "eval", "m", "-o", str(out), *command], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
    )
    replies = out / "replies.jsonl"
    deadline = time.monotonic() + 60
    while not (replies.exists() and replies.read_text().count("\n") >= 3) and time.monotonic() < deadline:
        time.sleep(0.05)
    process.send_signal(signal.SIGKILL)
    process.wait(timeout=30)
    kept = replies.read_text().count("\n")
    assert 3 <= kept < total
    rerun = subprocess.run(
        [str(EXE), "eval", "m", "-o", str(out), *command], capture_output=True, text=True, timeout=120
    )
    assert rerun.returncode == 0, rerun.stderr
    asked = len(re.findall(r"^completion \d+:", (out / "server.log").read_text(), flags=re.MULTILINE))
    assert asked == total - kept
    assert f"{kept} replies reused" in " ".join(rerun.stdout.split())
    first, second = (json.loads((d / "results.json").read_text()) for d in (whole, out))
    assert first["metrics"] == second["metrics"]
    assert [s["replies"] for s in first["suites"]["multiturn"]["samples"]] == [
        s["replies"] for s in second["suites"]["multiturn"]["samples"]
    ]


class Judge(http.server.BaseHTTPRequestHandler):
    """A judge endpoint: refuses (HTTP 401) while ``refusing``, else rates every answer 7."""

    refusing = True

    def log_message(self, *_: object) -> None:
        pass

    def do_POST(self) -> None:  # noqa: N802 - http.server's naming
        self.rfile.read(int(self.headers["Content-Length"]))
        body = (
            b"{}"
            if Judge.refusing
            else json.dumps(
                {"choices": [{"message": {"role": "assistant", "content": "Fine. Rating: [[7]]"}}]}
            ).encode()
        )
        self.send_response(401 if Judge.refusing else 200)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)


@pytest.mark.slow
def test_a_judge_failure_keeps_the_replies_and_says_how_to_resume(tmp_path):
    judge = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Judge)
    threading.Thread(target=judge.serve_forever, daemon=True).start()
    out = tmp_path / "out"
    command = [
        str(EXE),
        "eval",
        "m",
        "-o",
        str(out),
        "--serve",
        fake(),
        "--lang",
        "en",
        "--suite",
        "instruct",
        "--limit",
        "3",
        "--judge-url",
        f"http://127.0.0.1:{judge.server_address[1]}/v1",
        "--judge-model",
        "j",
    ]
    try:
        failed = subprocess.run(command, capture_output=True, text=True, timeout=120)
        assert failed.returncode == 2
        message = " ".join(failed.stderr.split())
        assert "request refused (HTTP 401)" in message
        assert "3 replies (3 new in this run) are kept in" in message and "rerun the same command" in message
        Judge.refusing = False  # the judge is back
        rerun = subprocess.run(command, capture_output=True, text=True, timeout=120)
    finally:
        judge.shutdown()
    assert rerun.returncode == 0, rerun.stderr
    assert "completion" not in (out / "server.log").read_text()  # nothing generated again
    assert json.loads((out / "results.json").read_text())["metrics"]["instruct.score"]["value"] == 7.0


def test_serve_and_a_base_url_together_are_refused():
    from chatvector.eval.backends import open_backend
    from chatvector.eval.options import GenerationOptions

    options = BackendOptions(serve="transformers", base_url="http://127.0.0.1:1/v1")
    with pytest.raises(InputError, match="give one of them"), open_backend("m", options, GenerationOptions()):
        pass
