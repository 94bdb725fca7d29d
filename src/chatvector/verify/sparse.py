"""The whole-tensor reference of a merge by a method other than plain task arithmetic
(TIES, DARE, breadcrumbs, ...), for ``verify --recompute``.

Each term's delta and the target are loaded whole with the independent reader of
:mod:`chatvector.verify.reference`; the method's own whole-tensor form
(:meth:`~chatvector.merge.methods.MergeMethod.reference`: stable sorts for ranks, the whole
tensor's random stream at once) then computes the tensor as its definition reads, not chunk by
chunk as the engine does.
"""

from __future__ import annotations

import dataclasses

import numpy as np

from chatvector.io.checkpoint import Checkpoint
from chatvector.merge.methods import MergeMethod
from chatvector.merge.plan import TensorWork
from chatvector.verify.reference import reference_tensor

__all__ = ["method_reference_tensor"]


def method_reference_tensor(work: TensorWork, checkpoints: list[Checkpoint], method: MergeMethod) -> np.ndarray:
    """One output tensor of a merge by ``method``, recomputed whole in float32."""
    start = reference_tensor(dataclasses.replace(work, terms=()), checkpoints).astype(np.float32)
    if not work.terms:
        return start
    deltas = [
        reference_tensor(
            dataclasses.replace(work, target=None, target_source=None, terms=(dataclasses.replace(t, ratio=1.0),)),
            checkpoints,
        ).astype(np.float32)
        for t in work.terms
    ]
    return method.reference(start, deltas, [t.ratio for t in work.terms], [t.term for t in work.terms], work.name)
