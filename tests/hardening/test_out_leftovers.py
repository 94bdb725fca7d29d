"""Class 4: OUT and what is left beside it.

OUT is resolved through links before anything is computed: a link to a directory is written
through (the link stays, nothing is left beside either), a dangling link is refused at once.
Staging directories of runs that died are removed by the next run that takes the lock (the
signal cases, SIGHUP included, and ``kill -9`` run in test_faults.py).
"""

from __future__ import annotations

import os
import subprocess
import sys

import pytest
from hardening_helpers import fingerprint, listing, outcome
from helpers import merge_args, run_cli
from safetensors.torch import load_file


def dead_pid() -> int:
    """The PID of a process that has exited (and been reaped)."""
    process = subprocess.Popen([sys.executable, "-c", "pass"])
    process.wait()
    return process.pid


def test_a_dangling_link_as_out_is_refused_before_merging(monkeypatch, capsys, fresh, tmp_path):
    (tmp_path / "out").symlink_to(tmp_path / "nowhere" / "out")
    message = outcome(
        monkeypatch,
        capsys,
        fresh.values(),
        tmp_path,
        merge_args(fresh, tmp_path / "out"),
        2,
        "OutputError",
        str(tmp_path / "out"),
        "does not exist",
    )
    assert "merging" not in message  # refused before any tensor was read
    assert os.readlink(tmp_path / "out") == str(tmp_path / "nowhere" / "out")


@pytest.mark.parametrize("contents", ["empty", "an old merge"])
def test_a_link_to_a_directory_as_out_is_written_through(contents, monkeypatch, capsys, fresh, tmp_path):
    real = tmp_path / "disk" / "merged"
    real.mkdir(parents=True)
    if contents == "an old merge":
        (real / "stale.safetensors").write_text("old")
    (tmp_path / "out").symlink_to(real)
    args = merge_args(fresh, tmp_path / "out") + (["--force"] if contents != "empty" else [])
    code, message = run_cli(monkeypatch, capsys, *args)
    assert code == 0, message
    assert (tmp_path / "out").is_symlink() and os.readlink(tmp_path / "out") == str(real)
    assert "model.safetensors" in listing(real) and "stale.safetensors" not in listing(real)
    assert listing(tmp_path / "disk") == ["merged"]  # no .chatvector-old-* or staging left
    assert sorted(listing(tmp_path)) == ["base", "chat", "cp", "disk", "out"]
    assert load_file(real / "model.safetensors")


def test_a_link_to_a_non_empty_directory_needs_force(monkeypatch, capsys, fresh, tmp_path):
    real = tmp_path / "disk" / "merged"
    real.mkdir(parents=True)
    (real / "keep.txt").write_text("mine")
    (tmp_path / "out").symlink_to(real)
    outcome(
        monkeypatch,
        capsys,
        [*fresh.values(), real],
        tmp_path,
        merge_args(fresh, tmp_path / "out"),
        2,
        "OutputError",
        "--force",
    )
    assert listing(tmp_path / "disk") == ["merged"]


def test_the_staging_of_a_dead_run_is_removed_when_its_lock_is_taken_over(monkeypatch, capsys, fresh, tmp_path):
    """What ``kill -9`` leaves: a lock naming a dead process, a staging directory, an old OUT half-swapped."""
    (tmp_path / ".out.chatvector-lock").write_text(str(dead_pid()))
    for name in (".out.chatvector-tmp-0badc0de", ".out.chatvector-old-0badc0de"):
        (tmp_path / name).mkdir()
        (tmp_path / name / "model.safetensors").write_bytes(b"partial")
    other = tmp_path / ".other.chatvector-tmp-0badc0de"  # another OUT's staging: not ours to remove
    other.mkdir()
    code, message = run_cli(monkeypatch, capsys, *merge_args(fresh, tmp_path / "out"))
    assert code == 0, message
    assert sorted(listing(tmp_path)) == sorted(["base", "chat", "cp", "out", other.name])


def test_a_live_lock_is_respected(monkeypatch, capsys, fresh, tmp_path):
    (tmp_path / ".out.chatvector-lock").write_text(str(os.getpid()))  # this process: alive
    (tmp_path / ".out.chatvector-tmp-0badc0de").mkdir()  # its staging: must stay
    before = fingerprint(tmp_path / ".out.chatvector-tmp-0badc0de")
    outcome(
        monkeypatch,
        capsys,
        fresh.values(),
        tmp_path,
        merge_args(fresh, tmp_path / "out"),
        2,
        "OutputError",
        "another chatvector run is writing",
        ".out.chatvector-lock",
    )
    assert fingerprint(tmp_path / ".out.chatvector-tmp-0badc0de") == before


def test_a_long_out_name_gets_its_leftovers_removed_too(monkeypatch, capsys, fresh, tmp_path):
    """Near NAME_MAX the lock and staging names are shortened; a dead run's are still found."""
    out = tmp_path / ("n" * 250)
    code, message = run_cli(monkeypatch, capsys, *merge_args(fresh, out))
    assert code == 0, message
    from chatvector.io.output import _sibling_stem

    stem = _sibling_stem(out)
    assert len(stem) < 250
    (tmp_path / f"{stem}.chatvector-lock").write_text(str(dead_pid()))
    (tmp_path / f"{stem}.chatvector-tmp-0badc0de").mkdir()
    code, message = run_cli(monkeypatch, capsys, *merge_args(fresh, out), "--force")
    assert code == 0, message
    assert sorted(listing(tmp_path)) == sorted(["base", "chat", "cp", out.name])
