"""Typed schemas of every JSON and JSONL file, and every HTTP reply, the evaluation reads.

In the spirit of :mod:`chatvector.io.schemas`: each schema lists the keys the evaluation uses,
with the types it relies on (strict: ``"reply": 12345`` is not a reply, ``"prompt": {}`` is not a
prompt); other keys are kept. :func:`check` turns a mismatch into one :class:`EvalError` naming
the file, the line and the field, and :func:`json_lines` reads a JSONL file line by line from its
bytes, so a line cut inside a multi-byte character (a run killed mid-write) is one bad line, not
a ``UnicodeDecodeError`` for the whole file.

Files and replies covered: eval data rows (``--data FILE.jsonl``, built-in data, mapped dataset
rows), ``replies.jsonl``, ``judgments.jsonl``, ``results.json`` (``compare``,
``--judge-against``) and an endpoint's chat completion (the judge's and the served model's).
"""

from __future__ import annotations

import json
import logging
import os
from collections.abc import Iterator
from pathlib import Path
from typing import IO, Annotated, Any, Literal, TypeVar

from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from chatvector.errors import EvalError

__all__ = [
    "AppendLog",
    "HistoryTurn",
    "SampleRow",
    "ReplyRecord",
    "JudgmentRecord",
    "ChatCompletion",
    "ModelList",
    "ResultsFile",
    "check",
    "loads",
    "json_lines",
    "decode",
]

M = TypeVar("M", bound=BaseModel)
Text = Annotated[str, Field(max_length=10_000_000)]


class _Schema(BaseModel):
    model_config = ConfigDict(extra="allow", strict=True, frozen=True)


class HistoryTurn(_Schema):
    """One given turn of a sample's ``history``: who said it, and what."""

    role: Literal["user", "assistant"]
    content: Text


class SampleRow(_Schema):
    """One sample of eval data (docs/eval-data.md): an ``id`` and a ``prompt`` or ``turns``."""

    id: str | int
    lang: str | None = None
    # turns given, not generated, before the prompt: user and assistant in turn, ending with the assistant
    history: list[HistoryTurn] | None = None
    prompt: Text | None = None
    turns: list[Text] | None = Field(None, min_length=1)
    # one reference for the last turn, or one per turn (MT-Bench's form)
    reference: Text | list[Text] | None = None
    rules: list[dict[str, Any]] | None = None
    category: str | None = None
    harmful: bool | None = None
    ideal: list[Text] | None = None

    @model_validator(mode="after")
    def _asks_something(self) -> SampleRow:
        if self.prompt is None and self.turns is None:
            raise ValueError("a sample needs a 'prompt' (text) or 'turns' (a list of texts)")
        roles = [turn.role for turn in self.history or ()]
        if roles and roles != ["user", "assistant"] * (len(roles) // 2):
            raise ValueError(
                "'history' must alternate user and assistant turns, from a user turn to an assistant one "
                f"(the prompt follows it), not {' → '.join(roles)}"
            )
        return self


class ReplyRecord(_Schema):
    """One line of ``OUT/replies.jsonl``."""

    suite: str
    id: str
    turn: int = Field(ge=0, le=10_000)
    key: str
    reply: str
    finish: Literal["stop", "length"] | None = None  # why the reply ended, where the backend said


class JudgmentRecord(_Schema):
    """One line of ``OUT/judgments.jsonl``: the judge's answers to one request, found by ``key``."""

    key: str
    texts: list[str]
    unreadable: bool = False
    model: str | None = None
    system_fingerprint: str | None = None


class _Message(_Schema):
    content: str | None = None


class _Choice(_Schema):
    message: _Message


class ChatCompletion(_Schema):
    """An OpenAI-compatible ``/chat/completions`` reply: the content must be text (or null)."""

    choices: list[_Choice] = Field(min_length=1)
    model: str | None = None
    system_fingerprint: str | None = None


class _ModelEntry(_Schema):
    id: str


class ModelList(_Schema):
    """``GET /models``: what the server says it serves."""

    data: list[_ModelEntry]


class _MetricEntry(_Schema):
    value: float | None
    n: int | None = None
    ci_low: float | None = None
    ci_high: float | None = None
    higher_is_better: bool = True
    kind: str | None = None


class _SampleRecord(_Schema):
    id: str
    turns: list[str] = []
    replies: list[str] = []


class _SuiteEntry(_Schema):
    samples: list[_SampleRecord]
    version: str | None = None
    sha256: str | None = None


class ResultsFile(_Schema):
    """``results.json`` as ``compare`` and ``--judge-against`` read it."""

    lang: str
    metrics: dict[str, _MetricEntry]
    suites: dict[str, _SuiteEntry]
    model: str | None = None
    data: dict[str, dict[str, Any]] = {}


def _where(error: Any) -> str:
    location = ".".join(str(part) for part in error.get("loc", ()))
    return f"field {location!r}: " if location else ""


def check(schema: type[M], data: Any, where: str, *, file: str | Path | None = None) -> M:
    """``data`` as ``schema``; a mismatch is an :class:`EvalError` naming ``where`` and the field."""
    try:
        return schema.model_validate(data)
    except ValidationError as problem:
        first = problem.errors(include_url=False)[0]
        more = f" (and {problem.error_count() - 1} more)" if problem.error_count() > 1 else ""
        message = str(first.get("msg", "invalid")).removeprefix("Value error, ")
        raise EvalError(f"{where}: {_where(first)}{message}{more}", file=file) from None
    except RecursionError:
        raise EvalError(f"{where}: nested too deeply", file=file) from None


def loads(text: str | bytes, where: str, *, file: str | Path | None = None, nan_as_null: bool = False) -> Any:
    """JSON from ``text``, with a clear error naming ``where``; strict (no NaN or Infinity) unless
    ``nan_as_null`` (older results.json files hold a bare NaN for a metric over nothing)."""
    try:
        return json.loads(text, parse_constant=_as_null if nan_as_null else _no_constant)
    except json.JSONDecodeError as problem:
        raise EvalError(f"{where}: not valid JSON ({problem.msg} at column {problem.colno})", file=file) from None
    except UnicodeDecodeError:
        raise EvalError(f"{where}: not UTF-8 text", file=file) from None
    except (ValueError, RecursionError) as problem:  # NaN, a 5,000-digit integer, hostile nesting
        raise EvalError(f"{where}: not valid JSON ({str(problem)[:80]})", file=file) from None


def _as_null(name: str) -> None:
    return None


def _no_constant(name: str) -> Any:
    raise ValueError(f"{name} is not JSON")


def decode(raw: bytes, what: str) -> str:
    """``raw`` as UTF-8; otherwise an error naming the line and column of the first bad byte."""
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError as problem:
        line = raw.count(b"\n", 0, problem.start) + 1
        column = problem.start - (raw.rfind(b"\n", 0, problem.start) + 1) + 1
        raise EvalError(
            f"{what} line {line}: not UTF-8 text (byte 0x{raw[problem.start]:02x} at column {column}); "
            "save the file as UTF-8",
            file=what,
        ) from None


def json_lines(path: Path) -> Iterator[tuple[int, bytes]]:
    """(line number, bytes) of every non-blank line of ``path``; bytes, so one torn line cannot
    spoil the decoding of the others."""
    for number, line in enumerate(path.read_bytes().split(b"\n"), 1):
        if line.strip():
            yield number, line


_log = logging.getLogger(__name__)
_Record = TypeVar("_Record", bound=BaseModel)


class AppendLog:
    """An append-only JSONL file of records (the replies cache, the verdict cache).

    Each appended line is flushed at once, so a killed run keeps every record it finished; a run
    killed while writing leaves a torn last line (perhaps cut inside a character), which reading
    skips with a warning and appending first ends, so the next record starts on its own line.
    """

    def __init__(self, path: Path) -> None:
        self.path = path
        self._handle: IO[str] | None = None

    def records(self, model: type[_Record]) -> Iterator[_Record]:
        """Every line of the file that is a complete ``model`` record, in order."""
        if not self.path.exists():
            return
        for number, line in json_lines(self.path):
            where = f"{self.path} line {number}"
            try:
                yield check(model, loads(line, where), where)
            except EvalError as problem:
                _log.warning("%s: not a complete record; ignored", problem)

    def append(self, line: str) -> None:
        """Append one record's JSON text as a line, flushed."""
        if self._handle is None:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            torn = self.path.exists() and self.path.stat().st_size > 0 and not self.path.read_bytes().endswith(b"\n")
            self._handle = self.path.open("a", encoding="utf-8")
            if torn:
                self._handle.write("\n")
        self._handle.write(line + "\n")
        self._handle.flush()

    def close(self) -> None:
        """Flush to disk and close (a later append opens the file again)."""
        if self._handle is not None:
            self._handle.flush()
            os.fsync(self._handle.fileno())
            self._handle.close()
            self._handle = None
