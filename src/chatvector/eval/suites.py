"""Suites: versioned prompt files plus how each is scored.

A prompt file is JSONL, one sample per line::

    {"id": "...", "lang": "zh-Hant", "prompt": "...",            # single-turn suites
     "turns": ["...", "..."],                                    # multiturn: user turns in order
     "reference": "...",                                         # instruct: optional reference answer
     "rules": [{"type": "max_words", "value": 30}, ...],         # verifiable / multiturn checks
     "category": "writing"}                                      # optional

Built-in files (in ``chatvector/eval/data``) hold English, Traditional Chinese and Korean prompts
written for this project. Users pass their own file with ``--data SUITE=FILE.jsonl`` or a
Hugging Face dataset file with ``--data SUITE=hf://OWNER/NAME/FILE.jsonl``.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from typing import Any

from chatvector.errors import EvalError
from chatvector.eval.language import normalise_language

SUITES: dict[str, dict[str, Any]] = {
    "instruct": {
        "version": "1",
        "needs_judge": True,
        "about": "open questions graded 1-10 by an LLM judge against a reference",
    },
    "verifiable": {
        "version": "1",
        "needs_judge": False,
        "about": "instructions checked by rules (length, bullets, keywords, JSON, language)",
    },
    "safety": {
        "version": "1",
        "needs_judge": False,
        "about": "harmful requests; refusal rate (judge, else refusal-phrase detector)",
    },
    "toxicity": {
        "version": "1",
        "needs_judge": False,
        "about": "provocative sentence continuations scored by a toxicity scorer",
    },
    "multiturn": {
        "version": "1",
        "needs_judge": False,
        "about": "conversations whose last turn depends on earlier ones, checked by rules",
    },
}
OFFLINE_SUITES = ("verifiable", "safety", "toxicity", "multiturn")


@dataclass(frozen=True)
class Sample:
    id: str
    lang: str
    prompt: str | None = None
    turns: tuple[str, ...] = ()
    reference: str | None = None
    rules: tuple[dict[str, Any], ...] = ()
    category: str | None = None
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def user_turns(self) -> tuple[str, ...]:
        return self.turns or ((self.prompt,) if self.prompt is not None else ())


def check_suite_name(name: str) -> str:
    if name not in SUITES:
        import difflib

        close = difflib.get_close_matches(name, SUITES, n=1)
        hint = f"; did you mean {close[0]!r}?" if close else ""
        raise EvalError(f"unknown suite {name!r}{hint} Known suites: {', '.join(SUITES)}")
    return name


def _read_lines(source: str) -> tuple[str, list[str]]:
    if source.startswith("hf://"):
        from huggingface_hub import hf_hub_download

        parts = source[5:].split("/", 2)
        if len(parts) != 3:
            raise EvalError(f"{source}: write hf://OWNER/NAME/FILE.jsonl")
        try:
            local = hf_hub_download(f"{parts[0]}/{parts[1]}", parts[2], repo_type="dataset")
        except Exception as error:  # hub errors are many; all mean "could not get it"
            raise EvalError(f"{source}: could not fetch it from the hub ({type(error).__name__})") from None
        source = local
    path = Path(source)
    if not path.is_file():
        raise EvalError(f"prompt file {source}: no such file")
    return str(path), path.read_text(encoding="utf-8").splitlines()


def _parse(line: str, where: str) -> Sample:
    try:
        row = json.loads(line)
    except json.JSONDecodeError as error:
        raise EvalError(f"{where}: not valid JSON ({error.msg})") from None
    if not isinstance(row, dict) or "id" not in row or "lang" not in row:
        raise EvalError(f"{where}: each line needs at least 'id' and 'lang'")
    if "prompt" not in row and "turns" not in row:
        raise EvalError(f"{where}: sample {row['id']!r} has neither 'prompt' nor 'turns'")
    known = {"id", "lang", "prompt", "turns", "reference", "rules", "category"}
    return Sample(
        str(row["id"]),
        normalise_language(row["lang"]),
        row.get("prompt"),
        tuple(row.get("turns") or ()),
        row.get("reference"),
        tuple(row.get("rules") or ()),
        row.get("category"),
        {k: v for k, v in row.items() if k not in known},
    )


def load_samples(suite: str, lang: str, source: str | None = None) -> list[Sample]:
    """The samples of ``suite`` in ``lang`` (built-in, or from ``source``)."""
    check_suite_name(suite)
    if source is None:
        where = f"built-in {suite}.jsonl"
        lines = (
            resources.files("chatvector.eval")
            .joinpath("data", f"{suite}.jsonl")
            .read_text(encoding="utf-8")
            .splitlines()
        )
    else:
        where, lines = _read_lines(source)
    samples = [_parse(line, f"{where} line {n}") for n, line in enumerate(lines, 1) if line.strip()]
    wanted = normalise_language(lang)
    chosen = [s for s in samples if s.lang == wanted]
    if not chosen:
        languages = sorted({s.lang for s in samples})
        raise EvalError(f"{where} has no {suite} prompts in {wanted}; it has: {', '.join(languages)}")
    return chosen
