"""``chatvector chat``: a terminal chat with any model directory or served model."""

from __future__ import annotations

from collections.abc import Callable, Iterator

import click

from chatvector.chat import HELP, ChatSession, Conversation
from chatvector.cli.common import say, shown

__all__ = ["chat_command"]


def _backend(model: str, backend: str, base_url: str | None, api_key_env: str, max_new_tokens: int,
             temperature: float) -> Callable[[Conversation], Iterator[str]]:
    from chatvector.eval.backends import GenerationSettings, HFBackend, OpenAIBackend

    settings = GenerationSettings(max_new_tokens=max_new_tokens, temperature=temperature)
    if backend == "openai":
        if not base_url:
            raise click.UsageError("--backend openai needs --base-url")
        return OpenAIBackend(base_url, model, api_key_env=api_key_env, settings=settings).stream
    local = HFBackend(model, settings)
    return local.stream


@click.command("chat")
@click.argument("model")
@click.option("--backend", type=click.Choice(["hf", "openai"]), default="hf", show_default=True)
@click.option("--base-url", help="OpenAI-compatible endpoint for --backend openai.")
@click.option("--api-key-env", default="OPENAI_API_KEY", show_default=True)
@click.option("--system", default=None, help="System prompt.")
@click.option("--max-new-tokens", default=256, show_default=True)
@click.option("--temperature", default=0.0, show_default=True, help="0 = greedy.")
def chat_command(model: str, backend: str, base_url: str | None, api_key_env: str, system: str | None,
                 max_new_tokens: int, temperature: float) -> None:
    """Chat with MODEL (a model directory, or a model name on a served endpoint)."""
    session = ChatSession(_backend(model, backend, base_url, api_key_env, max_new_tokens, temperature),
                          system=system)
    say(f"Chatting with {model}. {HELP}")
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
