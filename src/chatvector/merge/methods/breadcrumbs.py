"""Model Breadcrumbs (Davari & Belilovsky 2023, arXiv:2312.06795): drop each delta's largest
outliers and its smallest entries, add what is left.

``breadcrumbs:density=D,gamma=G``, with the two parameters as mergekit defines them: of a
tensor's ``n`` entries, ``int(D·n)`` are kept; the ``int(G·n)`` of largest magnitude are dropped
first, then the smallest, so the kept entries are those ranked ``int(G·n) … int(G·n)+int(D·n)−1``
from the largest (when ``D + G`` exceeds 1, fewer large ones are dropped so that ``int(D·n)``
stay). Equal magnitudes rank by element index, the lower first. Then, as mergekit's
``breadcrumbs`` (no sign election, no normalisation): ``out = target + Σ rᵢ · keepᵢ(δᵢ)``.
``density=1`` keeps every entry, whatever ``gamma``. The two cuts need the whole tensor: the
pre-pass finds them per (tensor, term).
"""

from __future__ import annotations

import math

import numpy as np
from pydantic import Field, field_validator

from chatvector.merge.methods.base import ChunkTerms, MergeMethod, MethodParams, Rescan, Workspace, blocks
from chatvector.merge.methods.base import check_density as _check_density
from chatvector.merge.methods.ranks import RankCut, rank_cuts, ranked_first, stable_order
from chatvector.merge.methods.registry import register

__all__ = ["Breadcrumbs", "kept_ranks"]


def kept_ranks(density: float, gamma: float, numel: int) -> tuple[int, int]:
    """The kept entries' ranks ``[first, last)``, counted from the largest magnitude."""
    if density >= 1:
        return 0, numel
    kept = int(density * numel)
    top = min(int(gamma * numel), numel - kept)  # the outliers dropped
    return top, top + kept


class BreadcrumbsParams(MethodParams):
    density: float = Field(description="the share of entries kept per tensor, in (0, 1]")
    gamma: float = Field(0.01, description="the share of largest-magnitude entries dropped first, in [0, 1)")

    @field_validator("density")
    @classmethod
    def _share(cls, value: float) -> float:
        return _check_density(value)

    @field_validator("gamma")
    @classmethod
    def _outliers(cls, value: float) -> float:
        if not math.isfinite(value) or not 0 <= value < 1:
            raise ValueError(f"gamma {value:g} is not in [0, 1) (the share of the largest entries dropped)")
        return value


@register
class Breadcrumbs(MergeMethod):
    name = "breadcrumbs"
    summary = "drop the largest G share and the smallest entries, keep a D share, add"
    example = "breadcrumbs:density=0.5,gamma=0.1"
    Params = BreadcrumbsParams
    params: BreadcrumbsParams
    needs_prepass = True

    def prepare(self, magnitudes: np.ndarray, rescan: Rescan) -> tuple[RankCut, RankCut]:
        first, last = kept_ranks(self.params.density, self.params.gamma, magnitudes.size)
        above, through = rank_cuts(magnitudes, [first, last], rescan)
        return above, through

    def combine(self, acc: np.ndarray, deltas: list[np.ndarray], chunk: ChunkTerms, work: Workspace) -> None:
        # Here, not at the top: the registry is imported for `--help`, which needs no ml_dtypes.
        from chatvector.merge.arithmetic import accumulate_term

        for block in blocks(acc.size, chunk.block):
            size = block.stop - block.start
            start = chunk.start + block.start
            for delta, ratio, (above, through) in zip(deltas, chunk.ratios, chunk.states, strict=True):
                values = delta[block]
                magnitude = np.abs(values, out=work.array("magnitude", size))
                drop = ~ranked_first(magnitude, start, through) | ranked_first(magnitude, start, above)
                np.copyto(values, np.float32(0.0), where=drop)
                accumulate_term(acc[block], ratio, values, None, work.array("a", size), work.array("b", size))

    def reference(
        self, start: np.ndarray, deltas: list[np.ndarray], ratios: list[float], terms: list[int], name: str
    ) -> np.ndarray:
        result: np.ndarray = start.astype(np.float32)
        for delta, ratio in zip(deltas, ratios, strict=True):
            flat = delta.ravel()
            first, last = kept_ranks(self.params.density, self.params.gamma, flat.size)
            keep = np.zeros(flat.size, dtype=bool)
            keep[stable_order(flat)[first:last]] = True
            result = result + np.float32(ratio) * np.where(keep, flat, np.float32(0.0)).reshape(delta.shape)
        return result
