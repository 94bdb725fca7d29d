"""chatvector: add an LLM's chat skills to a model continually pre-trained on a new language.

The chat vector (arXiv 2310.04799) is ``chat - base``, tensor by tensor. Adding it to a model that
was continually pre-trained (CP) from the same base, ``cp + r * (chat - base)``, gives that model
instruction following and safety alignment in its new language without further training.

Public API::

    import chatvector
    chatvector.extract(base="meta-llama/Llama-2-7b-hf", chat="meta-llama/Llama-2-7b-chat-hf",
                       out="llama2-chat-vector")
    chatvector.apply(target="yentinglin/Taiwan-LLM-7B-v2.0-base",
                     vectors=[("llama2-chat-vector", 1.0)], out="taiwan-chat")
    chatvector.merge(base=..., chat=..., target=..., ratio=0.5, out="merged")
"""

from __future__ import annotations

from chatvector.errors import (
    ChatVectorError,
    CheckpointError,
    EvalError,
    InputError,
    NonFiniteError,
    OutputError,
    PreflightError,
)

__version__ = "0.1.0"

__all__ = [
    "__version__",
    "ChatVectorError",
    "CheckpointError",
    "EvalError",
    "InputError",
    "NonFiniteError",
    "OutputError",
    "PreflightError",
    "extract",
    "apply",
    "merge",
    "verify",
]


def __getattr__(name: str):  # noqa: ANN202 - lazy re-export keeps `import chatvector` light
    # torch and transformers take seconds to import; load the engine only when it is used.
    if name in {"extract", "apply", "merge", "verify"}:
        from chatvector import api

        return getattr(api, name)
    raise AttributeError(f"module 'chatvector' has no attribute {name!r}")
