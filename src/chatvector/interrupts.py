"""Stop requests (Ctrl-C, SIGTERM) that cannot get lost.

A signal handler's exception is raised wherever the main thread happens to be, and Python drops
it when that is inside a finaliser or weakref callback (seen here: mid-import, in
``_get_module_lock``'s callback; the merge then finished and exited 0). So the CLI's handlers
also record the request, and the library checks the record where it matters: while it waits for
the merge workers and right before an output is made visible. Library users who install no
handler never see a request.
"""

from __future__ import annotations

import signal

_requested: int | None = None


def request_stop(signum: int) -> None:
    """Remember that signal ``signum`` asked the run to stop."""
    global _requested
    _requested = signum


def check() -> None:
    """Raise as the signal's own handler would have, if a stop was requested."""
    if _requested is None:
        return
    if _requested == signal.SIGINT:
        raise KeyboardInterrupt
    raise SystemExit(128 + _requested)
