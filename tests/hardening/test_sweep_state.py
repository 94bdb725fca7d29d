"""Issue 23, sweeps: ratios validated before any work, state files written whole and read as clear
errors, and nothing in RAM or in a worker outlives a killed sweep.

- ``--ratios`` that print alike (``0.5,0.5000001`` would share the folder ``r=0.5``), that are not
  finite numbers, empty or garbage: a one-line error, nothing written (no OUT, no sweep-spec.json);
- sweep-spec.json, sweep.json, timings.json and the reports are written through a temporary file
  and a rename; a torn one (or a torn results.json of a ratio) is an error naming the file;
- merged models in RAM live in a folder named with its owner's PID and held by a lock: the next
  sweep removes those of dead owners; with ``--workers``, workers die with the sweep (kill -9
  included) and write nothing into OUT afterwards.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest
from hardening_helpers import fingerprint, outcome

from chatvector.errors import InputError
from chatvector.sweep import ram, state


def sweep_args(trio, out, ratios):
    return [
        "sweep",
        "--base",
        trio.base,
        "--chat",
        trio.chat,
        "--target",
        trio.cp,
        "--ratios",
        ratios,
        "-o",
        out,
        "--suite",
        "verifiable",
        "--limit",
        "1",
    ]


@pytest.mark.parametrize(
    "ratios, words",
    [
        ("0.5,0.5000001", ["--ratios", "0.5", "0.5000001", "r=0.5"]),
        ("0,1,1.0", ["--ratios", "twice", "r=1"]),
        ("nan", ["--ratios", "nan", "not a finite number"]),
        ("0.5,inf", ["--ratios", "inf", "not a finite number"]),
        ("-inf", ["--ratios", "-inf"]),
        ("1e39", ["--ratios", "1e+39"]),
        ("1e-50", ["--ratios", "1e-50"]),
        ("", ["--ratios"]),
        (",", ["--ratios"]),
        ("0.5;1", ["--ratios", "comma-separated numbers"]),
        ("half", ["--ratios", "comma-separated numbers"]),
    ],
)
def test_bad_sweep_ratios_are_refused_before_anything_is_written(ratios, words, trios, monkeypatch, capsys, tmp_path):
    trio = trios["llama"]
    message = outcome(
        monkeypatch,
        capsys,
        [trio.base, trio.chat, trio.cp],
        tmp_path,
        sweep_args(trio, tmp_path / "out", ratios),
        2,
        *words,
    )
    assert not (tmp_path / "out").exists() and "\n" not in message.strip()


def test_a_torn_sweep_spec_or_results_file_is_a_clear_error(trios, monkeypatch, capsys, tmp_path):
    trio = trios["llama"]
    out = tmp_path / "out"
    out.mkdir()
    (out / "sweep-spec.json").write_text(
        '{"recipe_at_1": {"target": "/mod', encoding="utf-8"
    )  # a kill mid-write, before
    before = fingerprint(out)
    outcome(
        monkeypatch,
        capsys,
        [trio.cp, out],
        tmp_path,
        sweep_args(trio, out, "0,1"),
        2,
        "sweep-spec.json",
        "not valid JSON",
        "new -o",
    )
    assert fingerprint(out) == before
    (out / "sweep-spec.json").write_text("[1, 2]", encoding="utf-8")
    outcome(
        monkeypatch,
        capsys,
        [trio.cp, out],
        tmp_path,
        sweep_args(trio, out, "0,1"),
        2,
        "sweep-spec.json",
        "not a JSON object",
    )


def test_a_torn_results_file_of_a_ratio_is_a_clear_error(tmp_path):
    torn = tmp_path / "results.json"
    torn.write_bytes('{"metrics": {"語'.encode()[:-1])  # torn inside a multi-byte character
    with pytest.raises(InputError, match=r"results.json: not valid JSON \(torn or edited\); remove"):
        state.read_json(torn, "remove it")


def test_state_files_are_written_whole_or_not_at_all(tmp_path, monkeypatch):
    path = tmp_path / "sweep-spec.json"
    state.write_json(path, {"a": 1, "nan": float("nan")})
    assert json.loads(path.read_text()) == {"a": 1, "nan": None}  # strict JSON: NaN is null

    def full_disk(fd):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(os, "fsync", full_disk)
    with pytest.raises(OSError):
        state.write_json(path, {"a": 2, "long": "x" * 100_000})
    assert json.loads(path.read_text()) == {"a": 1, "nan": None}  # the old file, whole
    assert sorted(p.name for p in tmp_path.iterdir()) == ["sweep-spec.json"]  # no partial file left


def dead_pid() -> int:
    process = subprocess.Popen([sys.executable, "-c", "pass"])
    process.wait()
    return process.pid


HOLDER = """
import sys, time
from pathlib import Path
from chatvector.sweep.ram import RamFolder
folder = RamFolder(Path(sys.argv[1])).__enter__()
print(folder.path, flush=True)
time.sleep(3600)
"""


def test_ram_folders_of_dead_sweeps_are_removed_and_live_ones_kept(tmp_path):
    shm = tmp_path / "shm"
    shm.mkdir()
    dead = shm / f"{ram.PREFIX}{dead_pid()}-0badc0de"
    (dead / "r=0.5").mkdir(parents=True)
    preparing = shm / f".{ram.PREFIX}{dead_pid()}-00000000"  # killed while preparing its folder
    preparing.mkdir()
    unrelated = shm / "chatvector-sweep-notes"
    unrelated.mkdir()
    with ram.RamFolder(shm) as mine:
        holder = subprocess.Popen([sys.executable, "-c", HOLDER, str(shm)], stdout=subprocess.PIPE, text=True)
        try:
            theirs = Path(holder.stdout.readline().strip())  # a live sweep in another process
            assert theirs.is_dir() and theirs.name.startswith(f"{ram.PREFIX}{holder.pid}-")
            assert ram.remove_stale(shm) == sorted([preparing, dead])
            assert mine.path.is_dir() and theirs.is_dir() and unrelated.is_dir()
        finally:
            holder.send_signal(signal.SIGKILL)
            holder.wait()
            holder.stdout.close()
        assert ram.remove_stale(shm) == [theirs]  # its owner was killed: the kernel freed the lock
        assert mine.path.is_dir()
    assert not mine.path.exists() and sorted(p.name for p in shm.iterdir()) == ["chatvector-sweep-notes"]


def _children(pid: int) -> list[int]:
    found = []
    for task in Path(f"/proc/{pid}/task").iterdir():
        found += [int(c) for c in (task / "children").read_text().split()]
    return found


def _alive(pid: int) -> bool:
    try:
        state_line = next(
            line for line in Path(f"/proc/{pid}/status").read_text().splitlines() if line.startswith("State:")
        )
    except (OSError, StopIteration):
        return False
    return "Z" not in state_line.split()[1]  # a zombie has ended


def _wait_for(condition, what: str, deadline_s: float = 300.0) -> None:
    """Poll ``condition`` until it holds (the bound only turns a hang into a failure)."""
    import time

    end = time.monotonic() + deadline_s
    while not condition():
        assert time.monotonic() < end, f"gave up waiting for: {what}"
        time.sleep(0.2)


CLI = "import sys; from chatvector.cli import main; sys.argv[0] = 'chatvector'; main()"


@pytest.mark.slow
@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="PR_SET_PDEATHSIG and /dev/shm are Linux's")
def test_kill_9_of_a_sweep_ends_its_workers_and_the_next_run_removes_its_ram_folder(trios, tmp_path):
    trio = trios["llama"]
    out = tmp_path / "out"
    command = [sys.executable, "-c", CLI, *map(str, sweep_args(trio, out, "0.25,0.5,1"))]
    command[command.index("--limit") + 1] = "24"
    command += ["--workers", "2", "--max-new-tokens", "48", "--lang", "en"]
    log = (tmp_path / "sweep.log").open("wb")
    sweep = subprocess.Popen(command, stdout=log, stderr=log, env={**os.environ, "OMP_NUM_THREADS": "1"})
    try:
        # the state to kill in: both workers generating (each has written a reply of its ratio)
        def generating() -> bool:
            assert sweep.poll() is None, (tmp_path / "sweep.log").read_text()[-3000:]
            started = [f for f in out.glob("ratios/r=*/replies.jsonl") if f.stat().st_size > 0]
            return len(started) >= 2

        _wait_for(generating, "two workers writing replies")
        workers = [pid for pid in _children(sweep.pid) if "spawn_main" in Path(f"/proc/{pid}/cmdline").read_text()]
        folders = list(ram.RAM.glob(f"{ram.PREFIX}{sweep.pid}-*"))
        assert len(workers) == 2 and len(folders) == 1
    finally:
        sweep.send_signal(signal.SIGKILL)
        sweep.wait()
        log.close()
    done_at_kill = sorted(out.glob("ratios/*/results.json"))
    _wait_for(lambda: not any(_alive(pid) for pid in workers), "the workers to end with their parent")
    assert sorted(out.glob("ratios/*/results.json")) == done_at_kill  # they never finished a ratio
    assert not list(out.glob("ratios/*/timings.json")) or done_at_kill
    assert folders[0].is_dir() and ram.is_stale(folders[0])  # left in RAM by the killed sweep...
    assert folders[0] in ram.remove_stale()  # ...and removed by the next run's first step
    assert not folders[0].exists()
