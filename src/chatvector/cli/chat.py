"""``chatvector chat``: a terminal chat with a model directory, a served model, or a server started for it."""

from __future__ import annotations

from typing import Any

import click

from chatvector.chat import HELP, ChatSession
from chatvector.cli.common import say, shown
from chatvector.cli.options import build, flags
from chatvector.eval.options import BackendOptions, GenerationOptions

__all__ = ["chat_command"]

# batch_tokens, batch_rows and concurrency are about many prompts at once; a chat sends one.
_BACKEND_FLAGS = (
    "backend",
    "base_url",
    "model_name",
    "api_key_env",
    "serve",
    "serve_arg",
    "serve_timeout",
    "device",
    "dtype",
    "device_map",
    "threads",
)


@click.command("chat")
@click.argument("model")
@click.option("--system", default=None, help="System prompt.")
@flags(BackendOptions, only=_BACKEND_FLAGS, command="chat")
@flags(GenerationOptions, command="chat")
def chat_command(model: str, system: str | None, **values: Any) -> None:
    """Chat with MODEL (a model directory, or a model name on a served endpoint)."""
    from chatvector.eval.backends import open_backend

    options, generation = build(BackendOptions, values), build(GenerationOptions, values)
    with open_backend(model, options, generation) as backend:
        if not backend.capabilities.streams:
            raise click.UsageError(f"the {backend.name} backend cannot stream a chat")
        session = ChatSession(backend.stream, system=system)
        say(f"Chatting with {model}. {HELP}")
        _talk(session)


def _talk(session: ChatSession) -> None:
    while True:
        try:
            line = input("you> ")
        except EOFError:
            break
        if not line.strip():
            continue
        if line.startswith("/"):
            message = session.command(line.strip())
            if message is None:
                break
            say(message)
            continue
        click.echo("bot> ", nl=False)
        for piece in session.say(line):
            click.echo(shown(piece), nl=False)  # model output: no terminal control sequences
        click.echo()
