"""Faults during a merge: signals, a full disk, two merges racing for one OUT.

These run the installed ``chatvector`` console script in a subprocess, as a user would, on a trio
made large enough (one extra 192 MiB tensor per model) that a merge is still running when the test
interferes with it.
"""

from __future__ import annotations

import resource
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import pytest
import torch
from helpers import as_from_a_terminal, copy_model, no_leftovers, snapshot
from safetensors.torch import load_file, save_file

EXE = Path(sys.executable).parent / "chatvector"
PADDING = "model.fault_test_padding.weight"
pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def big(trios, tmp_path_factory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("big")
    models = {}
    for seed, role in enumerate(("base", "chat", "cp")):
        folder = copy_model(getattr(trios["mistral"], role), root / role)
        state = load_file(folder / "model.safetensors")
        state[PADDING] = torch.randn(6144, 8192, generator=torch.Generator().manual_seed(seed))
        save_file(state, folder / "model.safetensors", metadata={"format": "pt"})
        models[role] = folder
    return models


def merge_command(big: dict[str, Path], out: Path, *extra: str) -> list[str]:
    return [
        str(EXE),
        "merge",
        "--base",
        str(big["base"]),
        "--chat",
        str(big["chat"]),
        "--target",
        str(big["cp"]),
        "--ratio",
        "0.5",
        "-o",
        str(out),
        *extra,
    ]


def wait_for(condition: Callable[[], bool], process: subprocess.Popen, timeout: float = 120) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert process.poll() is None, f"merge ended early: {process.communicate()}"
        assert time.monotonic() < deadline, "timed out waiting for the merge to start writing"
        time.sleep(0.005)


def staging_dirs(parent: Path, name: str = "out") -> list[Path]:
    return [p for p in parent.iterdir() if p.name.startswith(f".{name}.chatvector-tmp-")]


def held_mid_merge(big: dict[str, Path], out: Path, attempts: int = 5) -> subprocess.Popen:
    """A merge stopped (SIGSTOP) while its staging directory exists, i.e. mid-merge, proven by state.

    On a loaded machine the test process can be starved long enough for the merge to finish between
    seeing the staging directory and stopping it; such an attempt is discarded and the merge rerun.
    """
    for _ in range(attempts):
        process = subprocess.Popen(
            merge_command(big, out),
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            preexec_fn=as_from_a_terminal,
        )
        wait_for(lambda: bool(staging_dirs(out.parent)), process)
        process.send_signal(signal.SIGSTOP)
        if process.poll() is None and staging_dirs(out.parent):
            return process
        process.send_signal(signal.SIGCONT)
        process.communicate(timeout=120)
        if out.exists():
            shutil.rmtree(out)
    raise AssertionError(f"the merge finished before it could be held, {attempts} times")


@pytest.mark.parametrize("signum", [signal.SIGINT, signal.SIGTERM, signal.SIGHUP], ids=["SIGINT", "SIGTERM", "SIGHUP"])
def test_signal_mid_merge_removes_the_partial_output(signum, big, tmp_path):
    """SIGHUP (the terminal closed) is handled like SIGTERM."""
    before = snapshot(*big.values())
    out = tmp_path / "out"
    process = held_mid_merge(big, out)
    process.send_signal(signum)
    process.send_signal(signal.SIGCONT)
    _, stderr = process.communicate(timeout=60)
    assert process.returncode != 0, stderr
    assert no_leftovers(tmp_path), list(tmp_path.iterdir())
    assert snapshot(*big.values()) == before


def test_a_rerun_after_kill_9_removes_what_the_dead_run_left(big, tmp_path):
    """SIGKILL cannot be handled: the lock and staging directory stay. The next run takes the stale
    lock over, removes the dead run's staging directory and finishes; nothing else is left."""
    out = tmp_path / "out"
    process = subprocess.Popen(merge_command(big, out), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    wait_for(lambda: bool(staging_dirs(tmp_path)), process)
    process.kill()
    process.communicate(timeout=60)
    assert staging_dirs(tmp_path) and (tmp_path / ".out.chatvector-lock").exists()
    rerun = subprocess.run(merge_command(big, out), capture_output=True, text=True, timeout=300)
    assert rerun.returncode == 0, rerun.stderr
    assert "left by a chatvector run that died" in rerun.stderr
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out"]


@pytest.mark.parametrize(("signum", "raised"), [(signal.SIGTERM, SystemExit), (signal.SIGINT, KeyboardInterrupt)])
def test_a_stop_whose_exception_was_lost_still_stops_the_merge(signum, raised, trios, tmp_path, monkeypatch):
    """Python drops a handler's exception that lands in a finaliser; the recorded request is
    checked while the workers run and before the output is published."""
    import chatvector
    from chatvector import interrupts

    monkeypatch.setattr(interrupts, "_requested", None)
    interrupts.request_stop(signum)  # as the CLI's handler does, minus the exception that got lost
    trio = trios["llama"]
    with pytest.raises(raised) as stopped:
        chatvector.merge(base=trio.base, chat=trio.chat, target=trio.cp, ratio=0.5, out=tmp_path / "out")
    if raised is SystemExit:
        assert stopped.value.code == 128 + signum
    assert no_leftovers(tmp_path), list(tmp_path.iterdir())


def limit_file_size(limit: int) -> Callable[[], None]:
    def apply() -> None:
        # Without this the kernel kills the writer with SIGXFSZ instead of returning EFBIG.
        signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
        resource.setrlimit(resource.RLIMIT_FSIZE, (limit, limit))

    return apply


# Runs the CLI on a file system that cannot reserve blocks, so a full disk shows up mid-write.
WITHOUT_FALLOCATE = """
import errno, os, sys
def refuse(*args):
    raise OSError(errno.EOPNOTSUPP, "not supported")
os.posix_fallocate = refuse
from chatvector.cli import main
sys.argv = ["chatvector", *sys.argv[1:]]
main()
"""


@pytest.mark.parametrize("reserve", [True, False], ids=["reserving", "mid-write"])
def test_full_disk_is_a_clear_error_and_keeps_nothing(reserve, big, tmp_path):
    """RLIMIT_FSIZE caps every file the merge writes at 64 MiB: the 192 MiB shard cannot fit.

    With block reservation the merge fails before computing; without it (file systems that cannot
    reserve) it fails part-way through writing the shard. Both must say "no space" and keep nothing.
    """
    before = snapshot(*big.values())
    command = merge_command(big, tmp_path / "out")
    if not reserve:
        command = [sys.executable, "-c", WITHOUT_FALLOCATE, *command[1:]]
    done = subprocess.run(command, capture_output=True, text=True, preexec_fn=limit_file_size(64 * 2**20), timeout=300)
    assert done.returncode != 0
    message = " ".join(done.stderr.split())
    assert "OutputError" in message and "no space left writing" in message, message
    assert no_leftovers(tmp_path), list(tmp_path.iterdir())
    assert snapshot(*big.values()) == before


def test_two_merges_racing_for_one_out(big, tmp_path):
    """The second merge starts while the first is mid-write (held there with SIGSTOP, so the
    overlap does not depend on timing): it fails naming the lock; the first then finishes and verifies."""
    out = tmp_path / "out"
    first = subprocess.Popen(
        merge_command(big, out, "--force"), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
    )
    wait_for(lambda: bool(staging_dirs(tmp_path)), first)
    first.send_signal(signal.SIGSTOP)
    try:
        second = subprocess.run(merge_command(big, out, "--force"), capture_output=True, text=True, timeout=300)
    finally:
        first.send_signal(signal.SIGCONT)
    _, first_stderr = first.communicate(timeout=300)
    assert first.returncode == 0, first_stderr
    loser = " ".join(second.stderr.split())
    assert second.returncode != 0 and "another chatvector run is writing" in loser, loser
    verified = subprocess.run(
        [str(EXE), "verify", str(out), "--recompute", "--full"], capture_output=True, text=True, timeout=300
    )
    assert verified.returncode == 0, verified.stdout + verified.stderr
    assert no_leftovers(tmp_path, "out") is False and not staging_dirs(tmp_path)
    assert not (tmp_path / ".out.chatvector-lock").exists()


def test_file_systems_without_fallocate_get_the_same_bytes(trios, tmp_path, monkeypatch):
    import errno
    import os

    import chatvector

    trio = trios["llama"]
    chatvector.merge(base=trio.base, chat=trio.chat, target=trio.cp, ratio=0.5, out=tmp_path / "reserved")

    def refuse(*args):
        raise OSError(errno.EOPNOTSUPP, "not supported")

    monkeypatch.setattr(os, "posix_fallocate", refuse)
    chatvector.merge(base=trio.base, chat=trio.chat, target=trio.cp, ratio=0.5, out=tmp_path / "extended")
    for shard in sorted((tmp_path / "reserved").glob("*.safetensors")):
        assert shard.read_bytes() == (tmp_path / "extended" / shard.name).read_bytes()
