"""Stop requests (Ctrl-C, SIGTERM, SIGHUP) that cannot get lost, and do not outlive their run.

A signal handler's exception is raised wherever the main thread happens to be, and Python drops
it when that is inside a finaliser or weakref callback (seen here: mid-import, in
``_get_module_lock``'s callback; the merge then finished and exited 0). So the CLI's handlers
also record the request, and the library checks the record where it matters: while it waits for
the merge workers and right before an output is made visible. A request is consumed when
:func:`check` raises it, so a caller that catches the stop (a notebook, a long-lived service) can
run the next merge normally. Library users who install no handler never see a request.

Worker processes (the demo's, a sweep's ``--workers``) call :func:`die_with_parent` so that they
stop with the process that started them, even when it is killed outright.
"""

from __future__ import annotations

import os
import signal
import sys
import threading

__all__ = ["request_stop", "check", "reset", "pending", "die_with_parent"]

_lock = threading.Lock()
_requested: int | None = None


def request_stop(signum: int) -> None:
    """Remember that signal ``signum`` asked the run to stop."""
    global _requested
    with _lock:
        _requested = signum


def pending() -> int | None:
    """The signal of a stop request not yet raised, if any."""
    return _requested


def reset() -> None:
    """Forget any pending request."""
    global _requested
    with _lock:
        _requested = None


def check() -> None:
    """Raise as the signal's own handler would have, if a stop was requested; the request is consumed."""
    global _requested
    with _lock:
        signum, _requested = _requested, None
    if signum is None:
        return
    if signum == signal.SIGINT:
        raise KeyboardInterrupt
    raise SystemExit(128 + signum)


def die_with_parent(parent: int, signum: int = signal.SIGTERM) -> None:
    """Ask Linux to send this process ``signum`` when ``parent`` dies (even by ``kill -9``).

    Called first thing in a worker process started by ``parent``. Without it a worker whose parent
    was killed goes on with its task (minutes of CPU, files written after the run was stopped).
    If the parent is already gone when the request takes effect, the worker exits at once. A
    no-op elsewhere than Linux, where the pool's own shutdown is all there is.
    """
    if not sys.platform.startswith("linux"):
        return
    import ctypes

    pr_set_pdeathsig = 1
    libc = ctypes.CDLL(None, use_errno=True)
    libc.prctl(pr_set_pdeathsig, signum)
    if os.getppid() != parent:  # it died before prctl took effect (PID 1 may be a real parent in a container)
        os._exit(1)
