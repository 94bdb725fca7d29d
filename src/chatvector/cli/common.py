"""What every command shares: the consoles, safe printing, progress, and small value parsers.

User text (paths, tensor names, model replies) is printed literally: never read as rich markup,
and with control characters escaped, so a name like ``[/]`` or one holding an escape sequence
cannot break or forge the terminal's output.
"""

from __future__ import annotations

import re
import sys
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

import click
from rich.console import Console
from rich.text import Text

__all__ = [
    "console",
    "err_console",
    "say",
    "shown",
    "literal",
    "byte_progress",
    "show_progress",
    "progress_shown",
    "parse_vector_spec",
    "parse_ratios",
]

# Wide enough for result tables when output is not a terminal (logs, CI).
console = Console(width=None if Console().is_terminal else 132)
err_console = Console(stderr=True)

_CONTROL = re.compile(r"[\x00-\x08\x0b-\x1f\x7f-\x9f\u200b-\u200f\u202a-\u202e\u2066-\u2069]")


def shown(text: Any) -> str:
    """``text`` with control and bidi-override characters escaped (``\\x1b``), safe for a terminal."""
    return _CONTROL.sub(lambda m: m.group().encode("unicode_escape").decode("ascii"), str(text))


def literal(text: Any) -> Text:
    """User-derived text for a rich table cell or title: shown as written, never as markup."""
    return Text(shown(text))


def say(text: Any, *, err: bool = False) -> None:
    """Print user-derived text literally (no markup, no highlighting, controls escaped)."""
    (err_console if err else console).print(shown(text), markup=False, highlight=False, soft_wrap=True)


_progress = {"shown": True}


def show_progress(shown: bool) -> None:
    """Turn progress output on or off for this process (``chatvector -q`` turns it off)."""
    _progress["shown"] = shown


def progress_shown() -> bool:
    """Whether progress output is on (off under ``chatvector -q``)."""
    return _progress["shown"]


def _no_progress(done: int, total: int) -> None:
    """The progress callback of a quiet run."""


@contextmanager
def byte_progress(description: str) -> Iterator[Callable[[int, int], None]]:
    """A progress callback ``(done, total)`` in bytes: a rich bar on a terminal, else a log line
    every quarter, so piped runs (CI, nohup) still show that something happens; nothing under
    ``-q``."""
    if not _progress["shown"]:
        yield _no_progress
        return
    err = Console(stderr=True)
    if not err.is_terminal:
        yield _plain_progress(description)
        return
    # Imported here: rich.progress pulls in rich.table, which `--help` does not need.
    from rich.progress import BarColumn, DownloadColumn, Progress, TextColumn, TimeRemainingColumn, TransferSpeedColumn

    columns = (
        TextColumn("{task.description}"),
        BarColumn(),
        DownloadColumn(),
        TransferSpeedColumn(),
        TimeRemainingColumn(),
    )
    with Progress(*columns, console=err, transient=True) as bar:
        task = bar.add_task(description, total=None)

        def update(done: int, total: int) -> None:
            bar.update(task, completed=done, total=total)

        yield update


def _plain_progress(description: str) -> Callable[[int, int], None]:
    started = time.perf_counter()
    reported = [0]

    def update(done: int, total: int) -> None:
        quarter = 4 * done // max(total, 1)
        if quarter > reported[0]:
            reported[0] = quarter
            rate = done / max(time.perf_counter() - started, 1e-9) / 1e6
            print(
                f"{description}: {25 * quarter}% ({done / 1e6:.0f} of {total / 1e6:.0f} MB, {rate:.0f} MB/s)",
                file=sys.stderr,
                flush=True,
            )

    return update


def parse_vector_spec(spec: str) -> tuple[str, float]:
    """Split ``PATH[:RATIO]`` into a path and a ratio (default 1.0).

    The ratio is taken from the last ``:`` only when what follows is a number, so hub ids and
    paths that contain a colon still work.
    """
    head, sep, tail = spec.rpartition(":")
    if sep and head:
        try:
            return head, float(tail)
        except ValueError:
            pass
    return spec, 1.0


def parse_ratios(text: str) -> tuple[float, ...]:
    """Parse ``--ratios`` such as ``0,0.5,1.0``."""
    try:
        ratios = tuple(float(r) for r in text.split(",") if r.strip())
    except ValueError:
        raise click.BadParameter(f"{text!r}: give comma-separated numbers, e.g. 0,0.5,1.0") from None
    if not ratios:
        raise click.BadParameter("give at least one ratio")
    return ratios
