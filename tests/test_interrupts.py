"""A stop request stops the run it lands in, and only that one."""

from __future__ import annotations

import signal

import pytest

import chatvector
from chatvector import interrupts


def test_a_caught_stop_does_not_abort_the_next_merge(trios, tmp_path):
    """A notebook or service that catches Ctrl-C must be able to merge again afterwards."""
    trio = trios["llama"]
    interrupts.request_stop(signal.SIGINT)
    with pytest.raises(KeyboardInterrupt):
        chatvector.merge(base=trio.base, chat=trio.chat, target=trio.cp, ratio=0.5, out=tmp_path / "first")
    assert not (tmp_path / "first").exists()
    report = chatvector.merge(base=trio.base, chat=trio.chat, target=trio.cp, ratio=0.5, out=tmp_path / "second")
    assert report.tensors > 0 and (tmp_path / "second" / "config.json").exists()


def test_check_raises_each_request_once():
    interrupts.request_stop(signal.SIGTERM)
    assert interrupts.pending() == signal.SIGTERM
    with pytest.raises(SystemExit) as stopped:
        interrupts.check()
    assert stopped.value.code == 128 + signal.SIGTERM
    interrupts.check()  # consumed: nothing left to raise
    assert interrupts.pending() is None
