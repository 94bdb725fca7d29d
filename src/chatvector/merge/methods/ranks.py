"""Magnitude ranks on whole tensors without sorting them: TIES and breadcrumbs keep a window of
ranks in the order "largest ``|δ|`` first, equal magnitudes by lower element index".

A :class:`RankCut` says which entries rank among the first ``c``; it is found in the pre-pass
with one partial partition of the tensor's magnitudes (``O(n)``) and, only when ties straddle the
cut, one more streaming pass to find which ties in index order fill the quota.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from chatvector.merge.methods.base import Rescan

__all__ = ["RankCut", "rank_cuts", "ranked_first", "stable_order"]


@dataclass(frozen=True)
class RankCut:
    """The first ``c`` entries: ``|δ| > value``, or ``|δ| == value`` at an element index ``<= last``."""

    value: float
    last: int


def rank_cuts(magnitudes: np.ndarray, counts: Sequence[int], rescan: Rescan) -> list[RankCut]:
    """One cut per count in ``counts`` (``0 <= c <= n``), for the whole tensor's ``|δ|`` (reordered in place)."""
    n = magnitudes.size
    positions = sorted({n - c for c in counts if 0 < c <= n})
    if positions:
        magnitudes.partition(positions)
    cuts: dict[int, RankCut] = {}
    pending: dict[int, tuple[float, int]] = {}  # count -> (value, how many ties it takes)
    for c in counts:
        if c <= 0:
            cuts[c] = RankCut(math.inf, -1)
            continue
        value = magnitudes[n - c]
        greater = int(np.count_nonzero(magnitudes[n - c :] > value))
        equal = int(np.count_nonzero(magnitudes == value))
        quota = c - greater
        if quota >= equal:
            cuts[c] = RankCut(float(value), n)
        else:
            pending[c] = (float(value), quota)
    if pending:
        cuts.update(_last_ties(pending, rescan))
    return [cuts[c] for c in counts]


def _last_ties(pending: dict[int, tuple[float, int]], rescan: Rescan) -> dict[int, RankCut]:
    """For each cut whose ties straddle it: the element index of its quota-th tie in index order."""
    seen = dict.fromkeys(pending, 0)
    found: dict[int, RankCut] = {}
    for start, delta in rescan():
        magnitude = np.abs(delta)
        for c, (value, quota) in pending.items():
            if c in found:
                continue
            ties = np.flatnonzero(magnitude == np.float32(value))
            if seen[c] + ties.size >= quota:
                found[c] = RankCut(value, start + int(ties[quota - seen[c] - 1]))
            seen[c] += ties.size
        if len(found) == len(pending):
            break
    if len(found) != len(pending):  # pragma: no cover
        raise AssertionError("fewer ties than counted")
    return found


def ranked_first(magnitude: np.ndarray, start: int, cut: RankCut) -> np.ndarray:
    """Whether each entry of a block (elements ``start…``) ranks among the cut's first entries."""
    value = np.float32(cut.value)
    kept = magnitude > value
    last = cut.last - start  # ties at positions up to this are kept
    if last >= 0:
        ties = magnitude[: last + 1] == value
        kept[: last + 1] |= ties
    return kept


def stable_order(delta: np.ndarray) -> np.ndarray:
    """Element indices from the largest ``|δ|`` to the smallest, equal magnitudes by lower index."""
    return np.argsort(-np.abs(delta), kind="stable")
