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
    chatvector.merge(base=..., chat=..., target=..., ratio=0.5, out="merged",
                     options=chatvector.MergeOptions(embeddings="align"))
    report = chatvector.verify("merged", recompute=True)

Importing chatvector loads numpy and pydantic, never torch or transformers: merging, extracting,
applying and verifying run without them.
"""

from __future__ import annotations

from chatvector._version import __version__
from chatvector.api import MergeReport, VerifyReport, apply, extract, merge, verify
from chatvector.errors import (
    ChatVectorError,
    CheckpointError,
    EvalError,
    InputError,
    MissingExtraError,
    NonFiniteError,
    OutputError,
    PreflightError,
)
from chatvector.merge.inputs import Inputs, open_inputs
from chatvector.merge.recipe import PairTerm, Recipe, VectorTerm, load_recipe
from chatvector.options import MergeOptions, RunOptions

__all__ = [
    "__version__",
    "extract",
    "apply",
    "merge",
    "verify",
    "open_inputs",
    "load_recipe",
    "Inputs",
    "MergeOptions",
    "RunOptions",
    "Recipe",
    "PairTerm",
    "VectorTerm",
    "MergeReport",
    "VerifyReport",
    "ChatVectorError",
    "CheckpointError",
    "EvalError",
    "InputError",
    "MissingExtraError",
    "NonFiniteError",
    "OutputError",
    "PreflightError",
]
