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

Importing chatvector loads nothing heavy: the names above load their modules on first use (numpy
and pydantic, never torch or transformers: merging, extracting, applying and verifying run
without them).
"""

from __future__ import annotations

import importlib
import sys
import types
from typing import TYPE_CHECKING, Any

from chatvector._version import __version__

if TYPE_CHECKING:  # the names below, for type checkers; at run time they load on first use
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

# Public name -> the module that defines it. Loaded on first access (PEP 562), so that
# ``chatvector --help`` and the command modules do not pay for numpy, ml_dtypes and pydantic.
_HOME = {
    **dict.fromkeys(("MergeReport", "VerifyReport", "apply", "extract", "merge", "verify"), "chatvector.api"),
    **dict.fromkeys(
        (
            "ChatVectorError",
            "CheckpointError",
            "EvalError",
            "InputError",
            "MissingExtraError",
            "NonFiniteError",
            "OutputError",
            "PreflightError",
        ),
        "chatvector.errors",
    ),
    **dict.fromkeys(("Inputs", "open_inputs"), "chatvector.merge.inputs"),
    **dict.fromkeys(("PairTerm", "Recipe", "VectorTerm", "load_recipe"), "chatvector.merge.recipe"),
    **dict.fromkeys(("MergeOptions", "RunOptions"), "chatvector.options"),
}


def _load(name: str) -> Any:
    return getattr(importlib.import_module(_HOME[name]), name)


def __getattr__(name: str) -> Any:
    if name not in _HOME:
        raise AttributeError(f"module 'chatvector' has no attribute {name!r}")
    value = _load(name)
    globals()[name] = value  # later lookups skip this function
    return value


def __dir__() -> list[str]:
    return sorted({*globals(), *_HOME})


def _function_over_subpackage(name: str) -> property:
    # Python binds a subpackage to its parent's attribute when it is first imported, so
    # `chatvector.merge` would become the package chatvector/merge once the engine loads. The
    # function keeps the name, as when this module imported it eagerly after its subpackage.
    def ignore_subpackage(module: types.ModuleType, value: object) -> None:
        pass

    return property(lambda module: _load(name), ignore_subpackage)


class _Package(types.ModuleType):
    merge = _function_over_subpackage("merge")
    verify = _function_over_subpackage("verify")


sys.modules[__name__].__class__ = _Package


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
