"""A judge that never answers does not hold the run: SIGTERM or Ctrl-C while a judge request is in
flight ends `chatvector eval` at once (not after the request's 120 s timeout), keeping the replies.

The signal is sent once the stand-in judge has received a request (a state, read from its
``/stats``), never after a fixed sleep.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time

import pytest
from helpers import as_from_a_terminal
from test_judged_runs import ROWS, Server, write_jsonl


def wait_for_a_judge_request(judge: Server, process: subprocess.Popen) -> None:
    while judge.completions == 0:
        assert process.poll() is None, process.communicate()
        time.sleep(0.05)


@pytest.mark.slow
@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGINT])
def test_a_stop_request_does_not_wait_for_a_judge_that_never_answers(signum, tmp_path):
    model, judge = Server(model="tiny"), Server("--hang-if", "Question")
    try:
        data = write_jsonl(tmp_path / "q.jsonl", ROWS[:3])
        out = tmp_path / "out"
        command = [
            *(sys.executable, "-c", "from chatvector.cli import main; main()"),
            *("eval", "tiny", "-o", str(out), "--lang", "en", "--suite", "instruct", "--data", f"instruct={data}"),
            *("--backend", "openai", "--base-url", model.url),
            *("--judge-url", judge.url, "--judge-model", "j"),  # the default --judge-timeout: 120 s
        ]
        env = {**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)}
        process = subprocess.Popen(
            command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=env, text=True, preexec_fn=as_from_a_terminal
        )
        wait_for_a_judge_request(judge, process)
        process.send_signal(signum)
        try:
            process.wait(timeout=60)  # far below the 120 s the request could still take
        except subprocess.TimeoutExpired:
            process.kill()
            pytest.fail("the run waited for the judge's request after the stop request")
        # SIGTERM exits 143; Ctrl-C is click's "Aborted!", exit 1
        expected = 128 + signum if signum == signal.SIGTERM else 1
        assert process.returncode == expected, process.communicate()
        replies = (out / "replies.jsonl").read_text(encoding="utf-8").splitlines()
        assert len(replies) == 3 and all(json.loads(line)["reply"] for line in replies)
        assert not (out / "results.json").exists()
    finally:
        model.stop()
        judge.stop()


def test_the_timeout_option_reaches_the_judge(tmp_path):
    from chatvector.eval.judge import judges_from_options
    from chatvector.eval.options import JudgeOptions

    made = judges_from_options(JudgeOptions(judge_url="http://x/v1", judge_model="j", judge_timeout=7.5))
    assert made["judge"].backend.timeout == 7.5
