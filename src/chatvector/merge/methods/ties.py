"""TIES (Yadav et al. 2023, arXiv:2306.01708): trim, elect signs, average the agreeing entries.

``ties:density=D``: each term's delta keeps its ``k = max(1, int(D·n))`` entries of largest
magnitude per tensor (equal magnitudes at the cut go to the lower element index), the rest
become 0. Per entry, the sign of ``Σ rᵢ·δᵢ`` over the trimmed, scaled deltas is elected (0 elects
+, as in mergekit), and the agreeing entries ``rᵢ·δᵢ`` are averaged:
``out = target + Σ_agree rᵢ·δᵢ / #agree``. One term gives ``target + r·trim(δ)``. The cut needs
the whole tensor: the pre-pass finds it per (tensor, term).
"""

from __future__ import annotations

import numpy as np
from pydantic import Field, field_validator

from chatvector.merge.methods.base import ChunkTerms, MergeMethod, MethodParams, Rescan, Workspace, blocks
from chatvector.merge.methods.base import check_density as _check_density
from chatvector.merge.methods.consensus import elect_and_average, elect_and_average_whole
from chatvector.merge.methods.ranks import RankCut, rank_cuts, ranked_first, stable_order
from chatvector.merge.methods.registry import register

__all__ = ["Ties", "keep_count"]


def keep_count(density: float, numel: int) -> int:
    """How many entries of an ``numel``-entry tensor TIES keeps (at least one)."""
    return min(numel, max(1, int(density * numel))) if numel else 0


class TiesParams(MethodParams):
    density: float = Field(description="the share of entries kept per tensor, in (0, 1]")

    @field_validator("density")
    @classmethod
    def _share(cls, value: float) -> float:
        return _check_density(value)


@register
class Ties(MergeMethod):
    name = "ties"
    summary = "keep the top-D share by magnitude, elect signs, average the agreeing entries"
    example = "ties:density=0.3"
    Params = TiesParams
    params: TiesParams
    needs_prepass = True

    def prepare(self, magnitudes: np.ndarray, rescan: Rescan) -> RankCut:
        return rank_cuts(magnitudes, [keep_count(self.params.density, magnitudes.size)], rescan)[0]

    def combine(self, acc: np.ndarray, deltas: list[np.ndarray], chunk: ChunkTerms, work: Workspace) -> None:
        for block in blocks(acc.size, chunk.block):
            size = block.stop - block.start
            weighted = []
            for delta, ratio, cut in zip(deltas, chunk.ratios, chunk.states, strict=True):
                values = delta[block]
                kept = ranked_first(np.abs(values, out=work.array("magnitude", size)), chunk.start + block.start, cut)
                np.copyto(values, np.float32(0.0), where=~kept)
                weighted.append(np.multiply(values, np.float32(ratio), out=values))
            elect_and_average(acc[block], weighted, work.array("total", size), work.array("count", size))

    def reference(
        self, start: np.ndarray, deltas: list[np.ndarray], ratios: list[float], terms: list[int], name: str
    ) -> np.ndarray:
        weighted = []
        for delta, ratio in zip(deltas, ratios, strict=True):
            flat = delta.ravel()
            keep = np.zeros(flat.size, dtype=bool)
            keep[stable_order(flat)[: keep_count(self.params.density, flat.size)]] = True
            weighted.append(np.float32(ratio) * np.where(keep, flat, np.float32(0.0)))
        return elect_and_average_whole(start.astype(np.float32).ravel(), weighted).reshape(start.shape)
