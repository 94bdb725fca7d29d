"""The one way chatvector reads or copies a small file of a model directory (configs, tokenizers,
templates, index files, recipes), and the typed check of every JSON or YAML file it reads.

The rule, for every such file: it must be a regular file (never a FIFO, which would block
forever, nor a device), it must lie inside its model directory once links are followed (a
``merges.txt`` linked to ``/etc/passwd`` must not end up in a published output), and it must be
smaller than a bound. Anything else is refused with an error naming the file. The contents are
then checked against a pydantic schema of the keys chatvector uses, so a wrong type becomes an
:class:`~chatvector.errors.InputError` naming the file and the key, never a traceback later.
"""

from __future__ import annotations

import json
import os
import stat
from pathlib import Path
from typing import Any

import yaml
from pydantic import BaseModel, ValidationError

from chatvector.errors import ChatVectorError, CheckpointError, InputError

__all__ = [
    "MAX_SMALL_FILE",
    "ModelDir",
    "read_bytes",
    "read_text",
    "read_json",
    "read_yaml",
    "validate",
    "is_inside",
    "present",
    "checked_regular_file",
]

# Larger than any real tokenizer.json, config or template (the largest seen are ~35 MB); small
# enough that reading one into memory is harmless.
MAX_SMALL_FILE = 256 * 2**20


def is_inside(path: Path, root: Path) -> bool:
    """Whether ``path``, links followed, lies within ``root`` (a resolved directory)."""
    try:
        path.resolve().relative_to(root)
    except (ValueError, OSError, RuntimeError):  # RuntimeError: a symlink loop (Python < 3.13)
        return False
    return True


def present(path: Path) -> bool:
    """Whether anything (a file, a link, even a dangling one) is at ``path``."""
    return os.path.lexists(path)


def checked_regular_file(
    path: Path, what: str, *, root: Path | None = None, error: type[ChatVectorError] = CheckpointError
) -> os.stat_result:
    """Refuse ``path`` unless it is a regular file inside ``root`` (default: its own directory).

    Returns its ``stat``, taken without opening it (opening a FIFO blocks; opening a device may
    do something).
    """
    path = Path(path)
    where = root if root is not None else path.parent.resolve()
    if not is_inside(path, where):
        raise error(f"{path}: {what} is a link leading outside {where}; refusing to read it", file=path)
    try:
        info = path.stat()
    except FileNotFoundError:
        raise error(f"{path}: no such file ({what})", file=path) from None
    except OSError as problem:
        raise error(f"cannot read {path} ({what}): {problem.strerror or problem}", file=path) from None
    if not stat.S_ISREG(info.st_mode):
        kind = (
            "directory" if stat.S_ISDIR(info.st_mode) else "FIFO" if stat.S_ISFIFO(info.st_mode) else "device or socket"
        )
        raise error(f"{path}: {what} is a {kind}, not a regular file; refusing to read it", file=path)
    return info


def read_bytes(
    path: Path,
    what: str,
    *,
    root: Path | None = None,
    limit: int = MAX_SMALL_FILE,
    error: type[ChatVectorError] = CheckpointError,
) -> bytes:
    """The bytes of a small file, after :func:`checked_regular_file` and a size bound.

    Args:
        path: the file.
        what: what it is, for messages (``"config.json"``, ``"recipe"``).
        root: the resolved directory it must lie in after links are followed (default: the
            directory that holds it).
        limit: the largest size accepted, in bytes.
        error: the error class raised (``CheckpointError`` for model files, ``InputError`` for
            files the user names directly).
    """
    path = Path(path)
    info = checked_regular_file(path, what, root=root, error=error)
    if info.st_size > limit:
        raise error(
            f"{path}: {what} is {info.st_size} bytes, more than the {limit} a real one needs; refusing to read it",
            file=path,
        )
    try:
        # O_NONBLOCK: if the file was swapped for a FIFO since the check, opening must not hang.
        fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | os.O_CLOEXEC | getattr(os, "O_NOCTTY", 0))
    except OSError as problem:
        raise error(f"cannot read {path} ({what}): {problem.strerror or problem}", file=path) from None
    with os.fdopen(fd, "rb") as handle:
        if not stat.S_ISREG(os.fstat(handle.fileno()).st_mode):
            raise error(f"{path}: {what} changed into something that is not a regular file", file=path)
        try:
            data = handle.read(limit + 1)
        except OSError as problem:
            raise error(f"cannot read {path} ({what}): {problem.strerror or problem}", file=path) from None
    if len(data) > limit:
        raise error(f"{path}: {what} grew past {limit} bytes while being read; refusing it", file=path)
    return data


def read_text(
    path: Path,
    what: str,
    *,
    root: Path | None = None,
    limit: int = MAX_SMALL_FILE,
    error: type[ChatVectorError] = CheckpointError,
) -> str:
    """A small UTF-8 text file, read by :func:`read_bytes`'s rule."""
    data = read_bytes(path, what, root=root, limit=limit, error=error)
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as problem:
        raise error(f"{path}: {what} is not UTF-8 text ({problem})", file=path) from None


def _key_path(data: Any, location: tuple[Any, ...]) -> str:
    """The keys and indices of a pydantic error location, without its union-member tags."""
    parts = []
    for part in location:
        if isinstance(data, dict) and part in data:
            data = data[part]
        elif isinstance(data, list) and isinstance(part, int) and part < len(data):
            data = data[part]
        else:
            continue  # "constrained-int", "str", a model name: which union member was tried
        parts.append(str(part))
    return ".".join(parts)


def _schema_error(data: Any, path: Path, what: str, problem: ValidationError) -> InputError:
    first = problem.errors()[0]
    key = _key_path(data, first["loc"]) or what
    if first["type"] == "missing":  # the key is absent from the data, so name it from the location
        key = ".".join(str(part) for part in first["loc"])
    more = f" (and {problem.error_count() - 1} more problem(s))" if problem.error_count() > 1 else ""
    return InputError(
        f"{path}: key {key!r} of {what}: {first['msg'].removeprefix('Value error, ')}{more}", file=path, option=key
    )


def validate(data: Any, schema: type[BaseModel], path: Path, what: str) -> BaseModel:
    """Check ``data`` against ``schema``; a wrong type becomes an InputError naming file and key."""
    try:
        return schema.model_validate(data)
    except ValidationError as problem:
        raise _schema_error(data, path, what, problem) from None
    except RecursionError:
        raise InputError(f"{path}: {what} is nested too deeply", file=path) from None


def read_json(
    path: Path,
    what: str,
    *,
    schema: type[BaseModel] | None = None,
    root: Path | None = None,
    limit: int = MAX_SMALL_FILE,
    error: type[ChatVectorError] = CheckpointError,
) -> dict[str, Any]:
    """Read a JSON object from ``path`` by :func:`read_bytes`'s rule, and check it against ``schema``.

    Returns the object as written (the schema checks the keys chatvector uses; other keys are
    kept untouched so files can be passed on unchanged).
    """
    text = read_text(path, what, root=root, limit=limit, error=error)
    try:
        data = json.loads(text)
    except json.JSONDecodeError as problem:
        raise error(f"{path}: {what} is not valid JSON ({problem})", file=path) from None
    except ValueError as problem:  # an integer of more than 4,300 digits, refused by int()
        raise error(f"{path}: {what} holds a number too long to be real ({str(problem)[:80]})", file=path) from None
    except RecursionError:  # hostile nesting depth; json recurses per level
        raise error(f"{path}: {what} is nested too deeply to be a real {what}", file=path) from None
    if not isinstance(data, dict):
        raise error(f"{path}: {what} must be a JSON object, not {type(data).__name__}", file=path)
    if schema is not None:
        validate(data, schema, path, what)
    return data


class _NoAliasLoader(yaml.SafeLoader):
    """YAML without aliases: a recipe never needs them, and nested aliases make a few bytes
    expand to billions of nodes when walked (the "billion laughs")."""

    def compose_node(self, parent: Any, index: Any) -> Any:
        if self.check_event(yaml.AliasEvent):
            event = self.peek_event()
            raise yaml.composer.ComposerError(None, None, "aliases (*name) are not allowed here", event.start_mark)
        return super().compose_node(parent, index)


def read_yaml(
    path: Path,
    what: str,
    *,
    root: Path | None = None,
    limit: int = 16 * 2**20,
    error: type[ChatVectorError] = InputError,
) -> Any:
    """Parse a small YAML file safely (no tags that build objects, no aliases)."""
    text = read_text(path, what, root=root, limit=limit, error=error)
    try:
        return yaml.load(text, Loader=_NoAliasLoader)  # noqa: S506 - a SafeLoader subclass
    except yaml.YAMLError as problem:
        raise error(f"{path}: {what} is not valid YAML ({problem})", file=path) from None
    except ValueError as problem:  # e.g. an integer of more than 4,300 digits
        raise error(f"{path}: {what} holds a value that cannot be read ({str(problem)[:80]})", file=path) from None
    except RecursionError:
        raise error(f"{path}: {what} is nested too deeply", file=path) from None


class ModelDir:
    """The small files of one model directory, each read by this module's rule.

    Args:
        path: the directory.
        root: the resolved directory its files must lie in after links are followed (a hub
            snapshot's files link into their repository's cache; default: the directory itself).
    """

    def __init__(self, path: Path, root: Path | None = None) -> None:
        self.path = Path(path)
        self.root = root or self.path.resolve()

    def has(self, name: str) -> bool:
        return present(self.path / name)

    def names_in(self, folder: str) -> list[str]:
        """The entries of a subfolder (``[]`` when there is none), which must itself be a real
        directory inside the model."""
        path = self.path / folder
        if not present(path):
            return []
        if not is_inside(path, self.root) or not path.is_dir():
            raise CheckpointError(
                f"{path}: {folder} is not a directory inside {self.root}; refusing to read it", file=path
            )
        return sorted(entry.name for entry in path.iterdir())

    def bytes(self, name: str) -> bytes | None:
        """The file's bytes, or None when there is no such file."""
        return read_bytes(self.path / name, name, root=self.root) if self.has(name) else None

    def text(self, name: str) -> str | None:
        return read_text(self.path / name, name, root=self.root) if self.has(name) else None

    def json(self, name: str, schema: type[BaseModel] | None = None) -> dict[str, Any] | None:
        """The file's JSON object, checked against ``schema``, or None when there is no such file."""
        return read_json(self.path / name, name, schema=schema, root=self.root) if self.has(name) else None
