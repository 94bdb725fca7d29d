"""Sparsified chat vectors: TIES and DARE, as pure numpy kernels on float32 blocks.

``--sparsify ties:density=D``
    Each term's delta keeps its ``k = max(1, int(D · n))`` entries of largest magnitude per tensor
    (ties at the threshold broken by the lower element index), the rest become 0. Per entry, the
    sign of ``Σ rᵢ·δᵢ`` over the trimmed, scaled deltas is elected (0 counts as +, as in mergekit),
    and the entries ``rᵢ·δᵢ`` that agree with it (non-zero, same sign) are averaged:
    ``out = target + Σ_agree rᵢ·δᵢ / #agree`` (the TIES paper's disjoint mean, of the scaled deltas).
    A single term gives ``target + r · trim(δ)``. The threshold needs the whole tensor, so every
    (tensor, term) gets one extra streaming pass first (:mod:`chatvector.merge.engine`).

``--sparsify dare:density=D,seed=S``
    Each entry of each term's delta is kept with probability ``D`` and rescaled by ``1/D``:
    ``out = target + Σ rᵢ · (mᵢ · δᵢ / D)``. The keep/drop bit of an entry is a function of
    (seed, term, tensor name, element index) only: element ``i`` is kept when the ``i``-th 32-bit
    draw of a counter-based generator (Philox4x64, keyed by a hash of (seed, term, name)) is below
    ``round(D · 2³²)``, so the keep probability is D within 2⁻³³. Any chunk can position the
    generator at its first element, so results do not depend on thread count or chunk size.

Every operation is a float32 operation in a fixed order, so an independent whole-tensor
implementation (the tests') reproduces the result bit for bit.
"""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass
from typing import Literal

import numpy as np

__all__ = [
    "SparsifySpec",
    "parse_sparsify",
    "keep_count",
    "dare_keep",
    "dare_draws",
    "dare_threshold",
    "ties_trim",
    "ties_combine",
    "TiesThreshold",
    "threshold_of",
    "whole_tensor",
]

_FORM = re.compile(r"(ties|dare)(?::(.*))?")


@dataclass(frozen=True)
class SparsifySpec:
    """A parsed ``--sparsify`` value."""

    method: Literal["ties", "dare"]
    density: float
    seed: int = 0

    def text(self) -> str:
        """The canonical form, as recorded in recipes."""
        if self.method == "dare":
            return f"dare:density={self.density:g},seed={self.seed}"
        return f"ties:density={self.density:g}"


def parse_sparsify(text: str) -> SparsifySpec:
    """Parse ``ties:density=0.2`` or ``dare:density=0.3,seed=7``.

    Raises:
        ValueError: naming what is wrong and showing the expected form.
    """
    example = "write ties:density=0.2 or dare:density=0.3,seed=0"
    found = _FORM.fullmatch(text.strip().lower())
    if found is None:
        raise ValueError(f"{text!r} is not a sparsification; {example}")
    method = found.group(1)
    params: dict[str, str] = {}
    for part in filter(None, (found.group(2) or "").split(",")):
        key, sep, value = part.partition("=")
        if not sep:
            raise ValueError(f"{text!r}: {part!r} is not key=value; {example}")
        params[key.strip()] = value.strip()
    allowed = {"density", "seed"} if method == "dare" else {"density"}
    unknown = sorted(set(params) - allowed)
    if unknown:
        raise ValueError(f"{text!r}: {method} takes {', '.join(sorted(allowed))}, not {', '.join(unknown)}")
    if "density" not in params:
        raise ValueError(f"{text!r}: give the density, the share of entries kept; {example}")
    try:
        density = float(params["density"])
        seed = int(params.get("seed", "0"))
    except ValueError:
        raise ValueError(f"{text!r}: density is a number in (0, 1], seed an integer; {example}") from None
    if not 0 < density <= 1:
        raise ValueError(f"{text!r}: density {density:g} is not in (0, 1] (it is the share of entries kept)")
    if seed < 0:
        raise ValueError(f"{text!r}: the seed is a non-negative integer")
    return SparsifySpec("ties" if method == "ties" else "dare", density, seed)


def keep_count(density: float, numel: int) -> int:
    """How many entries of an ``numel``-entry tensor TIES keeps (at least one, as mergekit)."""
    return min(numel, max(1, int(density * numel))) if numel else 0


# -- DARE ---------------------------------------------------------------------------------------


def _philox_key(seed: int, term: int, name: str) -> int:
    digest = hashlib.blake2b(f"chatvector-dare\0{seed}\0{term}\0{name}".encode(), digest_size=16).digest()
    return int.from_bytes(digest, "little")


def dare_draws(seed: int, term: int, name: str, start: int, count: int) -> np.ndarray:
    """The 32-bit draws of elements ``[start, start + count)`` of one tensor's stream.

    Philox4x64 yields four 64-bit values per counter value, each split into two 32-bit draws
    (low half first): element ``i`` is half ``i % 2`` of value ``(i // 2) % 4`` of the block after
    counter ``i // 8``, so a chunk can start anywhere and still get the same draws.
    """
    first = start // 2  # the 64-bit value holding element `start`
    values = -(-(start + count) // 2) - first
    generator = np.random.Philox(key=_philox_key(seed, term, name), counter=first // 4)
    raw = generator.random_raw(values + first % 4)[first % 4 :]
    return raw.view("<u4")[start % 2 : start % 2 + count]


def dare_threshold(density: float) -> int:
    """A draw below this keeps its entry: ``round(D · 2³²)`` (2³² keeps every entry)."""
    return round(density * 2**32)


def dare_keep(delta: np.ndarray, draws: np.ndarray, density: float, drop: np.ndarray) -> np.ndarray:
    """In place: ``δ / D`` where the draw is below the threshold, else 0 (``drop``: a bool scratch)."""
    np.divide(delta, np.float32(density), out=delta)
    threshold = dare_threshold(density)
    if threshold < 2**32:
        np.greater_equal(draws, np.uint32(threshold), out=drop)
        np.copyto(delta, np.float32(0.0), where=drop)
    return delta


# -- TIES ---------------------------------------------------------------------------------------


@dataclass(frozen=True)
class TiesThreshold:
    """What keeps an entry of one term's delta in one tensor: ``|δ| > value``, or ``|δ| == value``
    at an element index ``<= last_tie`` (the first ties in index order fill the quota)."""

    value: float
    last_tie: int


def threshold_of(magnitudes: np.ndarray, keep: int) -> tuple[float, int, int]:
    """For the whole tensor's ``|δ|`` (reordered in place): the ``keep``-th largest value, how many
    entries are strictly larger, and how many equal it."""
    n = magnitudes.size
    position = n - keep
    magnitudes.partition(position)
    value = magnitudes[position]
    above = magnitudes[position:]
    greater = int(np.count_nonzero(above > value))
    equal = int(np.count_nonzero(above == value)) + int(np.count_nonzero(magnitudes[:position] == value))
    return float(value), greater, equal


def ties_trim(delta: np.ndarray, start: int, threshold: TiesThreshold, scratch: np.ndarray) -> np.ndarray:
    """In place: zero the entries of ``delta`` (elements ``start…``) that TIES does not keep."""
    magnitude = np.abs(delta, out=scratch)
    value = np.float32(threshold.value)
    drop = magnitude < value
    last = threshold.last_tie - start  # ties at positions after this are dropped
    if last < delta.size - 1:
        ties = magnitude == value
        ties[: max(last + 1, 0)] = False
        drop |= ties
    delta[drop] = 0.0
    return delta


def ties_combine(acc: np.ndarray, weighted: list[np.ndarray], total: np.ndarray, count: np.ndarray) -> np.ndarray:
    """Add the disjoint mean of the agreeing ``rᵢ·δᵢ`` (already trimmed and scaled) to ``acc``.

    ``total`` and ``count`` are float32 scratch blocks of ``acc``'s size. The elected sign is that
    of ``Σ rᵢ·δᵢ`` (summed in term order; 0 elects +).
    """
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
    return np.add(acc, total, out=acc)


# -- whole-tensor form (for verify) ----------------------------------------------------------------


def whole_tensor(
    start: np.ndarray, deltas: list[np.ndarray], ratios: list[float], terms: list[int], name: str, spec: SparsifySpec
) -> np.ndarray:
    """The sparsified merge of one tensor computed on whole arrays, as its definition reads.

    Args:
        start: the float32 target tensor (zeros when extracting).
        deltas: each term's float32 delta, whole, in output order (0 where rows get none).
        ratios, terms: each term's ratio and recipe-term index (DARE's random stream).
    """
    result = start.astype(np.float32).ravel().copy()
    flat = [d.astype(np.float32).ravel() for d in deltas]
    if spec.method == "dare":
        threshold = dare_threshold(spec.density)
        for delta, ratio, term in zip(flat, ratios, terms, strict=True):
            keep = dare_draws(spec.seed, term, name, 0, delta.size).astype(np.uint64) < threshold
            kept = np.where(keep, delta / np.float32(spec.density), np.float32(0.0))
            result = result + np.float32(ratio) * kept.astype(np.float32)
        return result.reshape(start.shape)
    weighted = []
    for delta, ratio in zip(flat, ratios, strict=True):
        order = np.argsort(-np.abs(delta), kind="stable")  # largest first; equal ones by index
        keep = np.zeros(delta.size, dtype=bool)
        keep[order[: keep_count(spec.density, delta.size)]] = True
        weighted.append(np.float32(ratio) * np.where(keep, delta, np.float32(0.0)))
    total = np.zeros_like(result)
    for values in weighted:
        total = total + values
    positive = total >= 0
    agreeing = [np.where(positive, w > 0, w < 0) for w in weighted]
    chosen = np.zeros_like(result)
    for values, agree in zip(weighted, agreeing, strict=True):
        chosen = chosen + np.where(agree, values, np.float32(0.0))
    count = np.maximum(np.sum(agreeing, axis=0, dtype=np.float32), np.float32(1.0))
    return (result + chosen / count).reshape(start.shape)
