"""How a running serving engine is told to load weights from another model directory, for the
engines whose documentation says how; every other engine is restarted for new weights.

A ``--serve`` preset declares its reload in :data:`RELOADS` (keyed like
:data:`~chatvector.eval.options.SERVE_PRESETS`); a sweep or a search asks :func:`reload_of`, and
:meth:`chatvector.eval.serve.ServedModel.reload` sends the request. Only documented requests are
declared:

- ``sglang``: ``POST /update_weights_from_disk`` with ``{"model_path": DIR}``, answered
  ``{"success": true|false, "message": ...}`` (status 400 on failure). SGLang documents it as
  updating the weights "without restarting the server", for a model of the same architecture and
  parameter size, and flushes its prefix cache on the update
  (https://docs.sglang.ai/basic_usage/native_api.html, "Update Weights From Disk").
- ``vllm``: none. Its documented HTTP reload (``POST /collective_rpc`` with
  ``{"method": "reload_weights"}``, after ``/sleep?level=2`` and ``/wake_up?tags=weights``;
  https://docs.vllm.ai/en/latest/features/sleep_mode/) needs the development endpoints
  (``VLLM_SERVER_DEV_MODE=1``, which its docs say never to expose) and ``--enable-sleep-mode``, and
  reloads the directory the server was started on; loading from another path (``weights_path``) is
  documented for the offline ``LLM.collective_rpc`` only (https://docs.vllm.ai/en/latest/training/layerwise/).
  The published weight-transfer backends (NCCL, CUDA IPC) move tensors from a trainer, not from a
  directory; a ``disk`` backend appears in vLLM's repository docs but not yet in a published
  release's. So a vLLM server is restarted per model (docs/sweep.md).
- ``transformers`` (``transformers serve``) and ``llama.cpp`` (llama-cpp-python's server): no
  reload endpoint; restarted.

None of these requests has been sent to a real SGLang here (no GPU); they are written against
the documentation above and tested against a stand-in server that implements it
(``tests/fake_engines/sglang``).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from chatvector.eval.options import BackendOptions

__all__ = ["WeightReload", "RELOADS", "reload_of"]


@dataclass(frozen=True)
class WeightReload:
    """One engine's documented request that makes a running server load a model directory.

    Attributes:
        engine: the engine's name, for messages.
        route: the HTTP path, on the server's root (not under ``/v1``).
        path_field: the JSON body's field naming the directory.
        documented: where the engine documents the request.
    """

    engine: str
    route: str
    path_field: str
    documented: str

    def body(self, model_dir: str) -> dict[str, Any]:
        """The request's JSON body for ``model_dir``."""
        return {self.path_field: model_dir}

    def failure(self, status: int, payload: Any) -> str | None:
        """Why the answer is not a success (None when it is one): the engine's own message when it
        gives one, else the status and what came back."""
        success = isinstance(payload, dict) and payload.get("success") is True
        if status == 200 and success:
            return None
        message = payload.get("message") if isinstance(payload, dict) else None
        if isinstance(message, str) and message.strip():
            return message.strip().splitlines()[0]
        return f"HTTP {status}, answer {str(payload)[:200]!r}"


SGLANG = WeightReload(
    engine="SGLang",
    route="/update_weights_from_disk",
    path_field="model_path",
    documented="https://docs.sglang.ai/basic_usage/native_api.html#Update-Weights-From-Disk",
)

# preset name -> its documented reload; presets not listed are restarted for new weights
RELOADS: dict[str, WeightReload] = {"sglang": SGLANG}


def reload_of(options: BackendOptions) -> WeightReload | None:
    """The reload the ``--serve`` preset in ``options`` declares, or None (no server, a custom
    command, or an engine without a documented reload)."""
    return RELOADS.get(options.serve or "")
