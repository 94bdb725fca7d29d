"""Dev and held-out prompts: the search sees the dev split only; the held-out split judges its result.

Each suite's samples (built-in, ``--data`` files or datasets, after ``--limit``) are ordered by the
SHA-256 of (seed, suite, id) and the first ``heldout`` share of them is held out, per category where
the samples carry one: a suite that mixes kinds of prompts (the demo's 400 fact questions and 40
harmful requests, a safety set's categories) keeps each kind's share on both sides, instead of
leaving it to chance how many of a small kind the held-out side gets. The split hence depends only
on the seed, the ids and their categories, not on the order of the file, and the two sides are
disjoint by construction. Each side is written as JSONL files under ``OUT/splits/`` and evaluated as
``--data SUITE=FILE``, so every evaluation is a normal eval run that records its data's hash.

The dev split is also cut into ``stages`` growing prefixes (in the same hash order): a trial is
scored on the first prefix, then the next, so that the optimizer's pruner can stop a hopeless
candidate after part of the prompts.
"""

from __future__ import annotations

import hashlib
import json
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from chatvector.errors import InputError
from chatvector.eval.options import DataOptions

__all__ = ["Splits", "split_ids", "prepare_splits", "sample_row"]


@dataclass(frozen=True)
class Splits:
    """The dev stages (each a :class:`DataOptions` reading its files; the last is the whole dev split),
    the held-out split, and the ids on each side per suite (recorded in search.json)."""

    stages: tuple[DataOptions, ...]
    heldout: DataOptions
    dev_ids: dict[str, list[str]]
    heldout_ids: dict[str, list[str]]
    seed: int
    contents: dict[Path, str] = field(default_factory=dict, repr=False)

    def write(self) -> None:
        """Write the split files (once the search has checked it may use OUT)."""
        for path, text in self.contents.items():
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text(text, encoding="utf-8")

    @property
    def dev(self) -> DataOptions:
        return self.stages[-1]

    def to_json(self) -> dict[str, Any]:
        return {
            "seed": self.seed,
            "rule": "per suite and category, ids ordered by sha256(seed, suite, id); the first share is held out",
            "dev": self.dev_ids,
            "heldout": self.heldout_ids,
            "stages": [[f"{s}" for s in stage.data] for stage in self.stages],
        }


def _order(suite: str, ids: list[str], seed: int) -> list[str]:
    return sorted(ids, key=lambda i: hashlib.sha256(f"{seed}\0{suite}\0{i}".encode()).hexdigest())


def split_ids(
    suite: str, ids: list[str], seed: int, heldout: float, categories: list[str | None] | None = None
) -> tuple[list[str], list[str]]:
    """(dev, held-out) ids of one suite, each in hash order.

    With ``categories`` (one per id, ``None`` for none), the held-out share is taken from each
    category apart (:func:`_quotas`), so every kind of prompt is on both sides in proportion.

    Raises:
        InputError: a side would be empty.
    """
    ordered = _order(suite, ids, seed)
    category_of = dict(zip(ids, categories or [None] * len(ids), strict=True))
    by_category: dict[str | None, list[str]] = {}
    for i in ordered:
        by_category.setdefault(category_of[i], []).append(i)
    quota = _quotas({c: len(m) for c, m in by_category.items()}, round(len(ordered) * heldout), heldout)
    chosen = {i for c, members in by_category.items() for i in members[: quota[c]]}
    held = len(chosen)
    if held < 1 or held >= len(ordered):
        raise InputError(
            f"{suite}: {len(ordered)} prompts cannot be split {1 - heldout:.0%} dev / {heldout:.0%} held out "
            "with prompts on both sides; give more prompts (--data, a larger --limit) or another --heldout",
            option="--heldout",
        )
    return [i for i in ordered if i not in chosen], [i for i in ordered if i in chosen]


def _quotas(sizes: dict[str | None, int], total: int, share: float) -> dict[str | None, int]:
    """How many of each category to hold out: ``total`` in all (the suite's share, as without
    categories), each category its share rounded down, and what is left to the categories with the
    largest remainders (ties to the category met first in hash order, ``sizes`` being in that
    order). Many categories of one or two prompts each thus still give a held-out side."""
    quota = {c: math.floor(n * share) for c, n in sizes.items()}
    by_remainder = sorted(sizes, key=lambda c: -(sizes[c] * share - quota[c]))  # stable: hash order on ties
    for c in by_remainder[: max(0, total - sum(quota.values()))]:
        quota[c] += 1
    return quota


def sample_row(sample: Any) -> dict[str, Any]:
    """A loaded sample as the JSONL row it reads back from (docs/eval-data.md)."""
    row: dict[str, Any] = {"id": sample.id, "lang": sample.lang}
    if sample.history:
        row["history"] = [dict(turn) for turn in sample.history]
    if sample.prompt is not None:
        row["prompt"] = sample.prompt
    if sample.turns:
        row["turns"] = list(sample.turns)
    if sample.reference is not None:
        row["reference"] = list(sample.reference) if isinstance(sample.reference, tuple) else sample.reference
    if sample.rules:
        row["rules"] = list(sample.rules)
    for key in ("category", "harmful"):
        if getattr(sample, key) is not None:
            row[key] = getattr(sample, key)
    if sample.ideal:
        row["ideal"] = list(sample.ideal)
    return {**sample.extra, **row}


def _jsonl(samples: list[Any], keep: set[str]) -> str:
    return "".join(json.dumps(sample_row(s), ensure_ascii=False) + "\n" for s in samples if s.id in keep)


def _options(data: DataOptions, files: dict[str, Path]) -> DataOptions:
    return DataOptions(
        lang=data.lang,
        suite=tuple(files),
        data=tuple(f"{suite}={path}" for suite, path in files.items()),
        toxicity=data.toxicity,
    )


def prepare_splits(data: DataOptions, folder: Path, *, seed: int, heldout: float, stages: int) -> Splits:
    """Load every suite of ``data`` and split it; the split files, under ``folder``, are written by
    :meth:`Splits.write`.

    Raises:
        InputError: a share outside (0, 1), fewer dev prompts than stages, or a suite too small to split.
        EvalError: prompt data that does not load (as ``eval`` reports it).
    """
    from chatvector.eval.datasets import parse_data_map, parse_data_sources
    from chatvector.eval.job import suites_of
    from chatvector.eval.suites import SUITES, check_suite_name

    if not 0 < heldout < 1:
        raise InputError(f"--heldout {heldout:g}: give a share between 0 and 1, e.g. 0.5", option="--heldout")
    sources = parse_data_sources(data.data, check_suite_name)
    maps = parse_data_map(data.data_map, check_suite_name)
    dev_ids: dict[str, list[str]] = {}
    heldout_ids: dict[str, list[str]] = {}
    stage_files: list[dict[str, Path]] = [{} for _ in range(stages)]
    heldout_files: dict[str, Path] = {}
    contents: dict[Path, str] = {}
    for suite in suites_of(data):
        mapping = {**maps.get(None, {}), **maps.get(suite, {})}
        samples = SUITES[suite].load(data.lang, sources.get(suite), data_map=mapping, limit=data.limit).samples
        dev, held = split_ids(suite, [s.id for s in samples], seed, heldout, [s.category for s in samples])
        if len(dev) < stages:
            raise InputError(f"{suite}: {len(dev)} dev prompts cannot fill {stages} stages", option="--stages")
        dev_ids[suite], heldout_ids[suite] = dev, held
        for stage in range(stages):
            path = folder / f"dev-stage-{stage + 1}" / f"{suite}.jsonl"
            contents[path] = _jsonl(samples, set(dev[: math.ceil((stage + 1) * len(dev) / stages)]))
            stage_files[stage][suite] = path
        heldout_files[suite] = folder / "heldout" / f"{suite}.jsonl"
        contents[heldout_files[suite]] = _jsonl(samples, set(held))
    return Splits(
        tuple(_options(data, files) for files in stage_files),
        _options(data, heldout_files),
        dev_ids,
        heldout_ids,
        seed,
        contents,
    )
