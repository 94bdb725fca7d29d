"""Pure chat-vector arithmetic: no files, no options, just tensors.

Every merge is ``out = target + Σ rᵢ · (plusᵢ − minusᵢ)`` computed in float32 and cast once to
the output dtype at the end. A pair term has ``plus = chat`` and ``minus = base``; a stored
vector term has ``plus = vector`` and no ``minus``; extraction is a merge with no target and the
single term ``chat − base``. Embedding matrices of different vocabularies are combined row by
row through :class:`RowRun` s that say which rows of each operand line up.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import torch

__all__ = ["accumulate_term", "all_finite", "start_accumulator", "reference_combine", "RowRun", "row_runs"]


def start_accumulator(acc: torch.Tensor, target: torch.Tensor | None) -> torch.Tensor:
    """Fill the float32 accumulator with the target chunk (or zeros when there is no target)."""
    if target is None:
        return acc.zero_()
    return acc.copy_(target)


def accumulate_term(
    acc: torch.Tensor, ratio: float, plus: torch.Tensor, minus: torch.Tensor | None,
    scratch: torch.Tensor, scratch_minus: torch.Tensor,
) -> torch.Tensor:
    """Add ``ratio · (plus − minus)`` to the float32 ``acc`` in place, using two scratch buffers.

    The difference is formed in float32, scaled, then added: the same three roundings as the
    plain expression ``t + r * (c - b)``, so the result is bit-identical to the reference (a
    fused ``add_(..., alpha=r)`` may round differently) and does not depend on whether the
    vector was stored or computed on the fly. Both operands are widened into float32 buffers
    first because torch's mixed-dtype in-place ops are several times slower.
    """
    scratch.copy_(plus)
    if minus is not None:
        scratch_minus.copy_(minus)
        scratch.sub_(scratch_minus)
    if ratio != 1.0:
        scratch.mul_(ratio)
    return acc.add_(scratch)


FINITE_MAX = {torch.float16: 65504.0, torch.bfloat16: 3.3895313892515355e38,
              torch.float32: 3.4028234663852886e38, torch.float64: float("inf")}


def all_finite(values: torch.Tensor, out_dtype: torch.dtype | None = None) -> bool:
    """Whether ``values`` hold no NaN/Inf and would not overflow when cast to ``out_dtype``.

    ``aminmax`` propagates NaN and is ~20x faster here than ``isfinite(x).all()``.
    """
    if values.numel() == 0:
        return True
    low, high = torch.aminmax(values)
    low, high = float(low), float(high)
    limit = FINITE_MAX.get(out_dtype or values.dtype, math.inf)
    return math.isfinite(low) and math.isfinite(high) and -limit <= low and high <= limit


def reference_combine(
    target: torch.Tensor | None, terms: list[tuple[float, torch.Tensor, torch.Tensor | None]],
) -> torch.Tensor:
    """Whole-tensor float32 recomputation of a merge: the independent reference in tests and
    ``verify``. Not used by the streaming engine."""
    result = torch.zeros_like(terms[0][1], dtype=torch.float32) if target is None else target.float()
    for ratio, plus, minus in terms:
        delta = plus.float() if minus is None else plus.float() - minus.float()
        result = result + ratio * delta
    return result


@dataclass(frozen=True)
class RowRun:
    """``length`` consecutive rows that line up: output row ``out_start + i`` takes
    ``plus_start + i`` (and ``minus_start + i`` when the term has a minus operand)."""

    out_start: int
    plus_start: int
    minus_start: int | None
    length: int


def row_runs(plus_rows: np.ndarray, minus_rows: np.ndarray | None) -> list[RowRun]:
    """Group an output-row → operand-row mapping into runs of consecutive rows.

    Args:
        plus_rows: for every output row, the row of the plus operand, or -1 when there is none.
        minus_rows: the same for the minus operand (None for a stored vector).

    Rows where any operand is missing get no delta (they keep the target's values). A vocabulary
    extended by appending tokens collapses to a single run, so it is read in large blocks.
    """
    valid = plus_rows >= 0
    if minus_rows is not None:
        valid &= minus_rows >= 0
    out_rows = np.flatnonzero(valid)
    if out_rows.size == 0:
        return []
    plus = plus_rows[out_rows]
    minus = minus_rows[out_rows] if minus_rows is not None else None
    breaks = (np.diff(out_rows) != 1) | (np.diff(plus) != 1)
    if minus is not None:
        breaks |= np.diff(minus) != 1
    starts = np.concatenate(([0], np.flatnonzero(breaks) + 1))
    ends = np.concatenate((starts[1:], [out_rows.size]))
    return [
        RowRun(int(out_rows[s]), int(plus[s]), None if minus is None else int(minus[s]), int(e - s))
        for s, e in zip(starts, ends, strict=True)
    ]
