"""Reproducible random draws for the random methods (DARE, DARE-TIES, DELLA).

Entry ``i`` of one term's delta in one tensor gets the ``i``-th 32-bit draw of a counter-based
generator (Philox4x64) keyed by a hash of (stream label, seed, term, tensor name): any chunk can
position the generator at its first element, so results do not depend on thread count or
chunk size, and an entry is kept with probability ``p`` when its draw is below ``round(p·2³²)``.
"""

from __future__ import annotations

import hashlib

import numpy as np

__all__ = ["draws", "keep_threshold"]


def _key(label: str, seed: int, term: int, name: str) -> int:
    digest = hashlib.blake2b(f"{label}\0{seed}\0{term}\0{name}".encode(), digest_size=16).digest()
    return int.from_bytes(digest, "little")


def draws(seed: int, term: int, name: str, start: int, count: int, label: str = "chatvector-dare") -> np.ndarray:
    """The 32-bit draws of elements ``[start, start + count)`` of one tensor's stream.

    Philox4x64 yields four 64-bit values per counter value, each split into two 32-bit draws
    (low half first): element ``i`` is half ``i % 2`` of value ``(i // 2) % 4`` of the block after
    counter ``i // 8``, so a chunk can start anywhere and still get the same draws.
    """
    first = start // 2  # the 64-bit value holding element `start`
    values = -(-(start + count) // 2) - first
    generator = np.random.Philox(key=_key(label, seed, term, name), counter=first // 4)
    raw = generator.random_raw(values + first % 4)[first % 4 :]
    return raw.view("<u4")[start % 2 : start % 2 + count]


def keep_threshold(probability: float) -> int:
    """A draw below this keeps its entry: ``round(p · 2³²)`` (2³² keeps every entry)."""
    return round(probability * 2**32)
