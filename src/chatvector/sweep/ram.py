"""Merged models in RAM (``/dev/shm``) that never outlive their sweep.

RAM is not cleaned by a reboot-free machine: a folder left there by a sweep that was killed
outright (``kill -9``, the OOM killer) holds a whole merged model until someone removes it. So
each sweep merges into a folder of its own, named ``chatvector-sweep-PID-TOKEN`` (PID: the owner's
process id; TOKEN: random, so two runs never share a folder even when a process id is reused or
seen from another PID namespace), and holds an exclusive ``flock`` on a lock file inside it for as
long as it runs. The kernel releases that lock when the owner dies, however it dies, so the next
sweep tells a dead owner's folder from a live one exactly and removes it (the PID in the name is
checked too: a folder whose owner's PID is gone is stale).

The folder is prepared under a hidden name (``.chatvector-sweep-PID-TOKEN``) and renamed to its
real name only once it is locked, so a folder with the real name is always locked while its owner
lives.
"""

from __future__ import annotations

import fcntl
import logging
import os
import secrets
import shutil
from pathlib import Path
from types import TracebackType

__all__ = ["RAM", "PREFIX", "RamFolder", "remove_stale", "is_stale"]

log = logging.getLogger(__name__)

RAM = Path("/dev/shm")
PREFIX = "chatvector-sweep-"
LOCK = ".owner.lock"


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # another user's live process
        return True
    return True


def _owner(folder: Path) -> int | None:
    """The PID in a folder's name (``chatvector-sweep-PID-TOKEN``)."""
    digits = folder.name.lstrip(".").removeprefix(PREFIX).split("-")[0]
    return int(digits) if digits.isdigit() else None


def is_stale(folder: Path) -> bool:
    """Whether the sweep that made ``folder`` is gone: its PID is dead, or its lock is free."""
    owner = _owner(folder)
    if owner is None:
        return False  # not named by this module: not ours to remove
    if not _alive(owner):
        return True
    if folder.name.startswith("."):
        return False  # being prepared by a live process: not locked yet
    try:
        fd = os.open(folder / LOCK, os.O_RDONLY)
    except OSError:
        return False  # no lock file in a real-named folder: made by an older version; leave it
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError:
        return False  # the owner holds it
    finally:
        os.close(fd)  # also releases the lock just taken
    return True


def remove_stale(ram: Path = RAM) -> list[Path]:
    """Remove the RAM folders of sweeps that died; return them."""
    removed = []
    for folder in sorted([*ram.glob(PREFIX + "*"), *ram.glob("." + PREFIX + "*")]):
        if folder.is_dir() and not folder.is_symlink() and is_stale(folder):
            log.warning("removing %s, left in RAM by a sweep that was killed", folder)
            shutil.rmtree(folder, ignore_errors=True)
            removed.append(folder)
    return removed


class RamFolder:
    """This process's folder in RAM, locked while open and removed on close."""

    def __init__(self, ram: Path = RAM) -> None:
        name = f"{PREFIX}{os.getpid()}-{secrets.token_hex(4)}"
        self.path = ram / name
        self._preparing = ram / f".{name}"
        self._fd: int | None = None

    def __enter__(self) -> RamFolder:
        self._preparing.mkdir(mode=0o700)
        try:
            self._fd = os.open(self._preparing / LOCK, os.O_CREAT | os.O_WRONLY, 0o600)
            fcntl.flock(self._fd, fcntl.LOCK_EX)  # released by the kernel when this process dies
            os.rename(self._preparing, self.path)
        except BaseException:
            self.close()
            raise
        return self

    def close(self) -> None:
        """Remove the folder, then release the lock."""
        shutil.rmtree(self.path, ignore_errors=True)
        shutil.rmtree(self._preparing, ignore_errors=True)
        if self._fd is not None:
            os.close(self._fd)
            self._fd = None

    def __exit__(
        self, kind: type[BaseException] | None, error: BaseException | None, traceback: TracebackType | None
    ) -> None:
        self.close()
