"""Task arithmetic, the default: ``out = target + Σ rᵢ·δᵢ``, every term's whole delta.

The engine runs it on its own fast path (no per-term buffers: ``plain``); the combine here is the
same arithmetic on formed deltas, so the contract test holds both to the reference.
"""

from __future__ import annotations

import numpy as np

from chatvector.merge.methods.base import ChunkTerms, MergeMethod, MethodParams, Workspace, blocks
from chatvector.merge.methods.registry import register

__all__ = ["TaskArithmetic"]


class TaskArithmeticParams(MethodParams):
    """Task arithmetic has no parameters."""


@register
class TaskArithmetic(MergeMethod):
    name = "task_arithmetic"
    summary = "target + Σ rᵢ·(chatᵢ − baseᵢ), every entry (the default)"
    example = "task_arithmetic"
    Params = TaskArithmeticParams
    plain = True

    def combine(self, acc: np.ndarray, deltas: list[np.ndarray], chunk: ChunkTerms, work: Workspace) -> None:
        # Here, not at the top: the registry is imported for `--help`, which needs no ml_dtypes.
        from chatvector.merge.arithmetic import accumulate_term

        for block in blocks(acc.size, chunk.block):
            size = block.stop - block.start
            scratch, spare = work.array("a", size), work.array("b", size)
            for ratio, delta in zip(chunk.ratios, deltas, strict=True):
                accumulate_term(acc[block], ratio, delta[block], None, scratch, spare)

    def reference(
        self, start: np.ndarray, deltas: list[np.ndarray], ratios: list[float], terms: list[int], name: str
    ) -> np.ndarray:
        result: np.ndarray = start.astype(np.float32)
        for delta, ratio in zip(deltas, ratios, strict=True):
            result = result + np.float32(ratio) * delta.astype(np.float32)
        return result
