"""The scripted backend: replies computed by a function, for tests and dry runs (made in code,
never chosen from options)."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

from chatvector.errors import EvalError
from chatvector.eval.backends.base import BackendKind, Capabilities, Conversation, Finish, OnReply, reply_callback

__all__ = ["ScriptedBackend", "KIND"]

CAPABILITIES = Capabilities(streams=True, loads_weights=False, per_model_endpoint=False)


class ScriptedBackend:
    """Replies computed by ``reply(conversation)``; for tests and dry runs.

    ``reply`` returns the text, or the text and its finish (``stop``, ``length``) to script a reply
    that was, or was not, cut off at the token limit; a bare text has no finish (None).
    """

    name = "scripted"
    capabilities = CAPABILITIES

    def __init__(self, reply: Callable[[Conversation], str | tuple[str, Finish]]) -> None:
        self._reply = reply

    def _scripted(self, conversation: Conversation) -> tuple[str, Finish | None]:
        reply = self._reply(conversation)
        return reply if isinstance(reply, tuple) else (reply, None)

    def generate(self, conversations: list[Conversation], on_reply: OnReply | None = None) -> list[str]:
        on_reply = reply_callback(on_reply)
        replies = []
        for index, conversation in enumerate(conversations):
            text, finish = self._scripted(conversation)
            replies.append(text)
            if on_reply is not None:
                on_reply(index, text, finish)
        return replies

    def stream(self, conversation: Conversation) -> Iterator[str]:
        """The whole reply as one piece."""
        yield self._scripted(conversation)[0]

    def describe(self) -> dict[str, Any]:
        return {"backend": self.name}

    def identity(self) -> dict[str, Any]:
        return {"backend": self.name, "reply": getattr(self._reply, "__qualname__", repr(self._reply))}

    def lm_eval_model(self, model: str) -> tuple[Any, dict[str, Any]]:
        raise EvalError(f"--lm-eval runs on the hf and openai backends, not {self.name}", option="--lm-eval")


KIND = BackendKind("scripted", "replies from a Python function, for tests", CAPABILITIES, chosen=None)
