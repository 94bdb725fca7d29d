"""What every hardening case asserts: the exit code, the message naming the culprit, no traceback,
nothing left beside OUT, and every input byte-for-byte unchanged."""

from __future__ import annotations

import hashlib
import os
import stat
from pathlib import Path

from helpers import run_cli

BIG = 64 * 2**20  # files larger than this (sparse test files) are fingerprinted by size and mtime


def fingerprint(*folders: Path) -> list[tuple[str, str]]:
    """Every entry under ``folders`` with what it is: a file's SHA-256, a link's target, a FIFO."""
    found = []
    for folder in folders:
        for path in sorted(Path(folder).rglob("*")):
            info = path.lstat()
            if stat.S_ISLNK(info.st_mode):
                found.append((str(path), "link -> " + os.readlink(path)))
            elif stat.S_ISREG(info.st_mode) and info.st_size > BIG:
                found.append((str(path), f"{info.st_size} bytes, mtime {info.st_mtime_ns}"))
            elif stat.S_ISREG(info.st_mode):
                found.append((str(path), hashlib.sha256(path.read_bytes()).hexdigest()))
            elif not stat.S_ISDIR(info.st_mode):
                found.append((str(path), f"special {stat.S_IFMT(info.st_mode)}"))
    return found


def listing(folder: Path) -> list[str]:
    return sorted(os.listdir(folder))


def outcome(monkeypatch, capsys, inputs, parent: Path, args, code: int, *words: str) -> str:
    """Run the CLI; assert exit ``code``, each of ``words`` in the message, no traceback, the
    inputs (folders or files) unchanged and nothing new in ``parent`` (OUT's directory). Returns the
    message (whitespace collapsed)."""
    inputs = [Path(p) for p in inputs]
    before, beside = fingerprint(*inputs), listing(parent)
    got, message = run_cli(monkeypatch, capsys, *args)
    assert got == code, (got, message)
    for word in words:
        assert word in message, (word, message)
    assert "Traceback" not in message, message
    assert fingerprint(*inputs) == before, "an input changed"
    assert listing(parent) == beside, f"left beside OUT: {sorted(set(listing(parent)) - set(beside))}"
    return message
