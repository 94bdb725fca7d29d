"""Run one command and report its wall time and peak memory as JSON (one fresh process per run).

Usage: ``python measure.py --json OUT.json [--cwd DIR] -- COMMAND ARGS...``

Memory is measured three ways, because each misleads alone:

- ``maxrss``: ``getrusage(RUSAGE_CHILDREN).ru_maxrss`` after the child exits: the kernel's exact
  peak resident set of the largest single process in the tree (not their sum). This wrapper is a
  fresh process per run, so no earlier child leaks into the figure.
- ``peak_rss_tree``: the sum of ``VmRSS`` over the child and all its descendants, polled every
  20 ms from ``/proc`` (short spikes between polls can be missed). RSS counts pages of
  memory-mapped files too: a tool that mmaps its inputs shows them as resident although they
  are reclaimable page cache.
- ``peak_anon_tree``: the same sum of ``RssAnon``: memory the tool itself allocated, which
  cannot be reclaimed without swap. This is the figure that decides whether a merge fits.

Right after the child exits, ``os.sync()`` is timed (``sync_s``): tools that do not fsync leave
their output in dirty page cache, and this is what it costs to make it durable.

Only the standard library is imported, so the wrapper adds no start-up time of its own.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import threading
import time
from pathlib import Path

POLL_SECONDS = 0.02


def descendants(pid: int) -> list[int]:
    """``pid`` and every process below it, from the ``children`` files of /proc."""
    found, todo = [], [pid]
    while todo:
        current = todo.pop()
        found.append(current)
        try:
            for task in os.listdir(f"/proc/{current}/task"):
                with open(f"/proc/{current}/task/{task}/children") as handle:
                    todo.extend(int(child) for child in handle.read().split())
        except OSError:  # the process ended between listing and reading
            continue
    return found


def memory_kb(pid: int) -> tuple[int, int]:
    """(VmRSS, RssAnon) of one process in KiB; zeros if it has gone."""
    rss = anon = 0
    try:
        with open(f"/proc/{pid}/status") as handle:
            for line in handle:
                if line.startswith("VmRSS:"):
                    rss = int(line.split()[1])
                elif line.startswith("RssAnon:"):
                    anon = int(line.split()[1])
    except OSError:
        pass
    return rss, anon


class TreePoller(threading.Thread):
    """Polls the summed RSS and RssAnon of a process tree until stopped; keeps the peaks."""

    def __init__(self, pid: int) -> None:
        super().__init__(daemon=True)
        self.pid = pid
        self.peak_rss_kb = 0
        self.peak_anon_kb = 0
        self.done = threading.Event()

    def run(self) -> None:
        while not self.done.is_set():
            rss = anon = 0
            for pid in descendants(self.pid):
                r, a = memory_kb(pid)
                rss, anon = rss + r, anon + a
            self.peak_rss_kb = max(self.peak_rss_kb, rss)
            self.peak_anon_kb = max(self.peak_anon_kb, anon)
            self.done.wait(POLL_SECONDS)


def measure(command: list[str], cwd: str | None, log: Path | None) -> dict[str, object]:
    """Run ``command`` to completion; return its exit code, times and memory peaks."""
    sink = open(log, "wb") if log else subprocess.DEVNULL
    started = time.perf_counter()
    child = subprocess.Popen(command, cwd=cwd, stdout=sink, stderr=subprocess.STDOUT)
    poller = TreePoller(child.pid)
    poller.start()
    returncode = child.wait()
    wall = time.perf_counter() - started
    poller.done.set()
    poller.join()
    if log:
        sink.close()
    synced = time.perf_counter()
    os.sync()
    sync_s = time.perf_counter() - synced
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return {
        "command": command,
        "returncode": returncode,
        "wall_s": wall,
        "sync_s": sync_s,
        "user_s": usage.ru_utime,
        "sys_s": usage.ru_stime,
        "maxrss_bytes": usage.ru_maxrss * 1024,
        "peak_rss_tree_bytes": poller.peak_rss_kb * 1024,
        "peak_anon_tree_bytes": poller.peak_anon_kb * 1024,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--json", required=True, type=Path, help="where to write the measurement")
    parser.add_argument("--cwd", help="working directory of the command")
    parser.add_argument("--log", type=Path, help="file for the command's stdout and stderr")
    parser.add_argument("command", nargs=argparse.REMAINDER, help="-- COMMAND ARGS...")
    args = parser.parse_args()
    command = args.command[1:] if args.command[:1] == ["--"] else args.command
    if not command:
        parser.error("no command given after --")
    result = measure(command, args.cwd, args.log)
    args.json.write_text(json.dumps(result, indent=2) + "\n")
    sys.exit(0)


if __name__ == "__main__":
    main()
