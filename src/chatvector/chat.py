"""A chat session with any model: the history, the slash commands, streamed replies.

The whole history is sent every turn, through the model's own chat template and stop ids.
Slash commands: ``/reset`` (forget the history), ``/system TEXT`` (set a system prompt and
reset), ``/save FILE`` (write the conversation as JSON), ``/quit``.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

__all__ = ["ChatSession", "HELP"]

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
            return self._save(Path(argument.strip()).expanduser())
        return f"unknown command /{name}. {HELP}"

    def _save(self, path: Path) -> str:
        """Write the conversation to ``path``; a path that cannot be written is said, and the
        session and its history go on untouched."""
        try:
            path.write_text(json.dumps(self.messages(), ensure_ascii=False, indent=2) + "\n", encoding="utf-8")
        except OSError as error:
            return f"(could not save to {path}: {error.strerror or error}; the conversation is kept, try another path)"
        return f"(saved {len(self.messages())} messages to {path})"

    def say(self, text: str) -> Iterator[str]:
        """Send a user message; yield the reply as it streams, then keep it in the history."""
        self.history.append({"role": "user", "content": text})
        pieces = []
        for piece in self.reply(self.messages()):
            pieces.append(piece)
            yield piece
        self.history.append({"role": "assistant", "content": "".join(pieces).strip()})
