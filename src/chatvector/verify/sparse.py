"""The whole-tensor reference of a sparsified (TIES/DARE) merge, for ``verify --recompute``.

Each term's delta and the target are loaded whole with the independent reader of
:mod:`chatvector.verify.reference`; the sparsification is then applied as its definition reads
(:func:`chatvector.merge.sparsify.whole_tensor`: a stable sort for the top-k, the whole tensor's
random stream at once), not chunk by chunk as the engine does.
"""

from __future__ import annotations

import dataclasses

import numpy as np

from chatvector.io.checkpoint import Checkpoint
from chatvector.merge.plan import TensorWork
from chatvector.merge.sparsify import SparsifySpec, whole_tensor
from chatvector.verify.reference import reference_tensor

__all__ = ["sparse_reference_tensor"]


def sparse_reference_tensor(work: TensorWork, checkpoints: list[Checkpoint], spec: SparsifySpec) -> np.ndarray:
    """One output tensor of a sparsified merge, recomputed whole in float32."""
    start = reference_tensor(dataclasses.replace(work, terms=()), checkpoints)
    if not work.terms:
        return start
    deltas = [
        reference_tensor(
            dataclasses.replace(work, target=None, target_source=None, terms=(dataclasses.replace(t, ratio=1.0),)),
            checkpoints,
        )
        for t in work.terms
    ]
    return whole_tensor(start, deltas, [t.ratio for t in work.terms], [t.term for t in work.terms], work.name, spec)
