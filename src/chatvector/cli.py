"""The ``chatvector`` command line: parses options, calls the library, prints.

Heavy libraries (torch, transformers) are imported inside the commands, so ``chatvector --help``
answers at once. Commands that live in feature packages (eval, demo, sweep, chat, inspect) are
loaded lazily by name.
"""

from __future__ import annotations

import importlib
import logging
import signal
import sys

import click
from rich.console import Console
from rich.logging import RichHandler

from chatvector import __version__, interrupts
from chatvector.errors import ChatVectorError

log = logging.getLogger("chatvector")
err_console = Console(stderr=True)

# name -> ("module:attribute" of a click command, one-line help). Imported only when the command
# runs, so `chatvector --help` stays instant and does not import torch.
LAZY_COMMANDS: dict[str, tuple[str, str]] = {
    "eval": ("chatvector.eval.cli:eval_command",
             "Evaluate a model: instruction following, safety, toxicity, multi-turn, language."),
    "demo": ("chatvector.demo.cli:demo_command",
             "Train a tiny bilingual model family on the CPU and show the chat-vector effect."),
    "sweep": ("chatvector.sweep_cli:sweep_command",
              "Merge at several ratios, evaluate each, plot the trade-off, recommend a ratio."),
    "chat": ("chatvector.chat:chat_command", "Chat with a model in the terminal."),
    "inspect": ("chatvector.inspect_cli:inspect_command",
                "Per-layer norms of chat vectors and their cosine similarity."),
}


class LazyGroup(click.Group):
    """A click group whose feature commands are imported on first use."""

    def list_commands(self, ctx: click.Context) -> list[str]:
        return sorted(set(super().list_commands(ctx)) | set(LAZY_COMMANDS))

    def get_command(self, ctx: click.Context, cmd_name: str) -> click.Command | None:
        if cmd_name not in LAZY_COMMANDS:
            return super().get_command(ctx, cmd_name)
        module_name, attr = LAZY_COMMANDS[cmd_name][0].split(":")
        try:
            return getattr(importlib.import_module(module_name), attr)
        except ModuleNotFoundError as error:
            raise click.UsageError(
                f"command {cmd_name!r} is unavailable: {error}. Install the extras with "
                "pip install 'chatvector[all]'"
            ) from None

    def format_commands(self, ctx: click.Context, formatter: click.HelpFormatter) -> None:
        rows = []
        for name in self.list_commands(ctx):
            if name in LAZY_COMMANDS:
                rows.append((name, LAZY_COMMANDS[name][1]))
            else:
                command = super().get_command(ctx, name)
                rows.append((name, command.get_short_help_str(80) if command else ""))
        with formatter.section("Commands"):
            formatter.write_dl(rows)


def _setup_logging(verbose: int, quiet: bool) -> None:
    # Results are printed by the commands; library logs are for -v (progress details) and -vv.
    level = {0: logging.WARNING, 1: logging.INFO}.get(verbose, logging.DEBUG)
    if quiet:
        level = logging.ERROR
    handler = RichHandler(console=err_console, show_path=False, show_time=False)
    logging.basicConfig(level=level, format="%(message)s", handlers=[handler], force=True)
    # transformers and huggingface_hub are chatty at INFO; keep them to warnings.
    for noisy in ("transformers", "huggingface_hub", "urllib3", "httpx"):
        logging.getLogger(noisy).setLevel(logging.WARNING)


@click.group(cls=LazyGroup, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="chatvector")
@click.option("-v", "--verbose", count=True, help="More log output (-vv for debug).")
@click.option("-q", "--quiet", is_flag=True, help="Only errors.")
def cli(verbose: int, quiet: bool) -> None:
    """Chat vectors: give a continually pre-trained LLM chat skills in its new language."""
    _setup_logging(verbose, quiet)


def _stop(signum: int, frame: object) -> None:
    # Raised in the main thread, so `finally` blocks remove staging directories on the way out;
    # recorded too, because Python drops the exception when it lands in a finaliser.
    interrupts.request_stop(signum)
    interrupts.check()


def main() -> None:
    """Console-script entry point: run the CLI, print chatvector errors as one clear message."""
    signal.signal(signal.SIGTERM, _stop)
    if signal.getsignal(signal.SIGINT) is signal.default_int_handler:  # not when started ignoring it
        signal.signal(signal.SIGINT, _stop)
    try:
        cli.main(prog_name="chatvector", standalone_mode=True)
    except ChatVectorError as error:
        err_console.print(f"[bold red]{type(error).__name__}[/]: {error}", highlight=False,
                          soft_wrap=True)
        sys.exit(2)


# The core commands (extract, apply, merge, verify) live in their own module so that this file
# stays a thin dispatcher.
from chatvector.cli_core import CORE_COMMANDS  # noqa: E402

for _command in CORE_COMMANDS:
    cli.add_command(_command)

__all__ = ["cli", "main"]
