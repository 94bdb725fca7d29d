"""The one small error hierarchy of chatvector.

Every problem a user can fix (a wrong path, a corrupt file, mismatched models, an option that does
not fit) is raised as a :class:`ChatVectorError` subclass whose message names the file, tensor or
option and says what to do. The CLI prints such errors as one line and exits non-zero; any other
exception is a bug and keeps its traceback.
"""

from __future__ import annotations

__all__ = [
    "ChatVectorError",
    "InputError",
    "CheckpointError",
    "PreflightError",
    "OutputError",
    "NonFiniteError",
    "EvalError",
]


class ChatVectorError(Exception):
    """Base class for every error chatvector raises on purpose."""


class InputError(ChatVectorError):
    """A path, hub id, option or recipe given by the user is missing or invalid."""


class CheckpointError(ChatVectorError):
    """A checkpoint on disk is unreadable, corrupt, hostile or of an unsupported format."""


class PreflightError(ChatVectorError):
    """The inputs cannot be merged as asked (shapes, names, configs, vocabularies disagree).

    Carries every problem found, so the user sees them all at once.
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
