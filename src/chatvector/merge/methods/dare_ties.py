"""DARE-TIES (Yu et al. 2023, arXiv:2311.03099, with TIES's election): DARE's random drop and
rescale, then TIES's sign election and mean of the agreeing entries.

``dare_ties:density=D,seed=S``: each term's delta is dropped and rescaled exactly as by
``dare:density=D,seed=S`` (the same random stream, so the same entries survive), scaled by its
ratio; per entry the sign of ``Σ rᵢ·δᵢ'`` is elected (0 elects +) and the agreeing entries are
averaged: ``out = target + Σ_agree rᵢ·δᵢ' / #agree``. One term gives exactly ``dare``'s result.
mergekit's ``dare_ties`` sums the agreeing entries by default (``normalize: false``) and rescales
to keep the L1 norm (docs/methods.md).
"""

from __future__ import annotations

import numpy as np

from chatvector.merge.methods.base import ChunkTerms, MergeMethod, Workspace, blocks
from chatvector.merge.methods.consensus import elect_and_average, elect_and_average_whole
from chatvector.merge.methods.dare import DareParams, dare_drop, dare_drop_whole
from chatvector.merge.methods.draws import draws
from chatvector.merge.methods.registry import register

__all__ = ["DareTies"]


@register
class DareTies(MergeMethod):
    name = "dare_ties"
    summary = "DARE's random drop and 1/D rescale, then TIES's sign election and mean"
    example = "dare_ties:density=0.4,seed=3"
    Params = DareParams
    params: DareParams

    def combine(self, acc: np.ndarray, deltas: list[np.ndarray], chunk: ChunkTerms, work: Workspace) -> None:
        density, seed = self.params.density, self.params.seed
        for block in blocks(acc.size, chunk.block):
            size = block.stop - block.start
            start = chunk.start + block.start
            weighted = []
            for delta, ratio, term in zip(deltas, chunk.ratios, chunk.terms, strict=True):
                keep = draws(seed, term, chunk.name, start, size)
                kept = dare_drop(delta[block], density, keep, work.array("drop", size, bool))
                weighted.append(np.multiply(kept, np.float32(ratio), out=kept))
            elect_and_average(acc[block], weighted, work.array("total", size), work.array("count", size))

    def reference(
        self, start: np.ndarray, deltas: list[np.ndarray], ratios: list[float], terms: list[int], name: str
    ) -> np.ndarray:
        density, seed = self.params.density, self.params.seed
        weighted = [
            np.float32(ratio) * dare_drop_whole(delta, density, seed, term, name)
            for delta, ratio, term in zip(deltas, ratios, terms, strict=True)
        ]
        return elect_and_average_whole(start.astype(np.float32), weighted)
