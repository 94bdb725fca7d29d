"""What every suite shares: samples and where they came from, what scoring may use, the record
every suite keeps per sample, and :class:`Suite`, the declaration each suite module makes.

A suite module (``verifiable.py``, ``safety.py``, ...) declares one :class:`Suite`: its name and
version, its data (built-in ``chatvector/eval/data/<lang>/<suite>.jsonl``, replaced with
``--data SUITE=FILE.jsonl`` or ``--data SUITE=hf:NAME[:CONFIG]:SPLIT``), its scorer (replies → one
record per sample, what results.json keeps), its metrics
(:class:`~chatvector.eval.metrics.MetricSpec`, each aggregated with n and a 95% interval) and what
scoring needs besides the replies (:class:`Need`). The registry (:mod:`chatvector.eval.suites`)
lists the declarations; the evaluation reads them and names no suite.

The data schema is in docs/eval-data.md. Every run records what it read: the file's SHA-256 (or
the dataset's fingerprint and the mapped samples' hash).
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from enum import Enum
from importlib import resources
from pathlib import Path
from typing import Any

from chatvector.errors import EvalError
from chatvector.eval.judge import Judge, PairwiseJudge, SafetyJudge
from chatvector.eval.language import detect_language, normalise_language
from chatvector.eval.metrics import Metric, MetricSpec
from chatvector.eval.rules import check_rule
from chatvector.eval.schemas import SampleRow, check, decode, loads
from chatvector.eval.toxicity import ToxicityScorer

__all__ = [
    "Need",
    "Sample",
    "SuiteData",
    "Scoring",
    "Scorer",
    "Suite",
    "load_suite_data",
    "builtin_languages",
    "base_record",
    "sample_from_row",
    "last_reply",
    "transcript",
    "when_present",
]


class Need(Enum):
    """What a suite's scoring needs besides the replies; the evaluation provides each one asked for.

    - ``JUDGE``: an LLM judge (``--judge-url``, or ``--judge-against`` for pairwise judging); without
      one the replies are generated and kept but not scored (the run says so).
    - ``TOXICITY_SCORER``: the toxicity classifier ``--toxicity`` names (lexicon, perspective, hf:PATH),
      built once per run for the suites that need it.
    """

    JUDGE = "judge"
    TOXICITY_SCORER = "toxicity scorer"


@dataclass(frozen=True)
class Sample:
    """One prompt (or conversation) of a suite, as in docs/eval-data.md."""

    id: str
    lang: str
    prompt: str | None = None
    turns: tuple[str, ...] = ()
    reference: str | tuple[str, ...] | None = None  # one per turn in MT-Bench data
    rules: tuple[dict[str, Any], ...] = ()
    category: str | None = None
    harmful: bool | None = None
    ideal: tuple[str, ...] = ()
    extra: dict[str, Any] = field(default_factory=dict)
    history: tuple[dict[str, str], ...] = ()  # given turns before the user turns (not generated)

    @property
    def user_turns(self) -> tuple[str, ...]:
        return self.turns or ((self.prompt,) if self.prompt is not None else ())


@dataclass(frozen=True)
class SuiteData:
    """A suite's samples in one language and where they came from (recorded in results.json)."""

    samples: list[Sample]
    source: str
    sha256: str
    details: dict[str, Any] = field(default_factory=dict)

    def describe(self) -> dict[str, Any]:
        return {"source": self.source, "sha256": self.sha256, "n": len(self.samples), **self.details}


@dataclass(frozen=True)
class Scoring:
    """What scoring may use besides the replies: the target language, judges, a toxicity scorer,
    and why each reply of the suite being scored ended (``finishes``: per sample, per reply,
    ``stop``, ``length`` or None where the backend did not say; empty when nobody recorded them)."""

    lang: str
    judge: Judge | None = None
    pairwise: PairwiseJudge | None = None
    safety_judge: SafetyJudge | None = None
    toxicity: ToxicityScorer | None = None
    finishes: tuple[tuple[str | None, ...], ...] = ()

    def finish(self, sample: int, reply: int) -> str | None:
        """Why reply ``reply`` of sample ``sample`` ended (None: not known)."""
        if sample < len(self.finishes) and reply < len(self.finishes[sample]):
            return self.finishes[sample][reply]
        return None


# ---------------------------------------------------------------- loading


_KNOWN_KEYS = {"id", "lang", "history", "prompt", "turns", "reference", "rules", "category", "harmful", "ideal"}


def _check_rules(rules: list[dict[str, Any]] | None, where: str) -> tuple[dict[str, Any], ...]:
    for rule in rules or ():
        try:
            check_rule("", rule)  # validates the rule's type and fields before any generation
        except EvalError as error:
            raise EvalError(f"{where}: {error}") from None
    return tuple(rules or ())


def sample_from_row(row: Any, lang: str, where: str) -> Sample:
    """A :class:`Sample` from one JSON object, checked against :class:`~chatvector.eval.schemas.SampleRow`
    (``lang`` defaults to the target language)."""
    if not isinstance(row, dict) or "id" not in row:
        raise EvalError(f"{where}: each sample needs at least an 'id' (and a 'prompt' or 'turns')")
    if "prompt" not in row and "turns" not in row:
        raise EvalError(f"{where}: sample {row['id']!r} has neither 'prompt' nor 'turns'")
    harmful = row.get("harmful")
    if harmful is not None and not isinstance(harmful, bool):
        raise EvalError(f"{where}: 'harmful' must be true or false, not {harmful!r}")
    checked = check(SampleRow, row, where, file=where.split(" line ")[0])
    reference = checked.reference
    return Sample(
        id=str(checked.id),
        lang=normalise_language(checked.lang or lang),
        prompt=checked.prompt,
        turns=tuple(checked.turns or ()),
        reference=(tuple(reference) or None) if isinstance(reference, list) else reference,
        rules=_check_rules(checked.rules, where),
        category=checked.category,
        harmful=checked.harmful,
        ideal=tuple(checked.ideal or ()),
        extra={k: v for k, v in row.items() if k not in _KNOWN_KEYS},
        history=tuple({"role": turn.role, "content": turn.content} for turn in checked.history or ()),
    )


def _parse_lines(raw: bytes, where: str, lang: str) -> list[Sample]:
    text = decode(raw, where)
    samples = []
    for number, line in enumerate(text.splitlines(), 1):
        if line.strip():
            row = loads(line, f"{where} line {number}", file=where)
            samples.append(sample_from_row(row, lang, f"{where} line {number}"))
    return samples


def builtin_languages() -> list[str]:
    """Languages with built-in prompt sets."""
    root = resources.files("chatvector.eval").joinpath("data")
    return sorted(entry.name for entry in root.iterdir() if entry.is_dir() and not entry.name.startswith("_"))


def _builtin(suite: str, lang: str) -> tuple[str, bytes]:
    entry = resources.files("chatvector.eval").joinpath("data", lang, f"{suite}.jsonl")
    if not entry.is_file():
        raise EvalError(
            f"no built-in {suite} prompts in {lang}; built-in languages: "
            f"{', '.join(builtin_languages())}. Give your own with --data {suite}=FILE.jsonl",
            option="--lang",
        )
    return f"built-in {lang}/{suite}.jsonl", entry.read_bytes()


def _read_file(source: str) -> bytes:
    path = Path(source)
    if not path.is_file():
        raise EvalError(
            f"prompt file {source}: no such file (give SUITE=FILE.jsonl or SUITE=hf:NAME:SPLIT)",
            file=source,
            option="--data",
        )
    return path.read_bytes()


def _check_ids(samples: list[Sample], where: str) -> None:
    seen: set[str] = set()
    for sample in samples:
        if sample.id in seen:
            raise EvalError(
                f"{where}: id {sample.id!r} appears twice; ids pair prompts across runs, so each must be unique"
            )
        seen.add(sample.id)


def load_suite_data(
    suite: str,
    lang: str,
    source: str | None = None,
    *,
    data_map: Mapping[str, str] | None = None,
    limit: int | None = None,
) -> SuiteData:
    """The samples of ``suite`` in ``lang``: built-in, from a JSONL file, or from ``hf:NAME[:CONFIG]:SPLIT``.

    Args:
        data_map: field → column for a dataset (see :mod:`chatvector.eval.datasets`).
        limit: keep ``limit`` samples spread evenly over the file (files are grouped by category,
            so the first ones would all be alike; the choice is deterministic).
    """
    wanted = normalise_language(lang)
    details: dict[str, Any] = {}
    if source is not None and source.startswith(("hf:", "disk:")):
        from chatvector.eval.datasets import load_dataset_samples

        rows, details = load_dataset_samples(source, data_map or {}, lang=wanted, suite=suite)
        where = f"--data {suite}={source}"
        samples = [sample_from_row(r, wanted, f"{where} row {i}") for i, r in enumerate(rows)]
        sha, where = details.pop("sha256"), details.pop("source")
    else:
        where, raw = _builtin(suite, wanted) if source is None else (source, _read_file(source))
        samples = _parse_lines(raw, where, wanted)
        sha = hashlib.sha256(raw).hexdigest()
    chosen = [s for s in samples if s.lang == wanted]
    if not chosen:
        languages = sorted({s.lang for s in samples}) or ["no samples"]
        raise EvalError(f"{where} has no {suite} prompts in {wanted}; it has: {', '.join(languages)}")
    _check_ids(chosen, where)
    if limit is not None and limit < len(chosen):
        details["limit"] = limit
        chosen = [chosen[i * len(chosen) // limit] for i in range(limit)]
    return SuiteData(chosen, where, sha, details)


# ---------------------------------------------------------------- records


def base_record(sample: Sample, replies: list[str], lang: str) -> dict[str, Any]:
    """What every suite records of a sample: the prompt, the replies and each reply's language.

    ``in_target`` holds, per reply, how much of its prose is in the target language and script, 0–1
    (``LanguageGuess.target_share``: mixed Chinese scripts score below 1); None for a reply with no
    prose, such as "5" or a bare JSON object: it tells nothing about language.
    """
    guesses = [detect_language(reply) for reply in replies]
    return {
        "id": sample.id,
        "category": sample.category,
        "turns": list(sample.user_turns),
        "replies": replies,
        "reply_languages": [g.language for g in guesses],
        "in_target": [None if g.language == "none" else g.target_share(lang) for g in guesses],
    }


def last_reply(replies: list[str]) -> str:
    """The conversation's last reply (what single-turn scorers read), "" when there is none."""
    return replies[-1] if replies else ""


def transcript(record: dict[str, Any]) -> list[tuple[str, str]]:
    """(user turn, reply) pairs of a record, what judges read."""
    return list(zip(record["turns"], record["replies"], strict=True))


def when_present(
    key: str, units: Callable[[dict[str, Any]], list[float]]
) -> Callable[[dict[str, Any]], list[float] | None]:
    """``units`` for records that have ``key``; the metric does not apply to the others."""
    return lambda record: units(record) if key in record else None


Scorer = Callable[[list[Sample], list[list[str]], Scoring], list[dict[str, Any]]]


@dataclass(frozen=True)
class Suite:
    """One suite, declared: everything the evaluation needs to load, score and report it.

    Attributes:
        name: what ``--suite`` and ``--data SUITE=...`` call it; metrics are ``NAME.METRIC``.
        version: bumped when the data or the scoring changes, so results say which they came from.
        about: one line for help texts, errors and docs.
        metrics: what it reports, aggregated from the records its scorer writes.
        scorer: replies → one record per sample (see :func:`base_record`).
        needs: what scoring needs besides the replies (:class:`Need`).
        builtin_data: it has built-in prompts; without, it runs only on ``--data SUITE=...`` and
            is left out of the default suites.
        check_samples: checks of the suite's own fields on loaded samples (``samples, where``),
            raising :class:`EvalError` before any reply is generated.
    """

    name: str
    version: str
    about: str
    metrics: tuple[MetricSpec, ...]
    scorer: Scorer
    needs: frozenset[Need] = frozenset()
    builtin_data: bool = True
    check_samples: Callable[[list[Sample], str], None] | None = None

    @property
    def needs_judge(self) -> bool:
        """Scored only with an LLM judge (left out of the default suites)."""
        return Need.JUDGE in self.needs

    def check_source(self, source: str | None) -> None:
        """Refuse to run without prompts: a suite without built-in ones needs ``--data SUITE=...``.

        Raises:
            EvalError: ``source`` is None and the suite has no built-in prompts.
        """
        if source is None and not self.builtin_data:
            raise EvalError(
                f"the {self.name} suite has no built-in prompts; give them with --data {self.name}=FILE.jsonl "
                f"(it is for {self.about})",
                option="--data",
            )

    def load(
        self,
        lang: str,
        source: str | None = None,
        *,
        data_map: Mapping[str, str] | None = None,
        limit: int | None = None,
    ) -> SuiteData:
        """This suite's samples in ``lang`` (see :func:`load_suite_data`), checked by ``check_samples``.

        Raises:
            EvalError: no ``source`` for a suite without built-in prompts, data that does not load,
                or samples its check refuses.
        """
        self.check_source(source)
        data = load_suite_data(self.name, lang, source, data_map=data_map, limit=limit)
        if self.check_samples is not None:
            self.check_samples(data.samples, data.source)
        return data

    def score(self, samples: list[Sample], replies: list[list[str]], scoring: Scoring) -> list[dict[str, Any]]:
        """One record per sample: prompt, replies, reply languages and this suite's verdicts."""
        return self.scorer(samples, replies, scoring)

    def aggregate(self, records: list[dict[str, Any]], seed: int = 0) -> list[Metric]:
        """The suite's metrics over ``records`` (those that apply), each with n and its interval."""
        return [m for spec in self.metrics if (m := spec.compute(records, seed)) is not None]
