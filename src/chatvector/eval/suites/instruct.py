"""``instruct``: open questions graded 1-10 by an LLM judge, turn by turn, as MT-Bench grades
them (FastChat's prompts, :mod:`chatvector.eval.judge`), or compared pairwise with an earlier run's
replies (``--judge-against``); aggregated as MT-Bench aggregates (FastChat's ``show_result.py``).

Without a judge the replies are generated and kept (``replies.jsonl``) but not scored.

Single grading: every graded turn's score is a unit; ``instruct.score_turn1`` and
``instruct.score_turn2`` are the per-turn means and ``instruct.score`` is the mean over every
parsed turn score, FastChat's "Average" (the mean of the two turn means when both turns have the
same number of parsed scores, as on a complete MT-Bench run). Unparsed judgments (FastChat's
score -1) are left out of the means and counted in each metric's ``unparsed``.

Pairwise judging: each graded turn is one game judged in both orders; a game is won only when
both orders agree, and orders that disagree make a tie (FastChat's rule). The win, loss and
pairwise scores count games, and ``instruct.position_consistency`` is the share of games whose
two orders named the same winner (or both a tie): a judge that always picks the first answer
scores 0 there, and every game it judged is a tie.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any

from chatvector.eval.metrics import MetricSpec
from chatvector.eval.suites.base import Need, Sample, Scoring, Suite, base_record, transcript

if TYPE_CHECKING:
    from chatvector.eval.judge import Judge, PairwiseJudge

__all__ = ["SUITE", "INSTRUCT_METRICS", "judge_single", "judge_pairwise"]

_PAIRWISE_SCORE = {"win": 1.0, "tie": 0.5, "loss": 0.0}


def judge_single(records: list[dict[str, Any]], samples: list[Sample], judge: Judge) -> None:
    """Grade every turn of every record; the record keeps each turn's score, texts and prompt."""
    judgments = judge.grade(
        [transcript(r) for r in records], [s.reference for s in samples], [s.category for s in samples]
    )
    for record, judgment in zip(records, judgments, strict=True):
        record.update(
            score=judgment.score,
            turn_scores=[t.score for t in judgment.turns],
            judgment=[list(t.texts) for t in judgment.turns],
            judge_templates=[t.template for t in judgment.turns],
            judge_retried=judgment.retried,
        )


def judge_pairwise(records: list[dict[str, Any]], samples: list[Sample], judge: PairwiseJudge, lang: str) -> None:
    """Judge every record that the other run also answered, turn by turn, in both orders."""
    judge.check_language(lang)
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
        [samples[i].category for i in paired],
    )
    for i, verdict in zip(paired, verdicts, strict=True):
        records[i].update(
            pairwise=verdict.outcome,
            pairwise_turns=[g.outcome for g in verdict.games],
            pairwise_orders=[list(g.orders) for g in verdict.games],
            pairwise_consistent=[g.consistent for g in verdict.games],
            pairwise_judgment=[list(g.texts) for g in verdict.games],
            pairwise_templates=[g.template for g in verdict.games],
        )


Units = Callable[[dict[str, Any]], "Sequence[float | None] | None"]


def _turn_scores(turn: int | None) -> Units:
    """Parsed scores (None: unparsed) of one turn, or of every turn."""

    def units(record: dict[str, Any]) -> list[float | None] | None:
        if "turn_scores" not in record:
            return None
        scores: list[float | None] = record["turn_scores"]
        if turn is None:
            return list(scores)
        return [scores[turn - 1]] if len(scores) >= turn else None

    return units


def _games(value: Callable[[str], float]) -> Units:
    def units(record: dict[str, Any]) -> list[float | None] | None:
        if "pairwise_turns" not in record:
            return None
        return [None if outcome is None else value(outcome) for outcome in record["pairwise_turns"]]

    return units


def _consistency(record: dict[str, Any]) -> list[float | None] | None:
    if "pairwise_consistent" not in record:
        return None
    return [None if c is None else float(c) for c in record["pairwise_consistent"]]


def _unparsed_count(key: str) -> Units:
    return lambda r: [float(v is None) for v in r[key]] if key in r else None


INSTRUCT_METRICS = (
    MetricSpec(
        "instruct.score",
        "mean",
        True,
        _turn_scores(None),
        "judge's mean rating 1-10 over every graded turn (MT-Bench's average; FastChat's prompts)",
        tags=frozenset({"instruction"}),
        judged=True,
    ),
    MetricSpec(
        "instruct.score_turn1", "mean", True, _turn_scores(1), "judge's mean rating of the first turn", judged=True
    ),
    MetricSpec(
        "instruct.score_turn2",
        "mean",
        True,
        _turn_scores(2),
        "judge's mean rating of the second turn, graded with the conversation in view",
        judged=True,
    ),
    MetricSpec(
        "instruct.unparsed",
        "count",
        False,
        _unparsed_count("turn_scores"),
        "turn judgments with no [[N]] after one retry, or unreadable (left out of the scores)",
    ),
    MetricSpec(
        "instruct.pairwise_score",
        "mean",
        True,
        _games(lambda o: _PAIRWISE_SCORE[o]),
        "against --judge-against: 1 win, 0.5 tie, 0 loss per turn (a win needs both orders)",
        judged=True,
    ),
    MetricSpec(
        "instruct.win_rate",
        "rate",
        True,
        _games(lambda o: float(o == "win")),
        "turns judged better than the other run's in both orders",
        judged=True,
    ),
    MetricSpec(
        "instruct.loss_rate",
        "rate",
        False,
        _games(lambda o: float(o == "loss")),
        "turns judged worse than the other run's in both orders",
        judged=True,
    ),
    MetricSpec(
        "instruct.position_consistency",
        "rate",
        True,
        _consistency,
        "pairwise games whose two orders named the same winner (or both a tie); low: position bias",
        judged=True,
    ),
    MetricSpec(
        "instruct.pairwise_unparsed",
        "count",
        False,
        _unparsed_count("pairwise_turns"),
        "games without a verdict in one of the two orders after one retry (left out)",
    ),
)


def _score_instruct(samples: list[Sample], replies: list[list[str]], scoring: Scoring) -> list[dict[str, Any]]:
    records = [
        {**base_record(s, r, scoring.lang), "reference": s.reference} for s, r in zip(samples, replies, strict=True)
    ]
    if scoring.judge is not None:
        judge_single(records, samples, scoring.judge)
    if scoring.pairwise is not None:
        judge_pairwise(records, samples, scoring.pairwise, scoring.lang)
    return records


SUITE = Suite(
    "instruct",
    "3",
    "open questions graded 1-10 per turn by an LLM judge (MT-Bench's prompts and aggregation)",
    INSTRUCT_METRICS,
    _score_instruct,
    needs=frozenset({Need.JUDGE}),
)
