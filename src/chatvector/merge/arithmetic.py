"""Pure chat-vector arithmetic: no files, no options, just numpy arrays.

Every merge is ``out = target + Σ rᵢ · (plusᵢ − minusᵢ)`` computed in float32 and cast once to
the output dtype at the end. A pair term has ``plus = chat`` and ``minus = base``; a stored
vector term has ``plus = vector`` and no ``minus``; extraction is a merge with no target and the
single term ``chat − base``. Embedding matrices of different vocabularies are combined row by
row through :class:`RowRun` s that say which rows of each operand line up.

The kernels use numpy with ``ml_dtypes`` for bfloat16 rather than torch: they are as fast here
(faster on cache-sized blocks) and importing torch alone costs about a second, a large share of
a merge that otherwise runs at disk speed. The independent whole-tensor reference that checks
them (:mod:`chatvector.verify.check`) is computed with torch.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from chatvector.dtypes import DTYPES

__all__ = ["accumulate_term", "all_finite", "start_accumulator", "term_difference", "RowRun", "row_runs"]

# Largest finite value of each float format: a float32 result beyond it would become Inf.
_FINITE_MAX: dict[np.dtype, float] = {
    d.numpy: d.finite_max for d in DTYPES.values() if d.finite_max and d.itemsize >= 2
}
_FINITE_MAX[np.dtype(np.float64)] = math.inf  # a float64 value beyond float32 is still finite


def start_accumulator(acc: np.ndarray, target: np.ndarray | None) -> np.ndarray:
    """Fill the float32 accumulator with the target chunk (or zeros when there is no target)."""
    if target is None:
        acc.fill(0.0)
    else:
        np.copyto(acc, target, casting="unsafe")  # float64 targets round once, as in the reference
    return acc


def accumulate_term(
    acc: np.ndarray,
    ratio: float,
    plus: np.ndarray,
    minus: np.ndarray | None,
    scratch: np.ndarray,
    scratch_minus: np.ndarray,
) -> np.ndarray:
    """Add ``ratio · (plus − minus)`` to the float32 ``acc`` in place, using two scratch buffers.

    The difference is formed in float32, scaled by ``ratio`` rounded to float32, then added: the
    same three roundings as the plain expression ``t + r * (c - b)`` in float32, so the result is
    bit-identical to the reference (a fused multiply-add may round differently) and does not
    depend on whether the vector was stored or computed on the fly. Operands are widened into
    float32 buffers first (numpy would otherwise pick a bfloat16 loop for two bfloat16 inputs);
    float32 operands, such as stored vectors, are used where they lie.
    """
    delta = term_difference(plus, minus, scratch, scratch_minus)
    if ratio != 1.0:
        delta = np.multiply(delta, np.float32(ratio), out=scratch)
    return np.add(acc, delta, out=acc)


def term_difference(
    plus: np.ndarray, minus: np.ndarray | None, scratch: np.ndarray, scratch_minus: np.ndarray
) -> np.ndarray:
    """The unscaled float32 difference ``plus − minus`` (``plus`` alone for a stored vector): the
    first step of :func:`accumulate_term`, in ``scratch`` or, for a float32 ``plus`` and no
    ``minus``, ``plus`` itself.

    A difference kept from this function and passed back to :func:`accumulate_term` as a float32
    ``plus`` with no ``minus`` gives the very bits the pair would give (the in-place merges of a
    sweep keep them between ratios, :mod:`chatvector.merge.resident`).
    """
    delta = _as_float32(plus, scratch)
    if minus is not None:
        delta = np.subtract(delta, _as_float32(minus, scratch_minus), out=scratch)
    return delta


def _as_float32(values: np.ndarray, buffer: np.ndarray) -> np.ndarray:
    """``values`` as float32: themselves when they already are, else widened into ``buffer``."""
    if values.dtype == np.float32:
        return values
    np.copyto(buffer, values, casting="unsafe")
    return buffer


def all_finite(values: np.ndarray, out_dtype: np.dtype | None = None) -> bool:
    """Whether float ``values`` hold no NaN/Inf and would not overflow when cast to ``out_dtype``.

    ``min``/``max`` propagate NaN and are far cheaper than ``isfinite(x).all()``. Formats numpy
    cannot reduce natively (bfloat16, float8) are widened to float32 first.
    """
    if values.size == 0:
        return True
    if values.dtype not in (np.float32, np.float64, np.float16):
        values = values.astype(np.float32)
    low, high = float(values.min()), float(values.max())
    limit = _FINITE_MAX.get(np.dtype(out_dtype or values.dtype), math.inf)
    return math.isfinite(low) and math.isfinite(high) and -limit <= low and high <= limit


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
