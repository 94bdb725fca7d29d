"""The ``chatvector`` command line: one module per command under this package, each of which
parses its options, calls the library and prints. This package is the only place that imports
click and rich.

Commands are imported when they run, so ``chatvector --help`` answers at once and a command
needing an optional extra (torch for ``eval``, matplotlib for plots) fails only when used, with a
message naming the extra.
"""

from __future__ import annotations

import importlib
import logging
import signal
import sys
from typing import TextIO

import click
from rich.logging import RichHandler
from rich.text import Text

from chatvector import interrupts
from chatvector._version import __version__
from chatvector.cli.common import err_console, show_progress, shown
from chatvector.errors import ChatVectorError

__all__ = ["cli", "main", "COMMANDS"]

log = logging.getLogger("chatvector")

# name -> ("module:attribute" of the click command, one-line help).
COMMANDS: dict[str, tuple[str, str]] = {
    "extract": ("chatvector.cli.merge:extract_command", "Extract the chat vector CHAT - BASE into a vector directory."),
    "apply": (
        "chatvector.cli.merge:apply_command",
        "Apply extracted chat vectors to a target: target + sum(r_i * v_i).",
    ),
    "merge": ("chatvector.cli.merge:merge_command", "Merge TARGET + RATIO * (CHAT - BASE) in one streaming pass."),
    "export": ("chatvector.cli.export:export_command", "Write an existing model as a GGUF file for llama.cpp."),
    "lora": ("chatvector.cli.lora:lora_command", "Write a chat vector as a PEFT LoRA adapter (truncated SVD)."),
    "verify": ("chatvector.cli.verify:verify_command", "Check an output's tensors; recompute them from its recipe."),
    "inspect": (
        "chatvector.cli.inspect:inspect_command",
        "Per-layer norms of chat vectors and their cosine similarity.",
    ),
    "eval": (
        "chatvector.cli.eval:eval_command",
        "Evaluate a model: instruction following, safety, toxicity, multi-turn, language.",
    ),
    "compare": ("chatvector.cli.compare:compare_command", "Paired differences between eval runs, with p-values."),
    "sweep": (
        "chatvector.cli.sweep:sweep_command",
        "Merge at several ratios, evaluate each, plot the trade-off, recommend a ratio.",
    ),
    "chat": ("chatvector.cli.chat:chat_command", "Chat with a model in the terminal."),
    "demo": (
        "chatvector.cli.demo:demo_command",
        "Train a tiny bilingual model family on the CPU and show the chat-vector effect.",
    ),
}


class LazyGroup(click.Group):
    """A click group whose commands are imported on first use."""

    def list_commands(self, ctx: click.Context) -> list[str]:
        return list(COMMANDS)

    def get_command(self, ctx: click.Context, cmd_name: str) -> click.Command | None:
        if cmd_name not in COMMANDS:
            return None
        module_name, attr = COMMANDS[cmd_name][0].split(":")
        return getattr(importlib.import_module(module_name), attr)

    def format_commands(self, ctx: click.Context, formatter: click.HelpFormatter) -> None:
        with formatter.section("Commands"):
            formatter.write_dl([(name, help_text) for name, (_, help_text) in COMMANDS.items()])


class _Escaped(logging.Formatter):
    """Log lines with control and bidi characters escaped: log messages carry paths and tensor names."""

    def format(self, record: logging.LogRecord) -> str:
        return shown(super().format(record))


def _setup_logging(verbose: int, quiet: bool) -> None:
    # Results are printed by the commands; library logs are for -v (progress details) and -vv.
    # -q keeps warnings (a lineage warning is worth seeing in a script too) and drops the rest.
    level = logging.WARNING if quiet else {0: logging.WARNING, 1: logging.INFO}.get(verbose, logging.DEBUG)
    if err_console.is_terminal:
        handler: logging.Handler = RichHandler(
            console=err_console, show_path=False, show_time=False, markup=False, highlighter=None
        )
        handler.setFormatter(_Escaped("%(message)s"))
    else:  # plain lines when piped: a log file should read like one
        handler = logging.StreamHandler(sys.stderr)
        handler.setFormatter(_Escaped("%(asctime)s %(levelname)s %(name)s: %(message)s", "%H:%M:%S"))
    logging.basicConfig(level=level, handlers=[handler], force=True)
    # transformers and huggingface_hub are chatty at INFO; keep them to warnings.
    for noisy in ("transformers", "huggingface_hub", "urllib3", "httpx", "httpcore", "filelock"):
        logging.getLogger(noisy).setLevel(max(level, logging.WARNING))


@click.group(cls=LazyGroup, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="chatvector")
@click.option("-v", "--verbose", count=True, help="More log output (-vv for debug).")
@click.option("-q", "--quiet", is_flag=True, help="No progress output: only results, warnings and errors.")
def cli(verbose: int, quiet: bool) -> None:
    """Chat vectors: give a continually pre-trained LLM chat skills in its new language."""
    _setup_logging(verbose, quiet)
    show_progress(not quiet)


def _stop(signum: int, frame: object) -> None:
    # Raised in the main thread, so `finally` blocks remove staging directories and stop servers on
    # the way out; recorded too, because Python drops the exception when it lands in a finaliser.
    interrupts.request_stop(signum)
    interrupts.check()


def _install_signal_handlers() -> None:
    signal.signal(signal.SIGTERM, _stop)
    signal.signal(signal.SIGHUP, _stop)  # the terminal closed: clean up as for SIGTERM
    if signal.getsignal(signal.SIGINT) is signal.default_int_handler:  # not when started ignoring it
        signal.signal(signal.SIGINT, _stop)


def _fail(kind: str, message: str) -> None:
    err_console.print(Text.assemble((kind, "bold red"), ": "), end="", highlight=False)
    err_console.print(shown(message), markup=False, highlight=False, soft_wrap=True)
    sys.exit(2)


class _EscapingStream:
    """A text stream that escapes control characters of what click prints (usage errors quote
    what the user typed)."""

    def __init__(self, stream: TextIO) -> None:
        self.stream = stream

    def write(self, text: str) -> int:
        return self.stream.write(shown(text))

    def flush(self) -> None:
        self.stream.flush()


def _run_click() -> None:
    """Run the click group outside its standalone mode, so its messages are printed escaped here."""
    try:
        code = cli.main(prog_name="chatvector", standalone_mode=False)
    except click.ClickException as error:
        error.show(file=_EscapingStream(sys.stderr))  # type: ignore[arg-type]  # click types file as IO[Any]; it only calls write
        sys.exit(error.exit_code)
    except click.exceptions.Abort:
        click.echo("Aborted!", file=sys.stderr)
        sys.exit(1)
    sys.exit(code if isinstance(code, int) else 0)


def main() -> None:
    """Console-script entry point: run the CLI, print chatvector errors as one clear message."""
    _install_signal_handlers()
    try:
        _run_click()
    except ChatVectorError as error:
        _fail(type(error).__name__, str(error))
    except OSError as error:
        # A file-system problem the code did not anticipate (read-only disk, permission): the path
        # and the system's reason are what the user needs, not a traceback.
        where = " and ".join(str(f) for f in (error.filename, error.filename2) if f)
        _fail("OSError", f"{where + ': ' if where else ''}{error.strerror or error}")
