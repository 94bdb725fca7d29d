"""DELLA (Deep, Chhabra & Fatemi 2024, arXiv:2406.11617): drop entries at random with a keep
probability that grows with their magnitude rank, rescale the kept ones, elect signs, average.

``della:density=D,epsilon=E,seed=S[,rescale=false]``, as mergekit's ``della_magprune``: within each
row (the last dimension; a 1-D tensor is one row of ``L`` entries) the entries are ranked by
``|δ|`` from the smallest (rank 0) to the largest (rank ``L−1``; equal magnitudes by element
index, the lower first), and an entry of rank ``k`` is kept with probability
``pₖ = (D − E) + 2E · k/(L−1)``, from ``D − E`` for the smallest to ``D + E`` for the largest
(``D`` for a one-entry row). Kept entries are rescaled by ``1/pₖ`` (the paper's; ``rescale=false``
leaves them), scaled by their term's ratio, and combined as TIES does: elected sign of the sum,
mean of the agreeing entries. An entry's keep bit depends on (seed, term, tensor, element) only,
and a row's ranks on that row only, so chunks of whole rows stream exactly. ``density=1`` keeps
every entry.
"""

from __future__ import annotations

import math

import numpy as np
from pydantic import Field, field_validator, model_validator

from chatvector.merge.methods.base import ChunkTerms, MergeMethod, MethodParams, Workspace
from chatvector.merge.methods.base import check_density as _check_density
from chatvector.merge.methods.consensus import elect_and_average, elect_and_average_whole
from chatvector.merge.methods.draws import draws
from chatvector.merge.methods.registry import register

__all__ = ["Della", "keep_probabilities"]

_STREAM = "chatvector-della"


class DellaParams(MethodParams):
    density: float = Field(description="the mean probability of keeping an entry, in (0, 1]")
    epsilon: float = Field(0.15, description="how far the keep probability spreads around the density, >= 0")
    seed: int = Field(0, ge=0, description="seeds the random drop (a non-negative integer)")
    rescale: bool = Field(True, description="divide each kept entry by its keep probability")

    @field_validator("density")
    @classmethod
    def _share(cls, value: float) -> float:
        return _check_density(value)

    @field_validator("epsilon")
    @classmethod
    def _spread(cls, value: float) -> float:
        if not math.isfinite(value) or value < 0:
            raise ValueError(f"epsilon {value:g} is not a finite number >= 0")
        return value

    @model_validator(mode="after")
    def _inside(self) -> DellaParams:
        low, high = self.density - self.epsilon, self.density + self.epsilon
        if self.density < 1 and not (_check_density_ok(low) and high <= 1):
            raise ValueError(
                f"density ± epsilon spans [{low:g}, {high:g}]: both ends must be keep probabilities in "
                "(0, 1]; use a smaller epsilon"
            )
        return self


def _check_density_ok(value: float) -> bool:
    try:
        _check_density(value)
    except ValueError:
        return False
    return True


def keep_probabilities(magnitude: np.ndarray, density: float, epsilon: float) -> np.ndarray:
    """Per entry of ``magnitude`` (rows × L), float64: ``(D − E) + 2E · rank/(L−1)`` within its row."""
    rows, length = magnitude.shape
    if density >= 1:
        return np.ones(magnitude.shape)
    if length == 1:
        return np.full(magnitude.shape, density)
    order = np.argsort(magnitude, axis=1, kind="stable")
    rank = np.empty(magnitude.shape, dtype=np.float64)
    np.put_along_axis(rank, order, np.arange(length, dtype=np.float64)[None, :], axis=1)
    return (density - epsilon) + rank / (length - 1) * (2 * epsilon)


def _prune(delta: np.ndarray, keep: np.ndarray, probability: np.ndarray, rescale: bool) -> np.ndarray:
    """``δ`` (rows × L, float32) where the draw keeps it (divided by its probability), else 0."""
    kept = keep.astype(np.float64) < np.rint(probability * 2.0**32)
    values = np.divide(delta, probability.astype(np.float32)) if rescale else delta
    return np.where(kept, values, np.float32(0.0)).astype(np.float32)


@register
class Della(MergeMethod):
    name = "della"
    summary = "keep entries at random, likelier the larger (D ± E by rank), rescale, elect signs, average"
    example = "della:density=0.5,epsilon=0.2,seed=3"
    Params = DellaParams
    params: DellaParams
    whole_rows = True

    def pruned(self, delta: np.ndarray, term: int, name: str, start: int) -> np.ndarray:
        """One term's pruned, rescaled delta over whole rows (rows × L), starting at element ``start``."""
        p = self.params
        probability = keep_probabilities(np.abs(delta), p.density, p.epsilon)
        keep = draws(p.seed, term, name, start, delta.size, _STREAM).reshape(delta.shape)
        return _prune(delta, keep, probability, p.rescale)

    def combine(self, acc: np.ndarray, deltas: list[np.ndarray], chunk: ChunkTerms, work: Workspace) -> None:
        length = chunk.row_length
        step = max(1, chunk.block // length) * length  # whole rows per block
        for first in range(0, acc.size, step):
            block = slice(first, min(acc.size, first + step))
            size = block.stop - block.start
            weighted = []
            for delta, ratio, term in zip(deltas, chunk.ratios, chunk.terms, strict=True):
                rows = delta[block].reshape(-1, length)
                pruned = self.pruned(rows, term, chunk.name, chunk.start + first).ravel()
                weighted.append(np.multiply(pruned, np.float32(ratio), out=pruned))
            elect_and_average(acc[block], weighted, work.array("total", size), work.array("count", size))

    def reference(
        self, start: np.ndarray, deltas: list[np.ndarray], ratios: list[float], terms: list[int], name: str
    ) -> np.ndarray:
        length = start.shape[-1] if start.ndim >= 2 else start.size
        weighted = [
            np.float32(ratio) * self.pruned(delta.reshape(-1, length), term, name, 0).ravel()
            for delta, ratio, term in zip(deltas, ratios, terms, strict=True)
        ]
        return elect_and_average_whole(start.astype(np.float32).ravel(), weighted).reshape(start.shape)
