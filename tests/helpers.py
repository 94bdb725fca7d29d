"""Helpers shared by the bad-input and hardening tests: run the CLI in-process, prove inputs untouched."""

from __future__ import annotations

import hashlib
import shutil
import signal
import sys

import pytest

from chatvector.cli import main


def snapshot(*folders):
    """(path, sha256) of every file under the folders: proves inputs were not touched."""
    return sorted(
        (str(p), hashlib.sha256(p.read_bytes()).hexdigest())
        for folder in folders
        for p in sorted(folder.rglob("*"))
        if p.is_file()
    )


def run_cli(monkeypatch, capsys, *args):
    monkeypatch.setattr(sys, "argv", ["chatvector", *map(str, args)])
    with pytest.raises(SystemExit) as exit_info:
        main()
    captured = capsys.readouterr()
    return exit_info.value.code, " ".join((captured.err + captured.out).split())


def as_from_a_terminal() -> None:
    """``preexec_fn`` for a child that a test will Ctrl-C: SIGINT at its default, as a terminal leaves it.

    A test run started without a terminal (``cmd &``, some CI runners) ignores SIGINT, an ignored
    signal stays ignored across ``exec``, and chatvector deliberately keeps it ignored (as ``nohup``
    expects); such a child would never see the test's Ctrl-C and would finish its work instead.
    """
    signal.signal(signal.SIGINT, signal.SIG_DFL)


def copy_model(source, folder):
    shutil.copytree(source, folder)
    return folder


def no_leftovers(parent, name="out"):
    """Neither OUT nor a staging directory or lock beside it."""
    return not (parent / name).exists() and not [p for p in parent.iterdir() if f".{name}." in p.name]


def merge_args(fresh, out, **overrides):
    models = {"base": fresh["base"], "chat": fresh["chat"], "target": fresh["cp"], **overrides}
    return [
        "merge",
        "--base",
        models["base"],
        "--chat",
        models["chat"],
        "--target",
        models["target"],
        "--ratio",
        "0.5",
        "-o",
        out,
    ]


def trio_merge(trio, out, *options, target=None):
    """``merge --base B --chat C --target T OPTIONS -o OUT`` for a trio of tiny models (target: its cp)."""
    return ["merge", "--base", trio.base, "--chat", trio.chat, "--target", target or trio.cp, *options, "-o", out]


def check_failure(monkeypatch, capsys, fresh, tmp_path, args, *expected_words):
    before = snapshot(*fresh.values())
    code, message = run_cli(monkeypatch, capsys, *args)
    assert code != 0
    for word in expected_words:
        assert word in message, message
    assert snapshot(*fresh.values()) == before
    assert no_leftovers(tmp_path)
    return message
