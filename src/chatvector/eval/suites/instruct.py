"""``instruct``: open questions graded 1-10 by an LLM judge against a reference (MT-Bench style),
or compared pairwise with an earlier run's replies (``--judge-against``).

Without a judge the replies are generated and kept (``replies.jsonl``) but not scored.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from chatvector.eval.metrics import MetricSpec
from chatvector.eval.suites.base import Need, Sample, Scoring, Suite, base_record, transcript, when_present

__all__ = ["SUITE", "INSTRUCT_METRICS"]


def _judge_single(records: list[dict[str, Any]], samples: list[Sample], scoring: Scoring) -> None:
    assert scoring.judge is not None
    judgments = scoring.judge.grade([transcript(r) for r in records], [s.reference for s in samples], scoring.lang)
    for record, judgment in zip(records, judgments, strict=True):
        record.update(score=judgment.score, judgment=list(judgment.texts), judge_retried=judgment.retried)


def _judge_pairwise(records: list[dict[str, Any]], samples: list[Sample], scoring: Scoring) -> None:
    judge = scoring.pairwise
    assert judge is not None
    judge.check_language(scoring.lang)
    others = {
        i: other
        for i, r in enumerate(records)
        if (other := judge.other_transcript("instruct", r["id"], r["turns"])) is not None
    }
    paired = sorted(others)
    verdicts = judge.compare(
        [transcript(records[i]) for i in paired],
        [others[i] for i in paired],
        [samples[i].reference for i in paired],
        scoring.lang,
    )
    for i, verdict in zip(paired, verdicts, strict=True):
        records[i].update(
            pairwise=verdict.outcome, pairwise_orders=list(verdict.orders), pairwise_judgment=list(verdict.texts)
        )


def _score_instruct(samples: list[Sample], replies: list[list[str]], scoring: Scoring) -> list[dict[str, Any]]:
    records = [
        {**base_record(s, r, scoring.lang), "reference": s.reference} for s, r in zip(samples, replies, strict=True)
    ]
    if scoring.judge is not None:
        _judge_single(records, samples, scoring)
    if scoring.pairwise is not None:
        _judge_pairwise(records, samples, scoring)
    return records


def _outcome(wanted: str) -> Callable[[dict[str, Any]], list[float]]:
    return lambda r: [] if r["pairwise"] is None else [float(r["pairwise"] == wanted)]


_PAIRWISE_SCORE = {"win": 1.0, "tie": 0.5, "loss": 0.0}

INSTRUCT_METRICS = (
    MetricSpec(
        "instruct.score",
        "mean",
        True,
        when_present("judgment", lambda r: [] if r["score"] is None else [r["score"]]),
        "judge's mean rating 1-10 (MT-Bench style, reference shown where one exists)",
        tags=frozenset({"instruction"}),
    ),
    MetricSpec(
        "instruct.unparsed",
        "count",
        False,
        when_present("judgment", lambda r: [float(r["score"] is None)]),
        "judgments with no [[N]] after one retry (left out of the score)",
    ),
    MetricSpec(
        "instruct.pairwise_score",
        "mean",
        True,
        when_present("pairwise", lambda r: [] if r["pairwise"] is None else [_PAIRWISE_SCORE[r["pairwise"]]]),
        "against --judge-against: 1 win, 0.5 tie, 0 loss (both orders must agree for a win)",
    ),
    MetricSpec(
        "instruct.win_rate",
        "rate",
        True,
        when_present("pairwise", _outcome("win")),
        "replies judged better than the other run's in both orders",
    ),
    MetricSpec(
        "instruct.loss_rate",
        "rate",
        False,
        when_present("pairwise", _outcome("loss")),
        "replies judged worse than the other run's in both orders",
    ),
    MetricSpec(
        "instruct.pairwise_unparsed",
        "count",
        False,
        when_present("pairwise", lambda r: [float(r["pairwise"] is None)]),
        "pairs without a verdict in one of the two orders after one retry (left out)",
    ),
)

SUITE = Suite(
    "instruct",
    "2",
    "open questions graded 1-10 by an LLM judge against a reference",
    INSTRUCT_METRICS,
    _score_instruct,
    needs=frozenset({Need.JUDGE}),
)
