"""Generation backends: one method, ``generate(conversations) -> replies``
(:class:`~chatvector.eval.backends.base.Backend`).

This module is the registry. Each backend is a module declaring a
:class:`~chatvector.eval.backends.base.BackendKind` (its capabilities, when options choose it,
how it opens); :func:`open_backend` opens the first kind the options choose, in the order of
:data:`KINDS`:

- ``served`` (:mod:`.served`): ``--serve`` starts a server for the model and evaluates through it;
- ``openai`` (:mod:`.openai`): ``--backend openai --base-url URL``, an endpoint already running;
- ``hf`` (:mod:`.hf`): the model directory run here with transformers (the default);
- ``scripted`` (:mod:`.scripted`): replies from a function, made in code for tests.

Adding a backend is one module plus its line in ``KINDS`` (docs/extending.md).
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from chatvector.eval.backends import hf, openai, scripted, served
from chatvector.eval.backends.base import (
    Backend,
    BackendKind,
    Capabilities,
    Conversation,
    Finish,
    GenerationSettings,
    OnReply,
)
from chatvector.eval.backends.hf import HFBackend, resolve_device, resolve_dtype
from chatvector.eval.backends.openai import OpenAIBackend
from chatvector.eval.backends.scripted import ScriptedBackend
from chatvector.eval.options import BackendOptions, GenerationOptions

__all__ = [
    "Backend",
    "BackendKind",
    "Capabilities",
    "Conversation",
    "Finish",
    "GenerationSettings",
    "HFBackend",
    "KINDS",
    "OpenAIBackend",
    "ScriptedBackend",
    "OnReply",
    "check_backend",
    "kind_of",
    "open_backend",
    "resolve_device",
    "resolve_dtype",
]

# tried in this order: --serve wins over --backend
KINDS: tuple[BackendKind, ...] = (served.KIND, openai.KIND, hf.KIND, scripted.KIND)


def kind_of(options: BackendOptions) -> BackendKind:
    """The kind of backend ``options`` ask for."""
    for kind in KINDS:
        if kind.chosen is not None and kind.chosen(options):
            return kind
    raise ValueError(f"no backend is chosen by {options!r}")  # BackendOptions.backend allows only known kinds


def check_backend(options: BackendOptions) -> None:
    """Refuse options the chosen backend cannot run with, cheaply, before anything is created
    (``eval`` checks them before making OUT, ``sweep`` before its first merge).

    Raises:
        InputError: a device this machine lacks, flags that clash, a missing endpoint.
    """
    kind = kind_of(options)
    if kind.check is not None:
        kind.check(options)


@contextmanager
def open_backend(
    model: str,
    options: BackendOptions,
    generation: GenerationOptions,
    *,
    log_dir: Path | None = None,
    model_id: str | None = None,
) -> Iterator[Backend]:
    """The backend ``options`` ask for, for ``model`` (a directory, or a model name at ``--base-url``).

    With ``--serve``, the server is started here for ``model`` (its log in ``log_dir``), evaluated
    through, and stopped when the block ends, however it ends.

    Raises:
        InputError: options that do not fit together (``--backend openai`` without a URL or server).
    """
    with kind_of(options).opened(model, options, generation, log_dir=log_dir, model_id=model_id) as backend:
        yield backend
