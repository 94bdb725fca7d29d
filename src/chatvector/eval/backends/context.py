"""The model's context window, and generation lengths that fit it.

A model cannot attend past its context (``max_position_embeddings`` in ``config.json``; ``n_positions``
for GPT-2), and servers refuse a request whose prompt plus ``max_tokens`` exceeds it. So every
backend that knows the limit asks for ``min(--max-new-tokens, context - prompt)`` new tokens, says
so once in the log the first time it shortens a request, and refuses a prompt that leaves no room at
all with a clear error instead of a server's HTTP 400 or a model's index error.
"""

from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import Any

from chatvector.errors import EvalError

__all__ = ["ContextCap", "context_of_config", "context_of_model_dir"]

log = logging.getLogger(__name__)

_CONTEXT_KEYS = ("max_position_embeddings", "n_positions", "max_sequence_length", "seq_length")


def context_of_config(config: Any) -> int | None:
    """The context length a model config declares (a ``dict`` or a transformers config), if any."""
    for key in _CONTEXT_KEYS:
        value = config.get(key) if isinstance(config, dict) else getattr(config, key, None)
        if isinstance(value, int) and not isinstance(value, bool) and value > 0:
            return value
    text = config.get("text_config") if isinstance(config, dict) else getattr(config, "text_config", None)
    return None if text is None else context_of_config(text)  # multimodal models: the language model's


def context_of_model_dir(model_dir: str | Path) -> int | None:
    """The context length ``MODEL/config.json`` declares, or None (no config, no such field)."""
    try:
        config = json.loads(Path(model_dir, "config.json").read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    return context_of_config(config)


class ContextCap:
    """``--max-new-tokens`` capped to what a prompt leaves of the context, said once.

    Args:
        wanted: ``--max-new-tokens``.
        context: the model's context length (None: unknown, nothing is capped).
        where: the model, for messages.
    """

    def __init__(self, wanted: int, context: int | None, where: str) -> None:
        self.wanted, self.context, self.where = wanted, context, where
        self._said = False

    def new_tokens(self, prompt_tokens: int) -> int:
        """How many tokens to generate after a prompt of ``prompt_tokens`` tokens.

        Raises:
            EvalError: the prompt alone fills the context.
        """
        if self.context is None:
            return self.wanted
        room = self.context - prompt_tokens
        if room < 1:
            raise EvalError(
                f"{self.where}: a prompt of {prompt_tokens} tokens fills the model's context of {self.context} "
                "tokens (max_position_embeddings) and leaves no room for a reply; use shorter prompts "
                "(--data) or a model with a longer context"
            )
        if room < self.wanted and not self._said:
            self._said = True
            log.warning(
                "%s: --max-new-tokens %d is capped so that prompt + reply fit the model's context of %d tokens; %s",
                self.where,
                self.wanted,
                self.context,
                f"replies to prompts longer than {self.context - self.wanted} tokens are cut shorter"
                if self.wanted < self.context
                else "every reply is cut shorter (the limit alone exceeds the context)",
            )
        return min(self.wanted, room)
