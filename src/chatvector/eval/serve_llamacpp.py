"""``--serve llama.cpp`` and ``--serve llama-server``: the model under test written as a GGUF file
in a temporary directory and served by llama.cpp, stopped and removed however the run ends.

Two engines read the file:

- ``llama.cpp``: llama-cpp-python's OpenAI-compatible server (the ``gguf`` extra installs it). It
  holds one llama.cpp context behind a lock, so it answers **one request at a time** whatever
  ``--concurrency`` is.
- ``llama-server``: llama.cpp's own server, built separately and found on ``PATH``; it decodes
  ``--concurrency`` requests together in as many parallel slots.

Both engines get the model's own context (``<arch>.context_length`` in the file, at most
:data:`SLOT_CONTEXT_CAP` tokens) for each slot, so that a prompt and its reply fit as they do in
the hf backend, and ``--threads`` when given. The GGUF's tensor type follows ``--dtype`` (float32
on the CPU for ``auto``, so greedy replies match the hf backend's); its chat template and stop ids
are the model's own. A ``.gguf`` file given as the model is served as it is (any type, q8_0
included). Everything else (port, readiness, process group, stop guarantees, log
quoting) is :class:`~chatvector.eval.serve.ServedModel`'s.
"""

from __future__ import annotations

import importlib.util
import logging
import shutil
import tempfile
from pathlib import Path
from types import TracebackType
from typing import Any

from chatvector.errors import EvalError, MissingExtraError
from chatvector.eval.options import BackendOptions, GenerationOptions
from chatvector.eval.serve import ServedModel, serve_command
from chatvector.io.gguf_export import export_gguf

__all__ = ["PRESET", "SERVER_PRESET", "PRESETS", "SLOT_CONTEXT_CAP", "LlamaCppServedModel", "gguf_type_for"]

log = logging.getLogger(__name__)

PRESET = "llama.cpp"  # llama-cpp-python's server
SERVER_PRESET = "llama-server"  # llama.cpp's own server binary
PRESETS = (PRESET, SERVER_PRESET)
# Per-slot context at most: a Qwen2's 32768 positions in 8 slots would take 15 GB of KV cache for
# a 7B; a longer prompt is refused by the server with its reason (HTTP 400), not retried.
SLOT_CONTEXT_CAP = 8192
_GGUF_TYPES = {"auto": "f32", "float32": "f32", "float16": "f16", "bfloat16": "bf16"}
# llama-cpp-python 0.3.x holds back a reply that ends inside a UTF-8 character without counting
# those tokens against max_tokens, so a model that keeps emitting stray byte tokens generates on
# until the context is full, and llama.cpp then fails with this (HTTP 500).
_RUN_ON = "llama_decode returned 1"


def gguf_type_for(dtype: str) -> str:
    """The GGUF tensor type served for ``--dtype``."""
    return _GGUF_TYPES[dtype]


def gguf_context(path: Path) -> int | None:
    """The context length a GGUF file declares (``<arch>.context_length``), or None.

    Raises:
        EvalError: the file is not a readable GGUF (truncated, corrupt, not GGUF at all).
    """
    from gguf import GGUFReader

    try:
        fields = GGUFReader(path).fields
    except Exception as error:  # the reader raises whatever its parsing hits first (ValueError, IndexError, ...)
        raise EvalError(
            f"{path}: not a readable GGUF file ({type(error).__name__}: {error}); write it again "
            "(chatvector export gguf) or check the download",
            file=path,
            option="--serve",
        ) from None
    try:
        arch = fields["general.architecture"].contents()
        value = fields[f"{arch}.context_length"].contents()
    except KeyError:
        return None
    return int(value) if isinstance(value, int) and value > 0 else None


class LlamaCppServedModel(ServedModel):
    """:class:`ServedModel` for ``--serve llama.cpp|llama-server``: converts on entry, adds the
    context, slot and thread arguments, removes the file on exit.

    Attributes:
        context: each slot's context in tokens once the file is written (None: the server's default).
    """

    gguf_dir: Path | None = None
    context: int | None = None

    def __init__(self, model: str, options: BackendOptions, **kwargs: Any) -> None:
        # before anything is made (the server's log folder included)
        if options.serve == PRESET and importlib.util.find_spec("llama_cpp") is None:
            raise MissingExtraError("--serve llama.cpp", "gguf", "llama-cpp-python")
        super().__init__(model, options, **kwargs)

    def __enter__(self) -> LlamaCppServedModel:
        try:
            path = self._gguf_file()
            declared = gguf_context(path)
            self.context = None if declared is None else min(declared, SLOT_CONTEXT_CAP)
            self.model = self.weights = str(path)  # what the server is given and holds
            self.command = self.command_for(self.port)
            super().__enter__()
        except BaseException:
            self._remove()
            raise
        return self

    def _gguf_file(self) -> Path:
        """The model as a GGUF file: a ``.gguf`` file is served as it is (any type, q8_0 included);
        a model directory or hub id is written in a temporary directory first."""
        given = Path(self.model)
        if given.suffix == ".gguf" and given.is_file():
            return given
        self.gguf_dir = Path(tempfile.mkdtemp(prefix="chatvector-gguf-"))
        path = self.gguf_dir / "model.gguf"
        kind = gguf_type_for(self.options.dtype)
        log.info("writing %s as GGUF (%s) for llama.cpp", self.model, kind)
        export_gguf(self.model, path, gguf_type=kind)
        return path

    def command_for(self, port: int) -> list[str]:
        return serve_command(self.model, port, self.options) + self.engine_args()

    def engine_args(self) -> list[str]:
        """Context, slots and threads in the engine's own flags."""
        threads = self.options.threads
        if self.options.serve == SERVER_PRESET:
            slots = self.options.concurrency
            args = ["--parallel", str(slots), "--no-webui"]
            if self.context is not None:  # each slot gets ctx-size / parallel tokens
                args += ["--ctx-size", str(self.context * slots)]
            return args + (["--threads", str(threads)] if threads else [])
        args = ["--interrupt_requests", "false"]  # a waiting request must not cut a streamed one short
        if self.context is not None:
            args += ["--n_ctx", str(self.context)]
        return args + (["--n_threads", str(threads), "--n_threads_batch", str(threads)] if threads else [])

    def request_fields(self, generation: GenerationOptions) -> dict[str, Any]:
        """Sampling fields both llama.cpp servers take beside the OpenAI ones, so that decoding is
        what the options say: llama-cpp-python applies a repetition penalty of 1.1 unless told
        (greedy replies then differ from the hf backend's), and both filter by top-k 40 and min-p
        0.05 when sampling, which chatvector's options do not ask for."""
        return {"repeat_penalty": generation.repetition_penalty, "top_k": 0, "min_p": 0.0}

    def __exit__(
        self, kind: type[BaseException] | None, error: BaseException | None, traceback: TracebackType | None
    ) -> None:
        try:
            super().__exit__(kind, error, traceback)
        except EvalError as raised:
            if self.options.serve == PRESET and _RUN_ON in str(raised):
                raise self._run_on_error(raised) from raised
            raise
        finally:
            self._remove()
        if isinstance(error, EvalError) and self.options.serve == PRESET and _RUN_ON in str(error):
            raise self._run_on_error(error) from error

    def _run_on_error(self, error: EvalError) -> EvalError:
        first, _, rest = str(error).partition("\n")
        why = (
            f"llama-cpp-python's server generated past max_tokens while the reply ended inside a UTF-8 "
            f"character (it does not count those tokens) until the context of {self.context or 'its'} tokens "
            "was full: a model that emits stray byte tokens (a random or broken one) does this. "
            "--serve llama-server stops at max_tokens."
        )
        return EvalError(f"{first}\n{why}" + (f"\n{rest}" if rest else ""), option="--serve")

    def _remove(self) -> None:
        if self.gguf_dir is not None:
            shutil.rmtree(self.gguf_dir, ignore_errors=True)
            self.gguf_dir = None
