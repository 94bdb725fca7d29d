"""DARE (Yu et al. 2023, arXiv:2311.03099): drop entries at random, rescale the rest.

``dare:density=D,seed=S``: each entry of each term's delta is kept with probability ``D`` and
rescaled by ``1/D``: ``out = target + Σ rᵢ · (mᵢ · δᵢ / D)``. The keep bit of an entry depends on
(seed, term, tensor name, element index) only (:mod:`chatvector.merge.methods.draws`), so the
result does not depend on threads or chunk size. mergekit's ``dare_linear`` rescales to keep the
L1 norm instead of by ``1/D`` (docs/methods.md).
"""

from __future__ import annotations

import numpy as np
from pydantic import Field, field_validator

from chatvector.merge.methods.base import ChunkTerms, MergeMethod, MethodParams, Workspace, blocks
from chatvector.merge.methods.base import check_density as _check_density
from chatvector.merge.methods.draws import draws, keep_threshold
from chatvector.merge.methods.registry import register

__all__ = ["Dare", "DareParams", "dare_drop", "dare_drop_whole"]


class DareParams(MethodParams):
    density: float = Field(description="the probability of keeping an entry, in (0, 1]")
    seed: int = Field(0, ge=0, description="seeds the random drop (a non-negative integer)")

    @field_validator("density")
    @classmethod
    def _share(cls, value: float) -> float:
        return _check_density(value)


def dare_drop(delta: np.ndarray, density: float, keep: np.ndarray, drop: np.ndarray) -> np.ndarray:
    """In place: ``δ / D`` where ``keep`` (the draws) is below the threshold, else 0."""
    np.divide(delta, np.float32(density), out=delta)
    threshold = keep_threshold(density)
    if threshold < 2**32:
        np.greater_equal(keep, np.uint32(threshold), out=drop)
        np.copyto(delta, np.float32(0.0), where=drop)
    return delta


def dare_drop_whole(delta: np.ndarray, density: float, seed: int, term: int, name: str) -> np.ndarray:
    """DARE's drop and rescale of one whole delta, the whole random stream at once."""
    keep = (draws(seed, term, name, 0, delta.size).astype(np.uint64) < keep_threshold(density)).reshape(delta.shape)
    return np.where(keep, delta / np.float32(density), np.float32(0.0)).astype(np.float32)


@register
class Dare(MergeMethod):
    name = "dare"
    summary = "drop entries at random (keep probability D), rescale the rest by 1/D, add"
    example = "dare:density=0.4,seed=3"
    Params = DareParams
    params: DareParams

    def combine(self, acc: np.ndarray, deltas: list[np.ndarray], chunk: ChunkTerms, work: Workspace) -> None:
        # Here, not at the top: the registry is imported for `--help`, which needs no ml_dtypes.
        from chatvector.merge.arithmetic import accumulate_term

        density, seed = self.params.density, self.params.seed
        for block in blocks(acc.size, chunk.block):
            size = block.stop - block.start
            start = chunk.start + block.start
            for delta, ratio, term in zip(deltas, chunk.ratios, chunk.terms, strict=True):
                kept = dare_drop(
                    delta[block], density, draws(seed, term, chunk.name, start, size), work.array("drop", size, bool)
                )
                accumulate_term(acc[block], ratio, kept, None, work.array("a", size), work.array("b", size))

    def reference(
        self, start: np.ndarray, deltas: list[np.ndarray], ratios: list[float], terms: list[int], name: str
    ) -> np.ndarray:
        density, seed = self.params.density, self.params.seed
        result: np.ndarray = start.astype(np.float32)
        for delta, ratio, term in zip(deltas, ratios, terms, strict=True):
            result = result + np.float32(ratio) * dare_drop_whole(delta, density, seed, term, name)
        return result
