"""TIES's sign election and disjoint mean, shared by the methods that elect signs (TIES,
DARE-TIES, DELLA): per entry, the sign of ``Σ rᵢ·δᵢ`` over the sparsified, scaled deltas is
elected (0 elects +, as in mergekit), and the entries that agree with it (non-zero, same sign)
are averaged. Both forms below do the same float32 operations in the same order."""

from __future__ import annotations

import numpy as np

__all__ = ["elect_and_average", "elect_and_average_whole"]


def elect_and_average(acc: np.ndarray, weighted: list[np.ndarray], total: np.ndarray, count: np.ndarray) -> None:
    """Add the disjoint mean of the agreeing ``weighted`` blocks to ``acc`` (``total``, ``count``:
    float32 scratch of ``acc``'s size)."""
    total.fill(0.0)
    for values in weighted:
        np.add(total, values, out=total)
    positive = total >= 0
    total.fill(0.0)
    count.fill(0.0)
    for values in weighted:
        agree = np.where(positive, values > 0, values < 0)
        np.add(total, np.where(agree, values, np.float32(0.0)), out=total)
        np.add(count, agree, out=count, casting="unsafe")
    np.maximum(count, np.float32(1.0), out=count)
    np.divide(total, count, out=total)
    np.add(acc, total, out=acc)


def elect_and_average_whole(start: np.ndarray, weighted: list[np.ndarray]) -> np.ndarray:
    """``start`` plus the disjoint mean of the agreeing ``weighted`` arrays, on whole arrays."""
    total = np.zeros_like(start)
    for values in weighted:
        total = total + values
    positive = total >= 0
    agreeing = [np.where(positive, w > 0, w < 0) for w in weighted]
    chosen = np.zeros_like(start)
    for values, agree in zip(weighted, agreeing, strict=True):
        chosen = chosen + np.where(agree, values, np.float32(0.0))
    count = np.maximum(np.sum(agreeing, axis=0, dtype=np.float32), np.float32(1.0))
    return start + chosen / count
