"""A serving engine started for the model under test, and stopped again however the run ends.

``--serve vllm|sglang|transformers`` (presets in :data:`~chatvector.eval.options.SERVE_PRESETS`) or
``--serve 'CMD ... {model} ... {port}'``: chatvector picks a free port on 127.0.0.1, starts the
command in its own process group (its output in ``server.log``), waits until ``GET /v1/models``
answers, and evaluates through the OpenAI-compatible API. When the block ends (success, error,
Ctrl-C, SIGTERM, SIGHUP: the CLI turns those into exceptions) the whole process group gets
SIGTERM, then SIGKILL after a grace period, so no worker process of the engine outlives the run.
On Linux the server also gets SIGTERM from the kernel if chatvector itself is killed outright.
Every error about the server quotes the end of its log.
"""

from __future__ import annotations

import logging
import os
import shlex
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from types import TracebackType
from typing import IO, Any

from chatvector.errors import EvalError, InputError
from chatvector.eval.options import SERVE_PRESETS, BackendOptions
from chatvector.eval.serve_reload import reload_of

__all__ = ["ServedModel", "serve_command", "free_port", "STOP_GRACE"]

log = logging.getLogger(__name__)

STOP_GRACE = 15.0  # seconds between SIGTERM and SIGKILL (vLLM needs a few to free the GPU)
PORT_ATTEMPTS = 3  # a free port can be taken by another process before the server binds it
PLACEHOLDERS = ("{model}", "{port}", "{dtype}", "{device}")
_STOP_SIGNALS = {signal.SIGINT, signal.SIGTERM, signal.SIGHUP}
_PRESET_EXTRA = {
    "vllm": "pip install vllm",
    "sglang": "pip install 'sglang[all]'",
    "transformers": "pip install 'chatvector[serve]'",
    "llama.cpp": "pip install 'chatvector[gguf]'",
    "llama-server": "build llama.cpp's llama-server and put it on PATH (docs/gguf.md)",
}


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on right now."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _program(name: str, preset: str | None) -> str:
    """The executable for a command's first word: PATH first, then beside this interpreter (an
    unactivated virtual environment's ``bin``)."""
    if preset is not None and name == "python":
        return sys.executable
    found = shutil.which(name) or shutil.which(name, path=str(Path(sys.executable).parent))
    if found is None:
        hint = f"; install it ({_PRESET_EXTRA[preset]})" if preset in _PRESET_EXTRA else ""
        raise InputError(f"--serve: program {name!r} not found on PATH{hint}", option="--serve")
    return found


def serve_command(model: str, port: int, options: BackendOptions) -> list[str]:
    """The argument list that starts the server for ``model`` on ``port``.

    Raises:
        InputError: a custom command without ``{model}`` or ``{port}``, or one that cannot be parsed.
    """
    spec = options.serve or ""
    preset = spec if spec in SERVE_PRESETS else None
    template = SERVE_PRESETS[preset] if preset else spec
    try:
        words = shlex.split(template)
    except ValueError as error:
        raise InputError(f"--serve {spec!r}: {error}", option="--serve") from None
    if not words or ("{model}" not in template or "{port}" not in template):
        raise InputError(
            f"--serve {spec!r}: give a preset ({', '.join(SERVE_PRESETS)}) or a command with "
            "{model} and {port} placeholders, e.g. 'my-server --model {model} --port {port}'",
            option="--serve",
        )
    values = {"{model}": model, "{port}": str(port), "{dtype}": options.dtype, "{device}": options.device}
    filled = []
    for word in words:
        for placeholder in PLACEHOLDERS:
            word = word.replace(placeholder, values[placeholder])
        filled.append(word)
    return [_program(filled[0], preset), *filled[1:], *options.serve_arg]


# Run before the server's own program, in the fresh single-threaded child: ask the kernel to send
# SIGTERM when chatvector dies (even by SIGKILL or the OOM killer), then become the server (same PID).
_DIE_WITH_PARENT = (
    "import ctypes, os, sys\n"
    "ctypes.CDLL(None).prctl(1, 15)  # PR_SET_PDEATHSIG, SIGTERM\n"
    "os.execv(sys.argv[1], sys.argv[1:])\n"
)


def log_tail(path: Path, lines: int = 30, chars: int = 4000) -> str:
    """The last ``lines`` lines of a log (at most ``chars`` characters), for error messages."""
    try:
        text = path.read_bytes()[-chars * 4 :].decode("utf-8", errors="replace")
    except OSError:
        return "(no log)"
    kept = "\n".join(text.splitlines()[-lines:])[-chars:]
    return kept or "(the log is empty)"


class ServedModel:
    """A server for ``model`` started on entry and stopped on exit, as a context manager.

    Args:
        model: the model directory (or whatever the command's ``{model}`` should receive).
        options: ``serve``, ``serve_arg``, ``serve_timeout``, ``dtype`` and ``device`` are used.
        log_dir: where ``server.log`` goes (default: a temporary directory, removed on a clean exit).
        grace: seconds between SIGTERM and SIGKILL.
    """

    def __init__(
        self, model: str, options: BackendOptions, *, log_dir: Path | None = None, grace: float = STOP_GRACE
    ) -> None:
        self.model = model
        self.options = options
        self.grace = grace
        self.port = free_port()
        self.command = self.command_for(self.port)
        self._own_log_dir = log_dir is None
        self.log_dir = Path(tempfile.mkdtemp(prefix="chatvector-serve-")) if log_dir is None else Path(log_dir)
        self.log_path = self.log_dir / "server.log"
        self.base_url = f"http://127.0.0.1:{self.port}/v1"
        self.model_name = model
        self.process: subprocess.Popen[bytes] | None = None
        self._reported = False  # an error already quoting the log was raised
        self.weights = model  # the directory whose weights the server holds (changed by reload)

    def identity(self) -> dict[str, Any]:
        """The engine and its arguments (not the port): part of the replies cache's key."""
        return {"serve": self.options.serve, "serve_arg": list(self.options.serve_arg), "dtype": self.options.dtype}

    def describe(self) -> dict[str, Any]:
        """The command that was run (with its port), where its log is, and, once the server was told
        to load other weights, where they came from."""
        reloaded = {} if self.weights == self.model else {"weights_reloaded_from": self.weights}
        return {**self.identity(), "command": shlex.join(self.command), "log": str(self.log_path), **reloaded}

    def reload(self, model_dir: str) -> None:
        """Tell the running server to load the weights in ``model_dir``, by the request its preset
        declares (:mod:`chatvector.eval.serve_reload`); waits up to ``serve_timeout`` seconds.

        Raises:
            EvalError: the preset declares no reload, the server has exited, or it did not load the
                weights (one line with the engine's own message; its log is named).
        """
        import httpx

        how = reload_of(self.options)
        if how is None:
            raise EvalError(f"--serve {self.options.serve}: no documented weight reload", option="--serve")
        self.check()
        url = f"http://127.0.0.1:{self.port}{how.route}"
        payload: Any
        try:
            response = httpx.post(url, json=how.body(model_dir), timeout=self.options.serve_timeout)
        except httpx.HTTPError as error:
            self.check()  # the server died during the reload: say so, with its log
            status, payload = 0, f"no answer ({type(error).__name__})"
        else:
            status = response.status_code
            try:
                payload = response.json()
            except ValueError:
                payload = response.text[:200]
        failure = how.failure(status, payload)
        if failure is not None:
            self._reported = True
            raise EvalError(
                f"{how.engine} did not load the weights in {model_dir} (POST {how.route}): {failure}; "
                f"the server's log is {self.log_path}",
                option="--serve-reload",
            )
        self.weights = model_dir
        log.info("%s loaded the weights in %s", how.engine, model_dir)

    def __enter__(self) -> ServedModel:
        attempt = 1
        while True:
            self.start()
            try:
                self.wait_until_ready()
                return self
            except EvalError:
                self.stop()
                if attempt == PORT_ATTEMPTS or not self._port_was_taken():
                    raise
                # the free port was taken between our check and the server's bind (parallel sweeps)
                log.warning("port %d was taken before the server bound it; trying another", self.port)
                attempt += 1
                self._move_to(free_port())
            except BaseException:
                self.stop()
                raise

    def command_for(self, port: int) -> list[str]:
        """The argument list that starts the server on ``port`` (a preset may add its own arguments)."""
        return serve_command(self.model, port, self.options)

    def _move_to(self, port: int) -> None:
        self.port = port
        self.command = self.command_for(port)
        self.base_url = f"http://127.0.0.1:{port}/v1"
        self._reported = False

    def _port_was_taken(self) -> bool:
        text = log_tail(self.log_path, lines=200, chars=20000).lower()
        return (
            self.process is not None
            and self.process.returncode is not None
            and ("address already in use" in text or "eaddrinuse" in text)
        )

    def __exit__(
        self, kind: type[BaseException] | None, error: BaseException | None, traceback: TracebackType | None
    ) -> None:
        died = self.process is not None and self.process.poll() is not None
        self.stop()
        about_us = died or self.base_url in str(error)  # not, say, a judge's failure elsewhere
        if isinstance(error, EvalError) and about_us and not self._reported:
            note = self._exit_note() if died else self._log_note()
            raise type(error)(f"{error}\n{note}") from error
        if error is None and self._own_log_dir:
            shutil.rmtree(self.log_dir, ignore_errors=True)

    def start(self) -> None:
        """Start the command in a new session (its own process group)."""
        self.log_dir.mkdir(parents=True, exist_ok=True)
        handle: IO[bytes] = self.log_path.open("wb")
        with handle:
            handle.write(f"# chatvector: {shlex.join(self.command)}\n".encode())
            handle.flush()
            launch = (
                [sys.executable, "-c", _DIE_WITH_PARENT, *self.command] if sys.platform == "linux" else self.command
            )
            try:
                self.process = subprocess.Popen(
                    launch, stdin=subprocess.DEVNULL, stdout=handle, stderr=subprocess.STDOUT, start_new_session=True
                )
            except OSError as error:
                raise EvalError(
                    f"--serve: cannot start {self.command[0]}: {error.strerror or error}", option="--serve"
                ) from None
            handle.write(f"# chatvector: server PID {self.process.pid}\n".encode())
        log.info("started %s (PID %d), log in %s", shlex.join(self.command), self.process.pid, self.log_path)

    def wait_until_ready(self) -> None:
        """Poll ``GET /v1/models`` until it answers; learn the served model's name from it.

        Raises:
            EvalError: the server exited first, or did not answer within ``serve_timeout`` seconds;
                the message quotes the end of its log.
        """
        import httpx

        deadline = time.monotonic() + self.options.serve_timeout
        while True:
            self.check()
            try:
                response = httpx.get(f"{self.base_url}/models", timeout=2.0)
                if response.status_code == 200:
                    self._learn_name(response.json())
                    log.info("server ready at %s, serving %s", self.base_url, self.model_name)
                    return
            except (httpx.TransportError, ValueError):
                pass
            if time.monotonic() > deadline:
                self._reported = True
                raise EvalError(
                    f"the server did not answer GET {self.base_url}/models within "
                    f"{self.options.serve_timeout:g} s (--serve-timeout); command: "
                    f"{shlex.join(self.command)}\n{self._log_note()}",
                    option="--serve-timeout",
                )
            time.sleep(0.5)

    def _learn_name(self, listing: Any) -> None:
        names = (
            [m.get("id") for m in (listing.get("data") or []) if isinstance(m, dict)]
            if isinstance(listing, dict)
            else []
        )
        if self.model in names or not names:
            self.model_name = self.model
        elif len(names) == 1 and isinstance(names[0], str):
            self.model_name = names[0]

    def check(self) -> None:
        """Raise if the server has exited (with its exit code and the end of its log)."""
        if self.process is not None and self.process.poll() is not None:
            self._reported = True
            raise EvalError(
                f"the server exited ({self._exit_note(log=False)}); command: "
                f"{shlex.join(self.command)}\n{self._log_note()}",
                option="--serve",
            )

    def _exit_note(self, *, log: bool = True) -> str:
        code = self.process.returncode if self.process is not None else None
        what = f"signal {-code}" if code is not None and code < 0 else f"code {code}"
        note = f"exit {what}"
        return f"the server had exited ({note})\n{self._log_note()}" if log else note

    def _log_note(self) -> str:
        return f"The server's log ({self.log_path}) ends with:\n{log_tail(self.log_path)}"

    def stop(self) -> None:
        """SIGTERM to the server's process group, SIGKILL after ``grace`` seconds; no stop signal
        (a second Ctrl-C) can cut this short and leave the server running."""
        process = self.process
        if process is None:
            return
        blocked = _block_stop_signals()
        try:
            _signal_group(process.pid, signal.SIGTERM)
            try:
                process.wait(timeout=self.grace)
            except subprocess.TimeoutExpired:
                log.warning("the server (PID %d) ignored SIGTERM for %g s; killing it", process.pid, self.grace)
            _signal_group(process.pid, signal.SIGKILL)  # also any child that outlived the leader
            process.wait()
        finally:
            _unblock(blocked)


def _signal_group(pid: int, signum: int) -> None:
    try:
        os.killpg(pid, signum)
    except (ProcessLookupError, PermissionError):
        pass


def _block_stop_signals() -> bool:
    if sys.platform == "win32" or not hasattr(signal, "pthread_sigmask"):
        return False
    signal.pthread_sigmask(signal.SIG_BLOCK, _STOP_SIGNALS)
    return True


def _unblock(blocked: bool) -> None:
    if blocked:
        signal.pthread_sigmask(signal.SIG_UNBLOCK, _STOP_SIGNALS)  # pending ones are delivered now
