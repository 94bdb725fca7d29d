"""The I/O floor of a merge: read three checkpoints once, write one of the same size, fsync.

Usage: ``python floor.py OUT_DIR MODEL_DIR...`` (the last model gives the output's shard sizes)

Plain Python file I/O with one reused buffer and no arithmetic, in two phases: read everything,
then write everything and fsync. One thread, no overlap: a merge that reads while earlier output
is being flushed can come in under this floor, so both phases are timed and printed (as one JSON
line) and the overlapped bound, the slower phase alone, can be read off too. The output holds
the last bytes read, repeated; it stands in for size only. Imports nothing heavy.
"""

from __future__ import annotations

import json
import os
import sys
import time
from pathlib import Path

BUFFER_BYTES = 8 * 1024 * 1024


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
    """Write one file per path in ``paths``, of the same size, fsynced; return bytes written."""
    out_dir.mkdir(parents=True, exist_ok=True)
    view, total = memoryview(buffer), 0
    for path in paths:
        remaining = path.stat().st_size
        with open(out_dir / path.name, "wb", buffering=0) as handle:
            while remaining:
                remaining -= handle.write(view[: min(remaining, len(view))])
            os.fsync(handle.fileno())
        total += path.stat().st_size
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
    print(json.dumps({"read_bytes": read, "written_bytes": written, "read_s": read_done - started,
                      "write_fsync_s": finished - read_done}))


if __name__ == "__main__":
    main()
