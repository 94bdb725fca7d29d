"""``--serve llama.cpp``: the model under test written as a GGUF file in a temporary directory
and served by llama-cpp-python's OpenAI-compatible server, stopped and removed however the run ends.

The GGUF's tensor type follows ``--dtype`` (float32 on the CPU for ``auto``, so greedy replies
match the hf backend's); its chat template and stop ids are the model's own (see
:mod:`chatvector.io.gguf_model`). Everything else (port, readiness, process group, stop
guarantees, log quoting) is :class:`~chatvector.eval.serve.ServedModel`'s.
"""

from __future__ import annotations

import importlib.util
import logging
import shutil
import tempfile
from pathlib import Path
from types import TracebackType

from chatvector.errors import MissingExtraError
from chatvector.eval.serve import ServedModel, serve_command
from chatvector.io.gguf_export import export_gguf

__all__ = ["PRESET", "LlamaCppServedModel", "gguf_type_for"]

log = logging.getLogger(__name__)

PRESET = "llama.cpp"
_GGUF_TYPES = {"auto": "f32", "float32": "f32", "float16": "f16", "bfloat16": "bf16"}


def gguf_type_for(dtype: str) -> str:
    """The GGUF tensor type served for ``--dtype``."""
    return _GGUF_TYPES[dtype]


class LlamaCppServedModel(ServedModel):
    """:class:`ServedModel` for ``--serve llama.cpp``: converts on entry, removes the file on exit."""

    gguf_dir: Path | None = None

    def __enter__(self) -> LlamaCppServedModel:
        if importlib.util.find_spec("llama_cpp") is None:
            raise MissingExtraError("--serve llama.cpp", "gguf", "llama-cpp-python")
        self.gguf_dir = Path(tempfile.mkdtemp(prefix="chatvector-gguf-"))
        try:
            path = self.gguf_dir / "model.gguf"
            kind = gguf_type_for(self.options.dtype)
            log.info("writing %s as GGUF (%s) for llama.cpp", self.model, kind)
            export_gguf(self.model, path, gguf_type=kind)
            self.model = str(path)
            self.command = serve_command(self.model, self.port, self.options)
            super().__enter__()
        except BaseException:
            self._remove()
            raise
        return self

    def __exit__(
        self, kind: type[BaseException] | None, error: BaseException | None, traceback: TracebackType | None
    ) -> None:
        try:
            super().__exit__(kind, error, traceback)
        finally:
            self._remove()

    def _remove(self) -> None:
        if self.gguf_dir is not None:
            shutil.rmtree(self.gguf_dir, ignore_errors=True)
            self.gguf_dir = None
