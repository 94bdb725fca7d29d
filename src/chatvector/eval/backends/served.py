"""The served backend: a serving engine started here for the model under test (``--serve vllm``,
``sglang``, ``transformers``, ``llama.cpp``, ``llama-server`` or a command of your own;
:mod:`chatvector.eval.serve`), evaluated through its OpenAI-compatible endpoint and stopped when
the block ends, however it ends.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import replace
from pathlib import Path
from typing import Any

from chatvector.errors import clashing_options
from chatvector.eval.backends.base import BackendKind, Capabilities, Conversation
from chatvector.eval.backends.context import context_of_model_dir
from chatvector.eval.backends.openai import OpenAIBackend
from chatvector.eval.options import BackendOptions, GenerationOptions
from chatvector.eval.serve import ServedModel
from chatvector.eval.serve_llamacpp import PRESETS as LLAMA_CPP_PRESETS
from chatvector.eval.serve_llamacpp import LlamaCppServedModel
from chatvector.eval.serve_reload import reload_of

__all__ = ["KIND", "ServedBackend"]

log = logging.getLogger(__name__)

CAPABILITIES = Capabilities(streams=True, loads_weights=True, per_model_endpoint=True)


@contextmanager
def _open(
    model: str,
    options: BackendOptions,
    generation: GenerationOptions,
    *,
    log_dir: Path | None = None,
    model_id: str | None = None,
) -> Iterator[OpenAIBackend]:
    context, count_tokens = _context_of(model)
    server = LlamaCppServedModel if options.serve in LLAMA_CPP_PRESETS else ServedModel
    with server(model, options, log_dir=log_dir) as served:
        extra_fields: dict[str, Any] = {}
        if isinstance(served, LlamaCppServedModel):
            extra_fields = served.request_fields(generation)
            if served.context is not None and context is not None:  # what each of the server's slots holds
                context = min(context, served.context)
        yield ServedBackend(
            served,
            served.base_url,
            options.model_name or served.model_name,
            api_key_env=options.api_key_env,
            settings=generation,
            concurrency=options.concurrency,
            health=served.check,
            identity={"backend": "openai", "served": served.identity(), "model": model_id or model},
            served=served.describe(),
            capabilities=replace(CAPABILITIES, reloads_weights=reload_of(options) is not None),
            context=context,
            count_tokens=count_tokens,
            extra_fields=extra_fields,
        )


class ServedBackend(OpenAIBackend):
    """The OpenAI-compatible endpoint of a server started here for the model; where the engine
    documents a weight reload (``capabilities.reloads_weights``), it can be given other weights."""

    def __init__(self, server: ServedModel, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.server = server

    def reload_weights(self, model_dir: str, model_id: str) -> None:
        """Have the running server load the weights in ``model_dir`` (a model of the same
        architecture and size: another ratio's merge); replies are then recorded and cached as
        those of ``model_id``.

        Raises:
            EvalError: the engine cannot reload, or did not load them (the server keeps running:
                the caller's block stops it).
        """
        self.server.reload(model_dir)
        self._identity = {**(self._identity or {}), "model": model_id}
        self.served = self.server.describe()


def _context_of(model: str) -> tuple[int | None, Callable[[Conversation], int] | None]:
    """The model directory's context length and a counter of its prompt tokens (its tokenizer and
    chat template), so that requests fit the context; (None, None) when either is unknown."""
    context = context_of_model_dir(model)
    if context is None:
        return None, None
    try:
        from transformers import AutoTokenizer

        tokenizer = AutoTokenizer.from_pretrained(model)
    except Exception as error:  # no transformers, or no tokenizer a served engine may still read
        log.info("%s: prompt lengths unknown (%s); --max-new-tokens is sent as given", model, type(error).__name__)
        return None, None
    if tokenizer.chat_template is None:
        return None, None
    lock = threading.Lock()  # requests go out from several threads; a fast tokenizer is not reentrant

    def count(conversation: Conversation) -> int:
        with lock:
            text = tokenizer.apply_chat_template(conversation, add_generation_prompt=True, tokenize=False)
            return len(tokenizer(text, add_special_tokens=False)["input_ids"])

    return context, count


def check_options(options: BackendOptions) -> None:
    """Refuse ``--serve`` beside ``--base-url`` before anything starts."""
    if options.base_url:
        raise clashing_options(
            ["--base-url"], "--serve", "--serve starts a server and evaluates through it; give one of them"
        )


# recorded as "openai" in settings and replies: what answers is an OpenAI-compatible endpoint
KIND = BackendKind(
    "openai",
    "a serving engine started here for the model (--serve), reached as an OpenAI-compatible endpoint",
    CAPABILITIES,
    chosen=lambda options: options.serve is not None,
    open=_open,
    check=check_options,
)
