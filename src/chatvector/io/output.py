"""Write an output directory safely: staged beside OUT, locked, fsynced, renamed at the end.

A run that fails or is interrupted leaves no directory that looks like a finished model: all
files are written into a hidden staging directory next to OUT, which is renamed into place only
after every byte is on disk and the result re-checked. A lock file beside OUT makes two runs that
race for the same OUT fail cleanly instead of interleaving.

The tensor files are laid out before any data is computed (all shapes are known from preflight),
so worker threads can ``pwrite`` their chunks at fixed offsets in any order.
"""

from __future__ import annotations

import errno
import glob
import hashlib
import json
import logging
import os
import secrets
import shutil
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

from chatvector.dtypes import DTYPES
from chatvector.errors import OutputError
from chatvector.io.safetensors_header import build_header, read_header

log = logging.getLogger(__name__)


def _fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _name_max(folder: Path) -> int:
    try:
        return os.pathconf(folder, "PC_NAME_MAX")
    except (OSError, ValueError):
        return 255


def resolve_output(out: Path) -> Path:
    """OUT as it will be written: absolute, with links followed (a link to a directory is written
    through, so the link stays and the staging directory lies beside the real OUT).

    Raises:
        OutputError: OUT is a dangling link, a parent is a file, or a name is too long for the
            file system.
    """
    out = Path(out).expanduser().absolute()
    existing = next(p for p in out.parents if os.path.lexists(p))
    limit = _name_max(existing)
    too_long = [part for part in out.parts if len(os.fsencode(part)) > limit]
    if too_long:
        raise OutputError(
            f"-o {out}: the name {too_long[0][:40]!r}... is {len(os.fsencode(too_long[0]))} bytes, "
            f"longer than the {limit} the file system allows",
            file=out,
        )
    if out.is_symlink() and not out.exists():
        raise OutputError(
            f"-o {out} is a link to {os.readlink(out)}, which does not exist; create that directory or remove the link",
            file=out,
        )
    target = out.resolve()
    for parent in target.parents:
        if os.path.lexists(parent):
            if not parent.is_dir():
                raise OutputError(
                    f"-o {out}: {parent} is a file, not a directory; choose another output path", file=parent
                )
            break
    return target


def check_output_path(out: Path, inputs: list[Path], force: bool) -> None:
    """Refuse an OUT that is, contains or lies inside an input, that exists without --force, or that
    cannot be created (see :func:`resolve_output`)."""
    target = resolve_output(out)
    for source in inputs:
        source = source.resolve()
        if target == source or source.is_relative_to(target) or target.is_relative_to(source):
            raise OutputError(
                f"-o {out} would overwrite or nest inside the input {source}; choose another output directory", file=out
            )
    if target.exists():
        if not target.is_dir():
            raise OutputError(f"-o {out} exists and is a file; remove it or choose another path", file=out)
        if any(target.iterdir()) and not force:
            raise OutputError(f"-o {out} exists and is not empty; pass --force to replace it", file=out)


def _sibling_stem(out: Path) -> str:
    """The start of the names of OUT's lock and staging directories (``.NAME``), shortened with a
    hash when OUT's name leaves too little room under the file system's name limit."""
    stem = f".{out.name}"
    room = _name_max(out.parent) - len(".chatvector-lock") - len(".chatvector-tmp-12345678") - 1
    if len(os.fsencode(stem)) <= room:
        return stem
    digest = hashlib.sha256(os.fsencode(out.name)).hexdigest()[:12]
    prefix = os.fsencode(stem)[: max(room - 13, 1)].decode("utf-8", "ignore")
    return f"{prefix}~{digest}"


def _output_error(error: OSError, what: str, where: Path) -> OutputError:
    if error.errno in (errno.ENOSPC, errno.EDQUOT, errno.EFBIG):
        return _disk_error(error, where)
    return OutputError(f"cannot {what} {where}: {error.strerror or error}", file=where)


class OutputLock:
    """An exclusive lock file beside OUT, held for the whole run."""

    def __init__(self, out: Path, stem: str) -> None:
        self.out = out
        self.path = out.parent / f"{stem}.chatvector-lock"
        self._held = False
        self.took_over = False

    def acquire(self) -> None:
        for _ in range(2):
            try:
                fd = os.open(self.path, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o644)
            except FileExistsError:
                if self._stale():
                    self.path.unlink(missing_ok=True)
                    self.took_over = True
                    continue
                raise OutputError(
                    f"another chatvector run is writing {self.out} "
                    f"(lock {self.path}); wait for it, or delete the lock if that run is gone",
                    file=self.path,
                ) from None
            except OSError as error:
                raise _output_error(error, "create the lock file", self.path) from None
            with os.fdopen(fd, "w") as handle:
                handle.write(str(os.getpid()))
            self._held = True
            return
        raise OutputError(f"cannot take the lock {self.path}: it keeps reappearing", file=self.path)

    def _stale(self) -> bool:
        try:
            pid = int(self.path.read_text().strip() or "0")
        except (OSError, ValueError):
            return False
        if pid <= 0:
            return False
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            return True
        except PermissionError:
            return False
        return False

    def release(self) -> None:
        if self._held:
            self.path.unlink(missing_ok=True)
            self._held = False


class StagedDirectory:
    """A hidden directory beside OUT that becomes OUT only when :meth:`commit` is called.

    While its lock is held, no other run can be writing OUT, so staging directories of OUT found
    beside it then were left by runs that died (``kill -9``, a power cut) and are removed.
    """

    def __init__(self, out: Path) -> None:
        self.out = resolve_output(out)
        try:
            self.out.parent.mkdir(parents=True, exist_ok=True)
        except OSError as error:
            raise _output_error(error, "create the directory", self.out.parent) from None
        self.stem = _sibling_stem(self.out)
        self.lock = OutputLock(self.out, self.stem)
        self.path = self.out.parent / f"{self.stem}.chatvector-tmp-{secrets.token_hex(4)}"

    def __enter__(self) -> StagedDirectory:
        self.lock.acquire()
        try:
            self._remove_leftovers()
            self.path.mkdir()
        except OSError as error:
            self.lock.release()
            raise _output_error(error, "create the staging directory", self.path) from None
        except BaseException:
            self.lock.release()
            raise
        return self

    def _remove_leftovers(self) -> None:
        for pattern in (f"{self.stem}.chatvector-tmp-*", f"{self.stem}.chatvector-old-*"):
            for leftover in self.out.parent.glob(glob_escape(pattern)):
                if leftover.is_dir() and not leftover.is_symlink():
                    log.warning("removing %s, left by a chatvector run that died", leftover)
                    shutil.rmtree(leftover, ignore_errors=True)

    def commit(self, force: bool) -> None:
        """fsync everything and move the staging directory to OUT."""
        try:
            self._commit(force)
        except OSError as error:
            raise _output_error(error, "move the finished output to", self.out) from None

    def _commit(self, force: bool) -> None:
        for file in sorted(p for p in self.path.rglob("*") if p.is_file()):
            with open(file, "rb+") as handle:
                os.fsync(handle.fileno())
        _fsync_dir(self.path)
        if self.out.exists():
            if any(self.out.iterdir()) and not force:
                raise OutputError(f"-o {self.out} appeared while merging; pass --force to replace it")
            trash = self.out.parent / f"{self.stem}.chatvector-old-{secrets.token_hex(4)}"
            os.rename(self.out, trash)
            os.rename(self.path, self.out)
            shutil.rmtree(trash, ignore_errors=True)
            if trash.exists():
                log.warning("could not remove the previous output, moved to %s", trash)
        else:
            os.rename(self.path, self.out)
        _fsync_dir(self.out.parent)

    def __exit__(self, exc_type: object, exc: object, tb: object) -> None:
        # Runs on success too: after commit() the staging path no longer exists.
        shutil.rmtree(self.path, ignore_errors=True)
        self.lock.release()


class StagedFile(StagedDirectory):
    """OUT is one file (a GGUF): it is written as ``name`` inside a staging directory beside OUT
    (with whatever helper files it needs), and :meth:`commit` fsyncs it and renames that one file
    onto OUT; the staging directory and its helpers go when the context ends."""

    def __init__(self, out: Path, name: str) -> None:
        super().__init__(out)
        self.file = self.path / name

    def __enter__(self) -> StagedFile:
        super().__enter__()
        return self

    def _commit(self, force: bool) -> None:
        with open(self.file, "rb+") as handle:
            os.fsync(handle.fileno())
        if os.path.lexists(self.out) and not force:
            raise OutputError(f"-o {self.out} appeared while writing; pass --force to replace it", file=self.out)
        if self.out.is_dir():
            raise OutputError(f"-o {self.out} is a directory; choose a file name such as model.gguf", file=self.out)
        os.replace(self.file, self.out)
        _fsync_dir(self.out.parent)


def check_output_file(out: Path, inputs: list[Path], force: bool) -> None:
    """Like :func:`check_output_path`, for an OUT that is one file."""
    target = resolve_output(out)
    for source in inputs:
        source = source.resolve()
        if target == source or target.is_relative_to(source):
            raise OutputError(f"-o {out} would be written inside the input {source}; choose another path", file=out)
    if target.is_dir():
        raise OutputError(f"-o {out} is a directory; give a file name such as {out}/model.gguf", file=out)
    if target.exists() and not force:
        raise OutputError(f"-o {out} exists; pass --force to replace it", file=out)


def glob_escape(pattern: str) -> str:
    """Escape glob characters of a name, keeping a trailing ``*`` wildcard."""
    head, star, _ = pattern.partition("*")
    return glob.escape(head) + star


class WriteBehind:
    """Starts writing output bytes to disk in the background while the merge goes on.

    Without it, all output bytes sit in the page cache until the final fsync, which then costs
    as long as writing the whole model. Every few hundred MB, ``POSIX_FADV_DONTNEED`` on each
    dirty file starts its writeback without waiting for it and drops the pages already on disk,
    so the output does not push the inputs out of the page cache either. Measured on a 1.1B
    merge here it beat ``fdatasync`` every 256 MB by 0.35 s (2.65 s against 3.0 s, and 30% less
    system time): fdatasync blocks and commits the journal each time. Durability is unchanged:
    :meth:`ShardedTensorWriter.finish` fsyncs every file before anything is renamed, and that
    fsync reports any error the background writeback met.
    """

    def __init__(self, threshold: int = 256 * 2**20) -> None:
        self.threshold = threshold
        self._pending = 0
        self._dirty: set[int] = set()
        self._lock = threading.Lock()
        self._wake = threading.Event()
        self._stopping = False
        self.error: OSError | None = None
        self._thread = threading.Thread(target=self._run, name="chatvector-writeback", daemon=True)
        self._thread.start()

    def wrote(self, fd: int, nbytes: int) -> None:
        with self._lock:
            self._dirty.add(fd)
            self._pending += nbytes
            if self._pending >= self.threshold:
                self._pending = 0
                self._wake.set()

    def _run(self) -> None:
        while True:
            self._wake.wait()
            self._wake.clear()
            if self._stopping:
                return
            with self._lock:
                dirty, self._dirty = sorted(self._dirty), set()
            for fd in dirty:
                try:
                    os.posix_fadvise(fd, 0, 0, os.POSIX_FADV_DONTNEED)
                except OSError as error:  # reported by finish(); the merge itself goes on
                    self.error = error

    def stop(self) -> None:
        """Stop the flusher before its file descriptors are closed."""
        self._stopping = True
        self._wake.set()
        self._thread.join()


class TensorSink(Protocol):
    """Where the engine hands each computed chunk: a tensor name, a byte offset within that
    tensor (in the plan's output dtype) and the bytes."""

    def write(self, name: str, byte_offset: int, data: memoryview) -> None: ...


@dataclass(frozen=True)
class Slot:
    """Where one output tensor's bytes go."""

    file: Path
    offset: int  # absolute byte offset in the file
    nbytes: int


class ShardedTensorWriter:
    """Pre-laid-out safetensors shards, written with ``pwrite`` from any thread.

    Args:
        folder: the (staging) directory.
        entries: ``(name, dtype, shape)`` for every output tensor, in storage order.
        prefix: file name prefix (``model`` or ``vector``).
        shard_size: largest shard in bytes (a tensor bigger than that gets a shard of its own).
        metadata: safetensors ``__metadata__`` for every shard.
    """

    def __init__(
        self,
        folder: Path,
        entries: list[tuple[str, str, tuple[int, ...]]],
        prefix: str,
        shard_size: int,
        metadata: dict[str, str],
    ) -> None:
        self.folder = folder
        self.prefix = prefix
        self.slots: dict[str, Slot] = {}
        self.files: list[Path] = []
        self._fds: dict[Path, int] = {}
        self._write_behind = WriteBehind()
        for name, group in shard_layout(entries, prefix, shard_size):
            self._lay_out(folder / name, group, metadata)
        self.total_bytes = sum(s.nbytes for s in self.slots.values())

    def _lay_out(self, path: Path, group: list[tuple[str, str, tuple[int, ...]]], metadata: dict[str, str]) -> None:
        header, spans = build_header(group, metadata)
        data_size = max((end for _, end in spans.values()), default=0)
        fd = os.open(path, os.O_CREAT | os.O_EXCL | os.O_RDWR, 0o644)
        self._fds[path] = fd
        self.files.append(path)
        self._pwrite_all(fd, header, 0)
        try:
            # Reserving the blocks now makes a full disk fail here, before any computation,
            # and makes the later scattered pwrites cheaper than filling a sparse file.
            os.posix_fallocate(fd, 0, len(header) + data_size)
        except OSError as error:
            if error.errno not in (errno.EOPNOTSUPP, errno.EINVAL):
                raise _disk_error(error, path) from None
            # A file system that cannot reserve: the pwrites extend the file, and a full disk
            # surfaces there, mid-write, as the same OutputError.
        for name, (begin, end) in spans.items():
            self.slots[name] = Slot(path, len(header) + begin, end - begin)

    def write(self, name: str, byte_offset: int, data: memoryview) -> None:
        """Write ``data`` at ``byte_offset`` within tensor ``name``."""
        slot = self.slots[name]
        if byte_offset + len(data) > slot.nbytes:
            raise OutputError(f"internal: write past the end of tensor {name}")
        fd = self._fds[slot.file]
        self._pwrite_all(fd, data, slot.offset + byte_offset)
        self._write_behind.wrote(fd, len(data))

    def _pwrite_all(self, fd: int, data: bytes | memoryview, offset: int) -> None:
        view = memoryview(data).cast("B")
        done = 0
        while done < len(view):
            try:
                done += os.pwrite(fd, view[done:], offset + done)
            except OSError as error:
                raise _disk_error(error, self.folder) from None

    def finish(self, index_metadata: dict[str, object] | None = None) -> None:
        """fsync and close every shard; write the index when there are several."""
        self._write_behind.stop()
        if self._write_behind.error is not None:
            raise _disk_error(self._write_behind.error, self.folder)
        for path, fd in self._fds.items():
            try:
                os.fsync(fd)
            except OSError as error:
                raise _disk_error(error, path) from None
        self.close()
        if len(self.files) > 1:
            index = {
                "metadata": {"total_size": self.total_bytes, **(index_metadata or {})},
                "weight_map": {name: slot.file.name for name, slot in sorted(self.slots.items())},
            }
            index_path = self.folder / f"{self.prefix}.safetensors.index.json"
            index_path.write_text(json.dumps(index, indent=2) + "\n", encoding="utf-8")

    def close(self) -> None:
        self._write_behind.stop()
        for fd in self._fds.values():
            os.close(fd)
        self._fds.clear()


def shard_layout(
    entries: list[tuple[str, str, tuple[int, ...]]], prefix: str, shard_size: int
) -> list[tuple[str, list[tuple[str, str, tuple[int, ...]]]]]:
    """The output's shard files and the (name, dtype, shape) entries each holds, in order, as
    :class:`ShardedTensorWriter` lays them out (``--dry-run`` shows it without writing)."""
    groups = _group_into_shards(entries, shard_size)
    return [
        (
            f"{prefix}.safetensors" if len(groups) == 1 else f"{prefix}-{number:05d}-of-{len(groups):05d}.safetensors",
            group,
        )
        for number, group in enumerate(groups, start=1)
    ]


def _group_into_shards(
    entries: list[tuple[str, str, tuple[int, ...]]], shard_size: int
) -> list[list[tuple[str, str, tuple[int, ...]]]]:
    groups: list[list[tuple[str, str, tuple[int, ...]]]] = [[]]
    used = 0
    for entry in entries:
        size = DTYPES[entry[1]].itemsize
        for dim in entry[2]:
            size *= dim
        if groups[-1] and used + size > shard_size:
            groups.append([])
            used = 0
        groups[-1].append(entry)
        used += size
    return groups


def sha256_file(path: Path) -> str:
    """The SHA-256 of a file's bytes, read in blocks."""
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def fingerprint_output(folder: Path, *, skip: tuple[str, ...] = ()) -> dict[str, dict[str, object]]:
    """What an output directory holds, for ``verify`` to compare later: the SHA-256 of every
    non-weight file (by relative path), and each weight file's size and header SHA-256."""
    files: dict[str, object] = {}
    weights: dict[str, object] = {}
    for path in sorted(p for p in folder.rglob("*") if p.is_file()):
        name = path.relative_to(folder).as_posix()
        if name in skip:
            continue
        if path.suffix == ".safetensors":
            header = read_header(path)
            weights[name] = {
                "bytes": path.stat().st_size,
                "header_sha256": hashlib.sha256(header.header_bytes).hexdigest(),
            }
        else:
            files[name] = sha256_file(path)
    return {"files": files, "weights": weights}


def write_file(path: Path, data: bytes | str) -> None:
    """Write one small output file (a config, a tokenizer file, the card); a full disk or any other
    write failure becomes the same OutputError as for the shards."""
    payload = data.encode("utf-8") if isinstance(data, str) else data
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_NOFOLLOW | os.O_CLOEXEC, 0o644)
        with os.fdopen(fd, "wb") as handle:
            handle.write(payload)
    except OSError as error:
        raise _disk_error(error, path) from None


def _disk_error(error: OSError, where: Path) -> OutputError:
    if error.errno in (errno.ENOSPC, errno.EDQUOT, errno.EFBIG):
        return OutputError(
            f"no space left writing {where} ({error.strerror}); free some disk space or "
            "choose another -o, nothing was kept"
        )
    return OutputError(f"cannot write {where}: {error.strerror or error}")


def check_written(folder: Path, entries: list[tuple[str, str, tuple[int, ...]]]) -> None:
    """Raise OutputError unless ``folder`` holds exactly the planned tensors."""
    from safetensors import safe_open

    found: dict[str, tuple[str, tuple[int, ...]]] = {}
    for path in sorted(folder.glob("*.safetensors")):
        # framework="numpy": only names, dtypes and shapes are read, and "pt" would import torch
        with safe_open(str(path), framework="numpy") as handle:
            for name in handle.keys():  # noqa: SIM118 - safe_open is not a mapping
                sliced = handle.get_slice(name)
                found[name] = (sliced.get_dtype(), tuple(sliced.get_shape()))
    expected = {name: (dtype, tuple(shape)) for name, dtype, shape in entries}
    if found != expected:
        missing = sorted(set(expected) - set(found))
        wrong = sorted(n for n in expected if n in found and found[n] != expected[n])
        raise OutputError(
            f"the written output does not match the plan (missing: {missing[:5]}, "
            f"wrong dtype/shape: {wrong[:5]}); nothing was kept"
        )
