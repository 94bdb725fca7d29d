"""Lineage check: does the target look like a descendant of the chat vector's base?

A chat vector only carries over to a model trained from the same base (the paper's break
condition is a vector from another family). From a deterministic sample of weight matrices
(evenly spread over the sorted names, the first :data:`SAMPLE_ELEMENTS` entries of each), this
measures ``‖target − base‖ / ‖base‖``, ``‖chat − base‖ / ‖base‖`` and the cosine of the two
deltas. A model continually pre-trained from the base moves its weights by a few percent; two
independently initialised models of equal scale are ``√2 ≈ 1.41`` apart. Beyond
:data:`RELATIVE_LIMIT` the target (or the chat model) is reported as not looking like a
descendant: a warning with the numbers, or a :class:`PreflightError` with ``--strict-lineage``.

The same figures are shown by ``chatvector inspect``.
"""

from __future__ import annotations

import logging
import math
import re
from collections.abc import Iterable
from dataclasses import asdict, dataclass

import numpy as np

from chatvector.dtypes import DTYPES
from chatvector.errors import PreflightError
from chatvector.io.checkpoint import Checkpoint
from chatvector.io.safetensors_header import TensorInfo
from chatvector.merge.plan import Plan, TensorWork, TermWork

__all__ = ["Lineage", "RELATIVE_LIMIT", "figures", "sample_names", "measure_plan", "measure_checkpoints", "check_plan"]

log = logging.getLogger(__name__)

RELATIVE_LIMIT = 1.2  # ‖x − base‖/‖base‖ above this: not a descendant (unrelated equal-scale weights: 1.41)
SAMPLE_TENSORS = 16
SAMPLE_ELEMENTS = 1 << 18  # per sampled tensor: a few MB read in all, whatever the model size
_VOCAB = re.compile(r"embed|wte|wpe|lm_head")


@dataclass(frozen=True)
class Lineage:
    """The figures of the lineage check, over ``tensors`` sampled tensors (``elements`` entries)."""

    target_rel: float  # ‖target − base‖ / ‖base‖
    chat_rel: float  # ‖chat − base‖ / ‖base‖
    cosine: float  # cos(target − base, chat − base)
    tensors: int
    elements: int

    @property
    def problems(self) -> list[str]:
        found = []
        if not self.target_rel <= RELATIVE_LIMIT:
            found.append(
                f"the target does not look like a descendant of the base: ‖target − base‖/‖base‖ = "
                f"{self.target_rel:.3g} (a model trained from the base moves by a few percent; "
                f"unrelated weights are about 1.41 apart; limit {RELATIVE_LIMIT})"
            )
        if not self.chat_rel <= RELATIVE_LIMIT:
            found.append(
                f"the chat model does not look tuned from the base: ‖chat − base‖/‖base‖ = "
                f"{self.chat_rel:.3g} (limit {RELATIVE_LIMIT})"
            )
        return found

    @property
    def verdict(self) -> str:
        return "looks like a descendant" if not self.problems else "does NOT look like a descendant"

    def summary(self) -> str:
        return (
            f"lineage ({self.tensors} sampled tensors): ‖target − base‖/‖base‖ = {self.target_rel:.3g}, "
            f"‖chat − base‖/‖base‖ = {self.chat_rel:.3g}, cosine(target − base, chat − base) = "
            f"{self.cosine:+.3f}: {self.verdict}"
        )

    def to_json(self) -> dict[str, object]:
        return {**asdict(self), "verdict": self.verdict, "limit": RELATIVE_LIMIT}


def figures(samples: Iterable[tuple[np.ndarray, np.ndarray, np.ndarray]]) -> Lineage | None:
    """The figures from (target, chat − base, base) float arrays of equal shape; None without samples."""
    bb = tt = cc = tc = 0.0
    tensors = elements = 0
    for target, chat_delta, base in samples:
        b = base.astype(np.float64).ravel()
        dt = target.astype(np.float64).ravel() - b
        dc = chat_delta.astype(np.float64).ravel()
        bb, tt = bb + float(b @ b), tt + float(dt @ dt)
        cc, tc = cc + float(dc @ dc), tc + float(dt @ dc)
        tensors, elements = tensors + 1, elements + b.size
    if not tensors or bb == 0:
        return None
    cosine = tc / math.sqrt(tt * cc) if tt and cc else float("nan")
    return Lineage(math.sqrt(tt / bb), math.sqrt(cc / bb), cosine, tensors, elements)


def sample_names(candidates: list[str], count: int = SAMPLE_TENSORS) -> list[str]:
    """An evenly spread, deterministic sample of the sorted names."""
    ordered = sorted(candidates)
    if len(ordered) <= count:
        return ordered
    return [ordered[int(i * len(ordered) / count)] for i in range(count)]


def _read(checkpoint: Checkpoint, info: TensorInfo) -> np.ndarray:
    count = min(info.numel, SAMPLE_ELEMENTS)
    raw = np.empty(count * info.itemsize, dtype=np.uint8)
    checkpoint.read_into(info, 0, count, raw)
    return raw.view(DTYPES[info.dtype].numpy).astype(np.float32)


def measure_plan(plan: Plan) -> Lineage | None:
    """The figures for a merge plan's first (base, chat) term; None when it has none (vectors only).

    Sampled from the term's pairing, not from the merge's work: tensors a ratio rule gives 0 are
    measured too (the target's lineage does not depend on the ratios).
    """
    picked: dict[str, tuple[TensorWork, TermWork]] = {}
    for work in plan.tensors:
        pair = plan.first_pairs.get(work.name)
        if work.target is None or pair is None or pair.minus is None or pair.runs is not None:
            continue
        if len(work.shape) < 2 or _VOCAB.search(work.name):
            continue
        picked[work.name] = (work, pair)
    checkpoints = plan.checkpoints

    def samples() -> Iterable[tuple[np.ndarray, np.ndarray, np.ndarray]]:
        for name in sample_names(list(picked)):
            work, term = picked[name]
            assert work.target is not None and work.target_source is not None
            assert term.minus is not None and term.minus_source is not None
            base = _read(checkpoints[term.minus_source], term.minus)
            chat = _read(checkpoints[term.plus_source], term.plus)
            yield _read(checkpoints[work.target_source], work.target), chat.astype(np.float64) - base, base

    return figures(samples())


def measure_checkpoints(
    target: Checkpoint, chat: Checkpoint, base: Checkpoint, *, chat_is_vector: bool = False
) -> Lineage | None:
    """The same figures for models that share tensor names (``chatvector inspect``); ``chat`` may be a
    vector directory (then it holds chat − base itself)."""
    names = [
        n
        for n, info in target.tensors.items()
        if info.is_float
        and len(info.shape) >= 2
        and not _VOCAB.search(n)
        and all(n in c.tensors and c.tensors[n].shape == info.shape for c in (chat, base))
    ]

    def samples() -> Iterable[tuple[np.ndarray, np.ndarray, np.ndarray]]:
        for name in sample_names(names):
            base_values = _read(base, base.tensors[name])
            chat_values = _read(chat, chat.tensors[name]).astype(np.float64)
            yield (
                _read(target, target.tensors[name]),
                chat_values if chat_is_vector else chat_values - base_values,
                base_values,
            )

    return figures(samples())


def check_plan(plan: Plan, strict: bool) -> Lineage | None:
    """Measure, record in the plan (details and notes), warn; raise with ``strict`` when it fails."""
    found = measure_plan(plan)
    if found is None:
        return None
    plan.details["lineage"] = found.to_json()
    log.info("%s", found.summary())
    if found.problems:
        if strict:
            raise PreflightError([*found.problems, "--strict-lineage is set; drop it to merge anyway"])
        for problem in found.problems:
            log.warning("%s", problem)
            plan.notes.append(f"lineage warning: {problem}")
    return found
