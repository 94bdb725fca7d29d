"""What every generation backend is: the :class:`Backend` protocol (one method,
``generate(conversations) -> replies``, plus streaming and the record it leaves), the
:class:`Capabilities` each declares, and :class:`BackendKind`, the declaration the registry
(:mod:`chatvector.eval.backends`) lists.

Every backend reports each reply as it arrives (``on_reply(index, text)``), so the caller can keep
it (:mod:`chatvector.eval.generate` appends it to ``replies.jsonl``) before the rest is done. A
backend that knows why a reply ended says so too (``on_reply(index, text, finish)``, with
:data:`STOP` or :data:`LENGTH`, as OpenAI's ``finish_reason``): a reply cut off at
``--max-new-tokens`` is not a finished turn, and suites that judge the chat format read it.
"""

from __future__ import annotations

import inspect
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal, Protocol

from chatvector.eval.options import BackendOptions, GenerationOptions

__all__ = [
    "Backend",
    "BackendKind",
    "Capabilities",
    "Conversation",
    "Finish",
    "GenerationSettings",
    "LENGTH",
    "OnReply",
    "Opener",
    "STOP",
    "reply_callback",
]

Conversation = list[dict[str, str]]

Finish = Literal["stop", "length"]
STOP: Finish = "stop"  # the model ended its turn (a stop token)
LENGTH: Finish = "length"  # cut off at --max-new-tokens (or the context's end)


class OnReply(Protocol):
    """Called with each reply as it is ready; ``finish`` is why it ended, None when the backend
    cannot tell (an endpoint that does not say, a scripted reply)."""

    def __call__(self, index: int, text: str, finish: Finish | None = None, /) -> None: ...


def reply_callback(on_reply: Callable[..., None] | None) -> OnReply | None:
    """``on_reply`` as the three-argument callback backends call: a caller's two-argument one
    (``index, text``, as backends called it before they reported why a reply ended) keeps working."""
    if on_reply is None:
        return None
    try:
        inspect.signature(on_reply).bind(0, "", None)
    except TypeError:
        two_arguments = on_reply
        return lambda index, text, finish=None, /: two_arguments(index, text)
    except ValueError:  # no signature to read (some builtins): call it as documented
        pass
    return on_reply


# How replies are decoded. One model for the command line, results.json and the backends.
GenerationSettings = GenerationOptions


@dataclass(frozen=True)
class Capabilities:
    """What a backend can do, declared so that callers ask instead of testing types.

    Attributes:
        streams: ``stream(conversation)`` yields a reply piece by piece (``chatvector chat``).
        loads_weights: each model directory it is given is loaded afresh (locally, or by a server
            started for it), so it can evaluate a model written a moment ago (every ratio of a
            sweep); an endpoint that serves fixed weights cannot.
        per_model_endpoint: the endpoint is started for each model, so its URL says nothing about
            the results (left out of the settings two runs must share).
        updates_in_place: the loaded model's weights can be replaced by a merge computed into
            them (``merge_in_place(recipe, run, model_id)``), with no model written or reloaded;
            a sweep then loads once (``sweep --in-place``, docs/sweep.md).
        reloads_weights: the server behind it can be told to load another model directory
            (``reload_weights(model_dir, model_id)``, the engine's documented reload,
            :mod:`chatvector.eval.serve_reload`); a served sweep then starts it once
            (``sweep --serve-reload``).
    """

    streams: bool
    loads_weights: bool
    per_model_endpoint: bool
    updates_in_place: bool = False
    reloads_weights: bool = False


class Backend(Protocol):
    """Anything that turns conversations into assistant replies."""

    name: str
    capabilities: Capabilities

    def generate(self, conversations: list[Conversation], on_reply: OnReply | None = None) -> list[str]:
        """Replies in the order of ``conversations``; ``on_reply(index, text)`` as each one is ready."""
        ...

    def stream(self, conversation: Conversation) -> Iterator[str]:
        """The reply to ``conversation`` piece by piece (when ``capabilities.streams``)."""
        ...

    def describe(self) -> dict[str, Any]:
        """Everything about the backend worth recording in results.json (never a secret)."""
        ...

    def identity(self) -> dict[str, Any]:
        """What decides the replies (model, dtype, decoding), not how they are computed (device,
        port, batch size): a cached reply is reused only under the same identity."""
        ...

    def lm_eval_model(self, model: str) -> tuple[Any, dict[str, Any]]:
        """lm-evaluation-harness's model object for this backend's model, and what to record about it.

        Raises:
            EvalError: the backend cannot run lm-eval tasks.
        """
        ...


Opener = Callable[..., AbstractContextManager[Backend]]


@dataclass(frozen=True)
class BackendKind:
    """One kind of backend, declared for the registry.

    Attributes:
        name: how results and settings name it (``backend`` in settings.json).
        about: one line for docs and errors.
        capabilities: what its backends can do.
        chosen: whether the options ask for this kind (the registry tries kinds in order; None:
            never chosen from options, made in code only, as the scripted backend is).
        open: ``open(model, options, generation, *, log_dir, model_id)`` → a context manager
            yielding the backend, which releases what it started (a server) however the block ends.
        check: refuses options this kind cannot run with (a device the machine lacks, flags that
            clash), cheaply and before anything is created: no output folder, no model loaded.
    """

    name: str
    about: str
    capabilities: Capabilities
    chosen: Callable[[BackendOptions], bool] | None
    open: Opener | None = None
    check: Callable[[BackendOptions], None] | None = None

    def opened(
        self,
        model: str,
        options: BackendOptions,
        generation: GenerationOptions,
        *,
        log_dir: Path | None = None,
        model_id: str | None = None,
    ) -> AbstractContextManager[Backend]:
        """This kind's backend for ``model`` (see ``open``)."""
        if self.open is None:
            raise TypeError(f"the {self.name} backend is made in code, not from options")
        if self.check is not None:
            self.check(options)
        return self.open(model, options, generation, log_dir=log_dir, model_id=model_id)
