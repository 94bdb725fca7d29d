"""Judged runs that never lose work, and MT-Bench-comparable grading.

Over HTTP against the stand-in server (fake_openai_server.py, a separate process): a judge that
answers some requests with bodies that are not JSON or content that is a number leaves a complete
results.json with those verdicts counted as unparsed; a rerun sends no request at all; a judge
that stops answering keeps every reply and verdict so far, and the rerun asks only the rest.
With scripted judges: the prompts sent are FastChat's templates filled in, the aggregation is
MT-Bench's, and an always-``[[A]]`` pairwise judge has position consistency 0 and only ties.
"""

from __future__ import annotations

import hashlib
import json
import socket
import subprocess
import sys
import time
from importlib import resources
from pathlib import Path

import httpx
import pytest

from chatvector.errors import EvalError
from chatvector.eval import judge_endpoint
from chatvector.eval.backends import ScriptedBackend
from chatvector.eval.evaluation import evaluate
from chatvector.eval.job import EvalJob, run_eval
from chatvector.eval.judge import Judge, PairwiseJudge
from chatvector.eval.options import BackendOptions, DataOptions, JudgeOptions
from chatvector.eval.report import load_results, write_results

FAKE = Path(__file__).with_name("fake_openai_server.py")


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


class Server:
    """The stand-in server in its own process; ``completions`` asks it how many it was sent."""

    def __init__(self, *flags: str, model: str = "judge") -> None:
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}/v1"
        command = [sys.executable, str(FAKE), "--port", str(self.port), "--model", model, *flags]
        self.process = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.STDOUT)
        while True:  # wait for the state "answering", not for a time
            if self.process.poll() is not None:
                raise RuntimeError(f"the stand-in server exited with {self.process.returncode}")
            try:
                httpx.get(f"{self.url}/models", timeout=1)
                return
            except httpx.TransportError:
                time.sleep(0.05)

    @property
    def completions(self) -> int:
        return httpx.get(f"http://127.0.0.1:{self.port}/stats", timeout=5).json()["completions"]

    def stop(self) -> None:
        self.process.kill()
        self.process.wait()


@pytest.fixture
def servers():
    started: list[Server] = []

    def start(*flags: str, model: str = "judge") -> Server:
        started.append(Server(*flags, model=model))
        return started[-1]

    yield start
    for server in started:
        server.stop()


@pytest.fixture(autouse=True)
def quick_retries(monkeypatch):
    monkeypatch.setattr(judge_endpoint, "BACKOFF", 0.01)


def write_jsonl(path: Path, rows: list[dict]) -> str:
    path.write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows), encoding="utf-8")
    return str(path)


ROWS = [{"id": f"q{i}", "lang": "en", "prompt": f"Question {i}: what is {i} + {i}?"} for i in range(8)]


def job(out: Path, model_server: Server, judge_url: str, data: str, **judge: object) -> EvalJob:
    return EvalJob(
        model="tiny",
        out=out,
        backend=BackendOptions(backend="openai", base_url=model_server.url, concurrency=2),
        judge=JudgeOptions(judge_url=judge_url, judge_model="judge", judge_timeout=30, **judge),
        data=DataOptions(lang="en", suite=("instruct",), data=(f"instruct={data}",)),
    )


@pytest.mark.slow
def test_unreadable_verdicts_are_counted_as_unparsed_and_a_rerun_sends_nothing(servers, tmp_path):
    model = servers(model="tiny")
    # q2 and q5: a body cut off mid-JSON; q6: "content": 12345. Everything else: "Rating: [[7]]".
    judge = servers("--malformed-if", "Question 2:", "--malformed-if", "Question 5:", "--number-if", "Question 6:")
    data = write_jsonl(tmp_path / "q.jsonl", ROWS)
    run = run_eval(job(tmp_path / "out", model, judge.url, data))
    results = load_results(tmp_path / "out")
    score = results["metrics"]["instruct.score"]
    assert (score["value"], score["n"], score["unparsed"]) == (7.0, 5, 3)
    assert results["metrics"]["instruct.unparsed"]["value"] == 3.0
    records = {r["id"]: r for r in results["suites"]["instruct"]["samples"]}
    assert records["q2"]["turn_scores"] == [None] and "(unreadable reply)" in records["q2"]["judgment"][0][0]
    assert '"Rating: [[9' in records["q2"]["judgment"][0][0]  # the judge's raw text is kept
    assert records["q6"]["turn_scores"] == [None] and records["q3"]["turn_scores"] == [7.0]
    # each unreadable reply was asked 1 + RETRIES times; the others once
    assert judge.completions == 5 + 3 * (1 + judge_endpoint.RETRIES)
    assert results["judge"]["instruct"]["reported_model"] == ["judge-served"]
    assert results["judge"]["instruct"]["system_fingerprint"] == ["fp_fake_1"]
    fingerprint = results["environment"]["model_fingerprint"]
    assert fingerprint["id"] == "tiny" and fingerprint["served"]["owned_by"] == "fake"
    assert run.generated == 8
    lines = (tmp_path / "out" / "judgments.jsonl").read_text(encoding="utf-8").splitlines()
    assert len(lines) == 8 and all(json.loads(line)["key"] for line in lines)

    before = (judge.completions, model.completions)
    again = run_eval(job(tmp_path / "out", model, judge.url, data))
    assert (judge.completions, model.completions) == before  # no judge request, no generation
    assert again.reused == 8
    assert load_results(tmp_path / "out")["metrics"]["instruct.score"] == score


@pytest.mark.slow
def test_a_judge_that_stops_answering_keeps_every_reply_and_verdict(servers, tmp_path):
    model = servers(model="tiny")
    dying = servers("--die-after", "3")
    data = write_jsonl(tmp_path / "q.jsonl", ROWS)
    with pytest.raises(EvalError, match="judgments.jsonl") as failure:
        run_eval(job(tmp_path / "out", model, dying.url, data))
    assert "8 replies" in str(failure.value)
    assert not (tmp_path / "out" / "results.json").exists()
    kept = (tmp_path / "out" / "judgments.jsonl").read_text(encoding="utf-8").splitlines()
    assert len(kept) == 3
    healthy = servers()
    generated_before = model.completions
    run_eval(job(tmp_path / "out", model, healthy.url, data))  # the same judge model, now answering
    assert healthy.completions == 8 - 3  # only the verdicts that were missing
    assert model.completions == generated_before  # every reply was kept
    assert load_results(tmp_path / "out")["metrics"]["instruct.score"]["n"] == 8


# ---------------------------------------------------------------- FastChat's prompts and aggregation


def fastchat_prompts() -> dict[str, dict]:
    """Read independently of chatvector.eval.judge: the shipped copy of FastChat's file."""
    raw = resources.files("chatvector.eval").joinpath("judge_prompts", "fastchat_judge_prompts.jsonl").read_bytes()
    return {row["name"]: row for row in map(json.loads, raw.splitlines())}


def test_the_shipped_prompts_are_fastchats_file_unchanged():
    raw = resources.files("chatvector.eval").joinpath("judge_prompts", "fastchat_judge_prompts.jsonl").read_bytes()
    assert hashlib.sha256(raw).hexdigest() == "fd283293406d024f44c174b094ef48031d0687a4682fd3a56b29b138f80281b6"
    assert set(fastchat_prompts()) == {
        "single-v1",
        "single-v1-multi-turn",
        "single-math-v1",
        "single-math-v1-multi-turn",
        "pair-v2",
        "pair-v2-multi-turn",
        "pair-math-v1",
        "pair-math-v1-multi-turn",
    }


MT_ROWS = [
    {"id": "w", "lang": "en", "category": "writing", "turns": ["Write a haiku.", "Now in French."]},
    {
        "id": "m",
        "lang": "en",
        "category": "math",
        "turns": ["What is 2+3?", "Times 4?"],
        "reference": ["5", "20"],
    },
    {"id": "s", "lang": "en", "category": "stem", "prompt": "Why is the sky blue?"},
]
REPLIES = {"Write a haiku.": "Autumn moon", "Now in French.": "Lune", "What is 2+3?": "5", "Times 4?": "21"}


def reply(conversation) -> str:
    return REPLIES.get(conversation[-1]["content"], "Rayleigh scattering.")


def expected(name: str, **fields: str) -> list[dict]:
    prompt = fastchat_prompts()[name]
    return [
        {"role": "system", "content": prompt["system_prompt"]},
        {"role": "user", "content": prompt["prompt_template"].format(**fields)},
    ]


def test_every_turn_is_graded_with_fastchats_prompts_and_aggregated_as_mt_bench(tmp_path):
    scores = {"Autumn moon": 8, "Lune": 6, "5": 9, "21": 2, "Rayleigh scattering.": 7}
    sent = []

    def judge(conversation):
        sent.append(conversation)
        user = conversation[1]["content"]
        graded = user.rsplit("### Assistant A:\n", 1)[-1] if "### Assistant A:" in user else user
        answer = next(a for a in sorted(scores, key=len, reverse=True) if a in graded.split("[The End of")[0])
        return f"Rating: [[{scores[answer]}]]"

    result = evaluate(
        ScriptedBackend(reply),
        ["instruct"],
        "en",
        data={"instruct": write_jsonl(tmp_path / "mt.jsonl", MT_ROWS)},
        judge=Judge(ScriptedBackend(judge)),
    )
    assert sorted(map(json.dumps, sent)) == sorted(
        map(
            json.dumps,
            [
                expected("single-v1", question="Write a haiku.", answer="Autumn moon"),
                expected(
                    "single-v1-multi-turn",
                    question_1="Write a haiku.",
                    answer_1="Autumn moon",
                    question_2="Now in French.",
                    answer_2="Lune",
                ),
                expected("single-math-v1", question="What is 2+3?", answer="5", ref_answer_1="5"),
                expected(
                    "single-math-v1-multi-turn",
                    question_1="What is 2+3?",
                    answer_1="5",
                    question_2="Times 4?",
                    answer_2="21",
                    ref_answer_1="5",
                    ref_answer_2="20",
                ),
                expected("single-v1", question="Why is the sky blue?", answer="Rayleigh scattering."),
            ],
        )
    )
    # by hand: turn 1 scores 8, 9, 7; turn 2 scores 6, 2; the average is over all five (FastChat)
    metrics = result.metrics
    assert metrics["instruct.score_turn1"]["value"] == pytest.approx(8.0) and metrics["instruct.score_turn1"]["n"] == 3
    assert metrics["instruct.score_turn2"]["value"] == pytest.approx(4.0) and metrics["instruct.score_turn2"]["n"] == 2
    assert metrics["instruct.score"]["value"] == pytest.approx(32 / 5) and metrics["instruct.score"]["n"] == 5


def test_an_always_A_pairwise_judge_has_consistency_zero_and_only_ties(tmp_path):  # noqa: N802
    source = write_jsonl(tmp_path / "mt.jsonl", MT_ROWS)
    write_results(
        evaluate(ScriptedBackend(lambda c: "OLD"), ["instruct"], "en", data={"instruct": source}), tmp_path / "old"
    )
    sent = []

    def always_a(conversation):
        sent.append(conversation)
        return "[[A]]"

    pairwise = PairwiseJudge(ScriptedBackend(always_a), load_results(tmp_path / "old"), "old")
    result = evaluate(ScriptedBackend(reply), ["instruct"], "en", data={"instruct": source}, pairwise=pairwise)
    consistency = result.metrics["instruct.position_consistency"]
    assert (consistency["value"], consistency["n"]) == (0.0, 5)  # five games: 2 + 2 + 1 turns
    assert consistency["ci_high"] < 0.6  # Wilson's interval says how little five games tell
    assert result.metric("instruct.win_rate") == 0.0 and result.metric("instruct.loss_rate") == 0.0
    assert result.metric("instruct.pairwise_score") == 0.5
    records = {r["id"]: r for r in result.suites["instruct"]["samples"]}
    assert records["m"]["pairwise_turns"] == ["tie", "tie"]
    assert records["m"]["pairwise_templates"] == ["pair-math-v1", "pair-math-v1-multi-turn"]
    assert len(sent) == 10  # both orders of every game
    assert expected("pair-v2", question="Why is the sky blue?", answer_a="Rayleigh scattering.", answer_b="OLD") in sent
    assert expected("pair-v2", question="Why is the sky blue?", answer_a="OLD", answer_b="Rayleigh scattering.") in sent


# ---------------------------------------------------------------- results that stay strict JSON


def test_a_metric_over_nothing_is_null_not_nan(tmp_path):
    result = evaluate(
        ScriptedBackend(lambda c: "An answer."),
        ["instruct"],
        "en",
        data={"instruct": write_jsonl(tmp_path / "q.jsonl", ROWS[:2])},
        judge=Judge(ScriptedBackend(lambda c: "no verdict at all")),
    )
    path = write_results(result, tmp_path / "out")
    text = path.read_text(encoding="utf-8")
    assert "NaN" not in text and "Infinity" not in text
    score = json.loads(text, parse_constant=lambda name: pytest.fail(f"bare {name} in results.json"))["metrics"][
        "instruct.score"
    ]
    assert (score["value"], score["n"], score["unparsed"], score["ci_low"]) == (None, 0, 2, None)
    assert not list((tmp_path / "out").glob("*.partial"))  # written through a temporary file, renamed
