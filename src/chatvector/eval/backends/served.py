"""The served backend: a serving engine started here for the model under test (``--serve vllm``,
``sglang``, ``transformers`` or a command of your own; :mod:`chatvector.eval.serve`), evaluated
through its OpenAI-compatible endpoint and stopped when the block ends, however it ends.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from chatvector.errors import clashing_options
from chatvector.eval.backends.base import BackendKind, Capabilities
from chatvector.eval.backends.openai import OpenAIBackend
from chatvector.eval.options import BackendOptions, GenerationOptions
from chatvector.eval.serve import ServedModel
from chatvector.eval.serve_llamacpp import PRESET as LLAMA_CPP
from chatvector.eval.serve_llamacpp import LlamaCppServedModel

__all__ = ["KIND"]

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
    if options.base_url:
        raise clashing_options(
            ["--base-url"], "--serve", "--serve starts a server and evaluates through it; give one of them"
        )
    server = LlamaCppServedModel if options.serve == LLAMA_CPP else ServedModel
    with server(model, options, log_dir=log_dir) as served:
        yield OpenAIBackend(
            served.base_url,
            options.model_name or served.model_name,
            api_key_env=options.api_key_env,
            settings=generation,
            concurrency=options.concurrency,
            health=served.check,
            identity={"backend": "openai", "served": served.identity(), "model": model_id or model},
            served=served.describe(),
            capabilities=CAPABILITIES,
        )


# recorded as "openai" in settings and replies: what answers is an OpenAI-compatible endpoint
KIND = BackendKind(
    "openai",
    "a serving engine started here for the model (--serve), reached as an OpenAI-compatible endpoint",
    CAPABILITIES,
    chosen=lambda options: options.serve is not None,
    open=_open,
)
