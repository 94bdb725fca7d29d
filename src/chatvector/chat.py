"""``chatvector chat``: a terminal chat with any model directory or served model.

The whole history is sent every turn, through the model's own chat template and stop ids.
Slash commands: ``/reset`` (forget the history), ``/system TEXT`` (set a system prompt and
reset), ``/save FILE`` (write the conversation as JSON), ``/quit``.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import click

Conversation = list[dict[str, str]]
HELP = "Commands: /reset, /system TEXT, /save FILE, /quit"


@dataclass
class ChatSession:
    """History plus the slash commands; I/O is left to the caller so it can be tested."""

    reply: Callable[[Conversation], Iterator[str]]
    system: str | None = None
    history: Conversation = field(default_factory=list)

    def messages(self) -> Conversation:
        prefix = [{"role": "system", "content": self.system}] if self.system else []
        return prefix + self.history

    def command(self, line: str) -> str | None:
        """Run a slash command; return what to print, or None to quit."""
        name, _, argument = line[1:].partition(" ")
        if name in {"quit", "exit"}:
            return None
        if name == "reset":
            self.history.clear()
            return "(history cleared)"
        if name == "system":
            self.system = argument.strip() or None
            self.history.clear()
            return f"(system prompt {'set' if self.system else 'removed'}; history cleared)"
        if name == "save":
            if not argument.strip():
                return "usage: /save FILE"
            path = Path(argument.strip()).expanduser()
            path.write_text(json.dumps(self.messages(), ensure_ascii=False, indent=2) + "\n", encoding="utf-8")
            return f"(saved {len(self.messages())} messages to {path})"
        return f"unknown command /{name}. {HELP}"

    def say(self, text: str) -> Iterator[str]:
        """Send a user message; yield the reply as it streams, then keep it in the history."""
        self.history.append({"role": "user", "content": text})
        pieces = []
        for piece in self.reply(self.messages()):
            pieces.append(piece)
            yield piece
        self.history.append({"role": "assistant", "content": "".join(pieces).strip()})


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
    import torch

    torch.set_num_threads(min(2, torch.get_num_threads()))
    session = ChatSession(_backend(model, backend, base_url, api_key_env, max_new_tokens, temperature),
                          system=system)
    click.echo(f"Chatting with {model}. {HELP}")
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
            click.echo(message)
            continue
        click.echo("bot> ", nl=False)
        for piece in session.say(line):
            click.echo(piece, nl=False)
        click.echo()
