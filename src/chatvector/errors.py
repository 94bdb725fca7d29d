"""The one small error hierarchy of chatvector.

Every problem a user can fix (a wrong path, a corrupt file, mismatched models, an option that does
not fit) is raised as a :class:`ChatVectorError` subclass whose message names the file, tensor or
option and says what to do. The same facts are also kept as fields (``file``, ``tensor``,
``option``) so that programs can act on them without parsing the message. The CLI prints such
errors as one line and exits non-zero; any other exception is a bug and keeps its traceback.
"""

from __future__ import annotations

import os

__all__ = [
    "ChatVectorError",
    "InputError",
    "CheckpointError",
    "PreflightError",
    "OutputError",
    "NonFiniteError",
    "EvalError",
    "MissingExtraError",
    "clashing_options",
]


class ChatVectorError(Exception):
    """Base class for every error chatvector raises on purpose.

    Args:
        message: what went wrong and how to fix it, for people.
        file: the file or directory concerned, if any.
        tensor: the tensor concerned, if any.
        option: the option (``--embeddings``) or recipe key concerned, if any.
    """

    def __init__(
        self,
        message: str,
        *,
        file: str | os.PathLike[str] | None = None,
        tensor: str | None = None,
        option: str | None = None,
    ) -> None:
        super().__init__(message)
        self.file = None if file is None else os.fspath(file)
        self.tensor = tensor
        self.option = option


class InputError(ChatVectorError):
    """A path, hub id, option or recipe given by the user is missing or invalid."""


class CheckpointError(ChatVectorError):
    """A checkpoint on disk is unreadable, corrupt, hostile or of an unsupported format."""


class PreflightError(ChatVectorError):
    """The inputs cannot be merged as asked (shapes, names, configs, vocabularies disagree).

    Carries every problem found (``problems``), so the user sees them all at once.
    """

    def __init__(self, problems: list[str]) -> None:
        self.problems = list(problems)
        lines = "\n".join(f"  - {p}" for p in self.problems)
        super().__init__(f"{len(self.problems)} problem(s) found before merging:\n{lines}")


class OutputError(ChatVectorError):
    """The output cannot be written where asked (exists, is an input, disk full, interrupted)."""


class NonFiniteError(ChatVectorError):
    """A tensor holds NaN or Inf values."""


class EvalError(ChatVectorError):
    """An evaluation cannot run as configured (unknown suite, bad prompt file, backend failure)."""


class MissingExtraError(ChatVectorError):
    """A feature needs an optional dependency that is not installed; the message names the extra."""

    def __init__(self, feature: str, extra: str, missing: str) -> None:
        super().__init__(
            f"{feature} needs the optional dependency {missing!r}; install it with pip install 'chatvector[{extra}]'",
            option=extra,
        )
        self.extra = extra
        self.missing = missing


def clashing_options(
    given: list[str], beside: str, why: str, *, kind: type[ChatVectorError] = InputError
) -> ChatVectorError:
    """The one refusal of options that cannot be given together, before anything runs.

    Args:
        given: the flags the user gave that clash (the first is recorded as ``option``).
        beside: what they clash with (``--recipe``, ``--serve transformers``).
        why: why, and what to do instead.

    Example:
        >>> str(clashing_options(["--ratio"], "--recipe", "edit the recipe instead"))
        '--ratio cannot be combined with --recipe: edit the recipe instead'
    """
    return kind(f"{', '.join(given)} cannot be combined with {beside}: {why}", option=given[0])
