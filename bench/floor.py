"""The I/O floor of a merge: read three checkpoints once, write one of the same size, fsync.

Usage: ``python floor.py OUT_DIR MODEL_DIR...`` (the last model gives the output's shard sizes)

Plain Python file I/O with one reused buffer and no arithmetic, in two phases: read everything,
then write everything (the fastest way found here, see ``write_like``) and fsync. One thread, no
overlap: a merge that reads while earlier output is being flushed can come in under this floor,
so both phases are timed and printed (as one JSON line) and the overlapped bound, the slower
phase alone, can be read off too. The output holds the last bytes read, repeated; it stands in
for size only. Imports nothing heavy.
"""

from __future__ import annotations

import json
import os
import sys
import time
from pathlib import Path

BUFFER_BYTES = 8 * 1024 * 1024
WRITEBACK_BYTES = 256 * 1024 * 1024  # as chatvector's writer


def shards(model_dir: Path) -> list[Path]:
    return sorted(model_dir.glob("*.safetensors"))


def read_all(paths: list[Path], buffer: bytearray) -> int:
    """Read every file through ``buffer``; return the number of bytes read."""
    view, total = memoryview(buffer), 0
    for path in paths:
        with open(path, "rb", buffering=0) as handle:
            while n := handle.readinto(view):
                total += n
    return total


def write_like(paths: list[Path], out_dir: Path, buffer: bytearray) -> int:
    """Write one file per path in ``paths``, of the same size, fsynced; return bytes written.

    Written the fastest way found on this machine, so that the floor is a floor: blocks reserved
    up front, and every WRITEBACK_BYTES the kernel is told to start writing (POSIX_FADV_DONTNEED)
    instead of leaving everything to one fsync at the end. For 2.2 GB here that took 1.0–1.3 s
    against 2.1–6.3 s for write-everything-then-fsync.
    """
    out_dir.mkdir(parents=True, exist_ok=True)
    view, total = memoryview(buffer), 0
    for path in paths:
        size = path.stat().st_size
        with open(out_dir / path.name, "wb", buffering=0) as handle:
            os.posix_fallocate(handle.fileno(), 0, size)
            written = since_writeback = 0
            while written < size:
                step = handle.write(view[: min(size - written, len(view))])
                written, since_writeback = written + step, since_writeback + step
                if since_writeback >= WRITEBACK_BYTES:
                    os.posix_fadvise(handle.fileno(), 0, 0, os.POSIX_FADV_DONTNEED)
                    since_writeback = 0
            os.fsync(handle.fileno())
        total += size
    fd = os.open(out_dir, os.O_RDONLY)
    os.fsync(fd)
    os.close(fd)
    return total


def main() -> None:
    out_dir, *models = (Path(arg) for arg in sys.argv[1:])
    if not models:
        sys.exit("usage: floor.py OUT_DIR MODEL_DIR...")
    buffer = bytearray(BUFFER_BYTES)
    started = time.perf_counter()
    read = read_all([p for m in models for p in shards(m)], buffer)
    read_done = time.perf_counter()
    written = write_like(shards(models[-1]), out_dir, buffer)
    finished = time.perf_counter()
    # the last line of output is read back by run.py
    print(
        json.dumps(
            {
                "read_bytes": read,
                "written_bytes": written,
                "read_s": read_done - started,
                "write_fsync_s": finished - read_done,
            }
        )
    )


if __name__ == "__main__":
    main()
