"""The independent reference: whole-tensor float32 recomputation.

The streaming engine reads with its own ``pread`` reader, in chunks of about a million elements
and cache-sized blocks, into reused buffers. This module loads whole tensors through the
``safetensors`` library and recomputes each output tensor with one plain float32 expression, so an
error in the engine's reader, its chunking, its row alignment or its buffer reuse shows up as a
difference. It needs numpy only (no torch), so ``verify`` works with the light install; the test
suite checks the engine against a third, torch-based recomputation of its own.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np

from chatvector.dtypes import DTYPES
from chatvector.io.checkpoint import Checkpoint

if TYPE_CHECKING:
    from chatvector.merge.plan import TensorWork

__all__ = ["load_tensor", "reference_tensor", "within_rounding", "max_abs_error"]


def load_tensor(checkpoint: Checkpoint, name: str) -> np.ndarray:
    """Read a whole tensor with the safetensors library (not the engine's reader), for independence."""
    info = checkpoint.tensors[name]
    dtype = DTYPES[info.dtype]
    if checkpoint.format == "lora":  # a LoRA adapter read as a vector: its whole update B @ A
        return checkpoint.whole_tensor(name)  # type: ignore[attr-defined]  # LoRA checkpoints (format "lora") have it
    if checkpoint.format == "pickle":
        import torch  # the pickle was read with it

        raw = checkpoint.pickled_tensor(name).contiguous().view(torch.uint8).numpy()
        return raw.view(dtype.numpy).reshape(info.shape)
    from safetensors import safe_open

    with safe_open(str(info.file), framework="numpy") as handle:
        return handle.get_tensor(name)


def _combine(result: np.ndarray, ratio: float, plus: np.ndarray, minus: np.ndarray | None) -> np.ndarray:
    delta = plus.astype(np.float32) if minus is None else plus.astype(np.float32) - minus.astype(np.float32)
    return result + np.float32(ratio) * delta


def reference_tensor(work: TensorWork, checkpoints: list[Checkpoint]) -> np.ndarray:
    """``target + Σ rᵢ · (plusᵢ − minusᵢ)`` for one output tensor, whole, in float32."""
    if work.target is not None and work.target_source is not None:
        result = load_tensor(checkpoints[work.target_source], work.name).astype(np.float32)
    else:
        result = np.zeros(work.shape, dtype=np.float32)
    for term in work.terms:
        plus = load_tensor(checkpoints[term.plus_source], term.plus.name)
        minus = None
        if term.minus is not None and term.minus_source is not None:
            minus = load_tensor(checkpoints[term.minus_source], term.minus.name)
        if term.runs is None:
            result = _combine(result, term.ratio, plus, minus)
            continue
        for run in term.runs:
            rows = slice(run.out_start, run.out_start + run.length)
            p = plus[run.plus_start : run.plus_start + run.length]
            m = None
            if minus is not None and run.minus_start is not None:
                m = minus[run.minus_start : run.minus_start + run.length]
            result[rows] = _combine(result[rows], term.ratio, p, m)
    return result


def within_rounding(result: np.ndarray, reference: np.ndarray, dtype: str) -> bool:
    """Whether ``result`` (of safetensors dtype ``dtype``) equals the float32 ``reference`` up to one
    rounding step of ``dtype``."""
    bits = DTYPES[dtype].significand_bits or 24
    ref = reference.astype(np.float64)
    magnitude = np.where(ref == 0, 1.0, np.abs(ref))
    step = np.where(ref == 0, 2.0**-126, np.exp2(np.floor(np.log2(magnitude)) - (bits - 1)))
    return bool(np.all(np.abs(result.astype(np.float64) - ref) <= step * 1.0001))


def max_abs_error(result: np.ndarray, reference: np.ndarray) -> float:
    if result.size == 0:
        return 0.0
    return float(np.max(np.abs(result.astype(np.float64) - reference.astype(np.float64))))
