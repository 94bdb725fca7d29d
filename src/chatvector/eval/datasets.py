"""Prompt sets from Hugging Face datasets: ``--data SUITE=hf:NAME[:CONFIG]:SPLIT`` and ``--data-map``.

``hf:NAME`` goes to ``datasets.load_dataset(NAME, CONFIG, split=SPLIT)``, so a hub id, a local
directory of parquet/JSON/CSV files, or the datasets cache (``HF_DATASETS_OFFLINE``,
``HF_HOME``) all work as the library documents; a single local ``.parquet``, ``.json``,
``.jsonl`` or ``.csv`` file is read with the matching builder. Each row becomes a sample of the
suite's schema (docs/eval-data.md): a column named like a field is used as that field, and
``--data-map`` names the others::

    --data-map prompt=question                       # every --data dataset
    --data-map safety:prompt=prompt,harmful=label==unsafe
    --data-map toxicity:prompt=prompt.text           # a field inside a struct column

``--data SUITE=disk:PATH[:SPLIT]`` reads a folder written by ``Dataset.save_to_disk`` or
``DatasetDict.save_to_disk`` (``datasets.load_from_disk``); a ``DatasetDict`` needs the split
unless it has only one.

``field=COLUMN==VALUE`` makes a boolean (``harmful``), ``COLUMN.KEY`` reads inside a struct. Rows
without a mapped ``id`` are numbered; rows without ``lang`` are taken to be in the target language.
"""

from __future__ import annotations

import difflib
import hashlib
import json
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from chatvector.errors import EvalError
from chatvector.extras import require

__all__ = [
    "FIELDS",
    "DatasetSource",
    "SCHEMES",
    "is_dataset_source",
    "parse_source",
    "parse_data_sources",
    "parse_data_map",
    "rows_to_samples",
    "load_dataset_samples",
]

FIELDS = ("id", "lang", "prompt", "turns", "reference", "category", "harmful", "rules", "ideal")
_FILE_BUILDERS = {".parquet": "parquet", ".json": "json", ".jsonl": "json", ".csv": "csv"}


@dataclass(frozen=True)
class DatasetSource:
    """``hf:NAME[:CONFIG]:SPLIT`` or ``disk:PATH[:SPLIT]`` taken apart (``split`` None: the only one)."""

    name: str
    config: str | None
    split: str | None
    scheme: str = "hf"

    def __str__(self) -> str:
        parts = [self.scheme, self.name, *([self.config] if self.config else []), *([self.split] if self.split else [])]
        return ":".join(parts)


SCHEMES = ("hf:", "disk:")


def is_dataset_source(text: str) -> bool:
    """Whether a ``--data`` source names a dataset (``hf:`` or ``disk:``) rather than a JSONL file."""
    return text.startswith(SCHEMES)


def _parse_disk(text: str) -> DatasetSource:
    path, _, split = text.removeprefix("disk:").rpartition(":")
    if not path or Path(path + ":" + split).exists():  # no split given (or a ':' inside the path)
        path, split = text.removeprefix("disk:"), ""
    if not path.strip():
        raise EvalError(f"--data {text!r}: write disk:PATH or disk:PATH:SPLIT", option="--data")
    folder = Path(path)
    if not folder.is_dir():
        raise EvalError(
            f"--data {text!r}: {path} is not a folder; disk: reads what Dataset.save_to_disk wrote "
            "(use hf:FILE:SPLIT for a parquet, JSON or CSV file)",
            option="--data",
        )
    return DatasetSource(path, None, split or None, scheme="disk")


def parse_source(text: str) -> DatasetSource:
    """Parse ``hf:NAME[:CONFIG]:SPLIT`` or ``disk:PATH[:SPLIT]``.

    Raises:
        EvalError: another form (the message shows the right one), or a ``disk:`` path that is not a folder.
    """
    if text.startswith("disk:"):
        return _parse_disk(text)
    parts = text.removeprefix("hf:").split(":")
    if not text.startswith("hf:") or len(parts) not in (2, 3) or not all(p.strip() for p in parts):
        raise EvalError(
            f"--data {text!r}: write hf:NAME:SPLIT or hf:NAME:CONFIG:SPLIT, e.g. "
            "hf:walledai/AdvBench:train or hf:./my-parquet-dir:test, or disk:PATH[:SPLIT] for a save_to_disk folder",
            option="--data",
        )
    if len(parts) == 2:
        return DatasetSource(parts[0], None, parts[1])
    return DatasetSource(parts[0], parts[1], parts[2])


def parse_data_sources(entries: Iterable[str], check_suite: Callable[[str], str]) -> dict[str, str]:
    """``--data`` entries ``SUITE=FILE.jsonl`` or ``SUITE=hf:NAME[:CONFIG]:SPLIT`` → {suite: source}.

    Args:
        check_suite: returns a suite name or raises for an unknown one (the suites' registry
            passes its own; this module loads their data and so cannot import them).
    """
    sources: dict[str, str] = {}
    for entry in entries:
        suite, eq, source = entry.partition("=")
        if not eq or not source:
            raise EvalError(
                f"--data {entry!r}: write SUITE=FILE.jsonl or SUITE=hf:NAME[:CONFIG]:SPLIT",
                option="--data",
            )
        if is_dataset_source(source):
            parse_source(source)  # fail on a malformed source before any generation
        sources[check_suite(suite.strip())] = source
    return sources


def _field(name: str, entry: str) -> str:
    if name not in FIELDS:
        close = difflib.get_close_matches(name, FIELDS, n=1)
        hint = f"; did you mean {close[0]!r}?" if close else ""
        raise EvalError(
            f"--data-map {entry!r}: unknown field {name!r}{hint} Fields: {', '.join(FIELDS)}", option="--data-map"
        )
    return name


def parse_data_map(entries: Iterable[str], check_suite: Callable[[str], str]) -> dict[str | None, dict[str, str]]:
    """``[SUITE:]field=COLUMN[,field=COLUMN...]`` entries → {suite or None (every dataset): {field: column}};
    ``check_suite`` as for :func:`parse_data_sources`."""
    maps: dict[str | None, dict[str, str]] = {}
    for entry in entries:
        head, _, _ = entry.partition("=")
        suite, colon, _ = head.partition(":")
        body = entry[len(suite) + 1 :] if colon else entry
        if colon:
            check_suite(suite.strip())
        target = maps.setdefault(suite.strip() if colon else None, {})
        for pair in body.split(","):
            name, eq, column = pair.partition("=")
            if not eq or not name.strip() or not column.strip():
                raise EvalError(
                    f"--data-map {entry!r}: write [SUITE:]field=COLUMN[,field=COLUMN...], e.g. "
                    "safety:prompt=question,harmful=label==unsafe",
                    option="--data-map",
                )
            target[_field(name.strip(), entry)] = column.strip()
    return maps


def _lookup(row: Mapping[str, Any], path: str, where: str) -> Any:
    value: Any = row
    for i, key in enumerate(path.split(".")):
        if not isinstance(value, Mapping) or key not in value:
            inside = ".".join(path.split(".")[:i]) or "the row"
            known = ", ".join(sorted(value)) if isinstance(value, Mapping) else type(value).__name__
            raise EvalError(
                f"{where}: no column {key!r} in {inside} (it has: {known}); map the field with "
                "--data-map SUITE:field=COLUMN",
                option="--data-map",
            )
        value = value[key]
    return value


def _value(row: Mapping[str, Any], expression: str, where: str) -> Any:
    column, equals, wanted = expression.partition("==")
    value = _lookup(row, column, where)
    return str(value) == wanted if equals else value


def _text(value: Any, field: str, column: str, where: str) -> str:
    if isinstance(value, Mapping):
        raise EvalError(
            f"{where}: column {column!r} holds a struct ({', '.join(sorted(value))}), not text for "
            f"{field!r}; map a field inside it, e.g. --data-map SUITE:{field}={column}."
            f"{next(iter(sorted(value)), 'text')}",
            option="--data-map",
        )
    if isinstance(value, list | tuple):
        raise EvalError(
            f"{where}: column {column!r} holds a list, not text for {field!r}"
            + ("; map it as turns=COLUMN" if field == "prompt" else ""),
            option="--data-map",
        )
    return str(value)


def _reference(value: Any) -> str | list[str] | None:
    if value is None or isinstance(value, str):
        return value
    if isinstance(value, list | tuple):  # one reference per turn (MT-Bench), kept per turn for the judge
        return [str(v) for v in value]
    return str(value)


def _convert(field: str, value: Any, column: str, where: str) -> Any:
    if field in ("id", "lang", "prompt", "category"):
        return _text(value, field, column, where)
    if field == "reference":
        return _reference(value)
    if field in ("turns", "ideal"):
        if not isinstance(value, list | tuple) or not all(isinstance(v, str) for v in value):
            raise EvalError(
                f"{where}: column {column!r} must hold a list of strings for {field!r}", option="--data-map"
            )
        return list(value)
    if field == "harmful":
        if not isinstance(value, bool):
            raise EvalError(
                f"{where}: column {column!r} holds {value!r}, not a boolean, for 'harmful'; compare "
                f"it with a value, e.g. --data-map safety:harmful={column}==unsafe",
                option="--data-map",
            )
        return value
    if isinstance(value, str):  # rules may be stored as JSON text
        from chatvector.eval.schemas import loads

        return loads(value, f"{where}: column {column!r} ('rules')")
    return value


def rows_to_samples(
    rows: Iterable[Mapping[str, Any]], mapping: Mapping[str, str], *, lang: str, where: str
) -> list[dict[str, Any]]:
    """Rows of a dataset → sample dicts of the JSONL schema (``mapping``: field → column expression)."""
    samples = []
    mapped = {expression.partition("==")[0].split(".")[0] for expression in mapping.values()}
    for index, row in enumerate(rows):
        here = f"{where} row {index}"
        sample: dict[str, Any] = {}
        for field in FIELDS:
            # a column is used by name only when no --data-map entry already uses it for another field
            by_name = field if field in row and field not in mapped else None
            expression = mapping.get(field, by_name)
            if expression is not None:
                value = _value(row, expression, here)
                if value is not None:
                    sample[field] = _convert(field, value, expression, here)
        sample.setdefault("id", str(index))
        sample.setdefault("lang", lang)
        if "prompt" not in sample and "turns" not in sample:
            raise EvalError(
                f"{here}: no prompt (columns: {', '.join(sorted(row))}); map one with --data-map "
                "SUITE:prompt=COLUMN or SUITE:turns=COLUMN",
                option="--data-map",
            )
        samples.append(sample)
    return samples


def _load_from_disk(source: DatasetSource) -> Any:
    import datasets

    loaded = datasets.load_from_disk(source.name)
    if not isinstance(loaded, datasets.DatasetDict):
        if source.split is not None and loaded.split is not None and str(loaded.split) != source.split:
            raise EvalError(
                f"--data disk:{source.name}:{source.split}: the folder holds one dataset of split "
                f"{loaded.split!s}; leave the split out",
                option="--data",
            )
        return loaded
    splits = sorted(loaded)
    if source.split is None and len(splits) == 1:
        return loaded[splits[0]]
    if source.split not in loaded:
        raise EvalError(
            f"--data disk:{source.name}: {'no split ' + repr(source.split) if source.split else 'name a split'}; "
            f"the folder holds {', '.join(splits)} (write disk:{source.name}:{splits[0]})",
            option="--data",
        )
    return loaded[source.split]


def _load(source: DatasetSource) -> Any:
    import datasets

    if source.scheme == "disk":
        return _load_from_disk(source)
    path = Path(source.name)
    builder = _FILE_BUILDERS.get(path.suffix.lower()) if path.is_file() else None
    if builder is not None:
        return datasets.load_dataset(builder, data_files={source.split: str(path)}, split=source.split)
    return datasets.load_dataset(source.name, source.config, split=source.split)


def load_dataset_samples(
    text: str, mapping: Mapping[str, str], *, lang: str, suite: str
) -> tuple[list[dict[str, Any]], dict[str, Any]]:
    """Load ``hf:NAME[:CONFIG]:SPLIT`` or ``disk:PATH[:SPLIT]`` and map its rows; returns the sample
    dicts and what to record (source, the dataset's fingerprint, rows, the column map and the SHA-256
    of the mapped samples)."""
    require("loading Hugging Face datasets (--data SUITE=hf:... or disk:...)", "datasets")
    source = parse_source(text)
    where = f"--data {suite}={text}"
    try:
        dataset = _load(source)
    except EvalError:
        raise
    except Exception as error:  # the datasets library raises many types; all mean "could not load it"
        loader = "load_from_disk" if source.scheme == "disk" else "load_dataset"
        reason = str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__
        raise EvalError(
            f"{where}: could not load it with datasets.{loader} ({type(error).__name__}: "
            f"{reason[:300]}); check the name, config and split",
            option="--data",
        ) from None
    samples = rows_to_samples(dataset, mapping, lang=lang, where=where)
    canonical = "\n".join(json.dumps(s, sort_keys=True, ensure_ascii=False) for s in samples)
    details = {
        "source": str(source),
        "dataset_fingerprint": getattr(dataset, "_fingerprint", None),
        "rows": len(samples),
        "columns": sorted(dataset.column_names),
        "data_map": dict(sorted(mapping.items())),
        "sha256": hashlib.sha256(canonical.encode("utf-8")).hexdigest(),
    }
    return samples, details
