"""What a merge method is: its parameters, an optional pre-pass, a streaming combine, a reference.

A method turns, for one output tensor, the target and each term's delta ``δᵢ = plusᵢ − minusᵢ``
(with its ratio ``rᵢ``) into the output, in float32. The engine (:mod:`chatvector.merge.engine`)
feeds it one chunk at a time; :meth:`MergeMethod.reference` computes the same tensor on whole
arrays, as the method's definition reads, and ``verify --recompute`` and the contract test
(``tests/test_methods_contract.py``) hold the two equal bit for bit. A method is one file in this
package that subclasses :class:`MergeMethod` and is decorated with :func:`register`.
"""

from __future__ import annotations

import math
from abc import ABC, abstractmethod
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from typing import Any, ClassVar

import numpy as np
from pydantic import BaseModel, ConfigDict

__all__ = [
    "MethodParams",
    "MergeMethod",
    "ChunkTerms",
    "Workspace",
    "Rescan",
    "blocks",
    "check_density",
    "format_value",
]

# A random keep probability is resolved in steps of 2⁻³² (one 32-bit draw per entry); a smaller
# share would keep nothing, and dividing by it would overflow float32.
SMALLEST_DENSITY = 2.0**-32

# Streams one term's whole delta again, chunk by chunk in element order: (first element, values).
Rescan = Callable[[], Iterable[tuple[int, np.ndarray]]]


def check_density(value: float, what: str = "density") -> float:
    """A share of entries: finite, in (0, 1], and not below the draws' resolution (2⁻³²).

    Raises:
        ValueError: naming the value and the accepted range.
    """
    if not math.isfinite(value) or not 0 < value <= 1:
        raise ValueError(f"{what} {value:g} is not in (0, 1] (it is the share of entries kept)")
    if value < SMALLEST_DENSITY:
        raise ValueError(f"{what} {value:g} is below 2^-32 ≈ 2.3e-10: it would keep no entry; use a larger {what}")
    return value


def format_value(value: Any) -> str:
    """A parameter value as written in the canonical text: short, and read back exactly."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, float):
        short = f"{value:g}"
        return short if float(short) == value else repr(value)
    return str(value)


class MethodParams(BaseModel):
    """A method's parameters: the field names are the ``key=value`` keys of ``--method``."""

    model_config = ConfigDict(extra="forbid", frozen=True)


@dataclass(frozen=True)
class ChunkTerms:
    """What a combine knows of the chunk it works on."""

    name: str  # the output tensor's name
    start: int  # the chunk's first element in the tensor
    row_length: int  # elements per row (the whole tensor for 1-D); chunks hold whole rows if asked
    ratios: tuple[float, ...]  # each term's ratio for this tensor
    terms: tuple[int, ...]  # each term's index in the recipe (keys random streams)
    states: tuple[Any, ...]  # each term's pre-pass result for this tensor (None without a pre-pass)
    block: int  # cache-sized block length to work in


class Workspace:
    """One worker's reusable scratch arrays, made on first use and kept for the whole run
    (fresh allocations page-fault, which costs more than the arithmetic on them)."""

    def __init__(self) -> None:
        self._arrays: dict[str, np.ndarray] = {}

    def array(self, key: str, size: int, dtype: Any = np.float32) -> np.ndarray:
        """An uninitialised array of ``size`` elements, reused under ``key``."""
        found = self._arrays.get(key)
        if found is None or found.size < size or found.dtype != np.dtype(dtype):
            found = np.empty(size, dtype=dtype)
            self._arrays[key] = found
        return found[:size]


def blocks(count: int, size: int) -> Iterator[slice]:
    """Slices of at most ``size`` covering ``range(count)``."""
    for first in range(0, count, size):
        yield slice(first, min(count, first + size))


class MergeMethod(ABC):
    """One merge method. Subclasses set the class attributes and implement the two computations.

    Attributes:
        name: what ``--method NAME:...`` and recipes call it.
        summary: one line for ``--help`` and error messages.
        example: a valid ``--method`` value (docs and the contract test use it).
        Params: the pydantic model of its parameters.
        plain: the engine adds ``rᵢ·δᵢ`` with its fast path (task arithmetic only).
        needs_prepass: :meth:`prepare` runs once per (tensor, term) before the merge.
        whole_rows: chunks hold whole rows (the last dimension; a 1-D tensor whole).
    """

    name: ClassVar[str]
    summary: ClassVar[str]
    example: ClassVar[str]
    Params: ClassVar[type[MethodParams]]
    plain: ClassVar[bool] = False
    needs_prepass: ClassVar[bool] = False
    whole_rows: ClassVar[bool] = False

    def __init__(self, params: MethodParams) -> None:
        self.params = params

    def text(self) -> str:
        """The canonical form, as recorded in recipes: ``name:key=value,...`` (every parameter)."""
        values = ",".join(f"{k}={format_value(v)}" for k, v in self.params.model_dump().items())
        return f"{self.name}:{values}" if values else self.name

    def prepare(self, magnitudes: np.ndarray, rescan: Rescan) -> Any:
        """The pre-pass for one (tensor, term): ``magnitudes`` holds the whole ``|δ|`` in element
        order, as scratch the method may reorder; ``rescan`` streams ``δ`` again if needed."""
        raise NotImplementedError(f"{self.name} has no pre-pass")

    @abstractmethod
    def combine(self, acc: np.ndarray, deltas: list[np.ndarray], chunk: ChunkTerms, work: Workspace) -> None:
        """Add the terms' contribution over one chunk to the float32 accumulator ``acc`` (which
        holds the target, or zeros), in place. ``deltas`` are each term's unscaled float32 delta
        over the chunk, scratch the method may overwrite."""

    @abstractmethod
    def reference(
        self, start: np.ndarray, deltas: list[np.ndarray], ratios: list[float], terms: list[int], name: str
    ) -> np.ndarray:
        """The whole output tensor in float32, computed on whole arrays as the definition reads
        (``start``: the target or zeros; ``deltas``: each term's whole float32 delta; all of the
        tensor's shape, which the result keeps)."""
