"""``--dry-run``: what a merge, apply or extract would do, after its preflight, with nothing written.

:func:`summarize_plan` turns a :class:`~chatvector.merge.plan.Plan` into a :class:`PlanSummary`:
every output tensor with its policy, resolved ratio per term and method, the bytes it reads and
writes, and the shard files the output would have. The command line prints :meth:`PlanSummary.text`.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from chatvector.dtypes import DTYPES
from chatvector.io.output import shard_layout
from chatvector.merge.plan import Plan, TensorWork

__all__ = ["PlanSummary", "TensorPlan", "ShardPlan", "summarize_plan"]


@dataclass(frozen=True)
class TensorPlan:
    """One output tensor as planned."""

    name: str
    shape: tuple[int, ...]
    dtype: str  # the output's
    policy: str  # merge, align, skip, copy, excluded, untouched
    ratios: tuple[float, ...]  # the resolved ratio of each term that adds to it
    bytes_read: int
    bytes_written: int


@dataclass(frozen=True)
class ShardPlan:
    """One output weight file: its name, how many tensors and bytes of data it holds."""

    file: str
    tensors: int
    nbytes: int


@dataclass
class PlanSummary:
    """The plan of a run that was not carried out."""

    out: Path
    kind: str  # merge or extract
    method: str  # the merge method's canonical text
    tensors: list[TensorPlan] = field(default_factory=list)
    shards: list[ShardPlan] = field(default_factory=list)
    prepass_bytes: int = 0  # read again before the merge by a method's pre-pass
    notes: list[str] = field(default_factory=list)

    @property
    def bytes_read(self) -> int:
        return sum(t.bytes_read for t in self.tensors) + self.prepass_bytes

    @property
    def bytes_written(self) -> int:
        return sum(t.bytes_written for t in self.tensors)

    def text(self) -> str:
        """The plan for people: one line per tensor, the shard layout and the totals."""
        lines = [f"Dry run of {self.kind} into {self.out} (method {self.method}): nothing was written"]
        width = max((len(t.name) for t in self.tensors), default=0)
        for t in self.tensors:
            ratios = ", ".join(f"{r:g}" for r in t.ratios) or "-"
            shape = "×".join(map(str, t.shape)) or "scalar"
            lines.append(
                f"  {t.name:<{width}}  {t.policy:<9} {shape:>14} {t.dtype:<5} ratios {ratios:<12} "
                f"read {_size(t.bytes_read):>9}  write {_size(t.bytes_written):>9}"
            )
        lines.append(f"output weights: {len(self.shards)} file(s)")
        lines += [f"  {s.file}: {s.tensors} tensors, {_size(s.nbytes)}" for s in self.shards]
        prepass = f" (of which {_size(self.prepass_bytes)} by the method's pre-pass)" if self.prepass_bytes else ""
        lines.append(
            f"total: {len(self.tensors)} tensors, read about {_size(self.bytes_read)}{prepass}, "
            f"write {_size(self.bytes_written)}"
        )
        lines += [f"note: {n}" for n in self.notes]
        return "\n".join(lines)


def _size(nbytes: float) -> str:
    for unit in ("B", "kB", "MB", "GB"):
        if nbytes < 1000 or unit == "GB":
            return f"{nbytes:.0f} {unit}" if unit == "B" else f"{nbytes:.2f} {unit}"
        nbytes /= 1000
    return f"{nbytes:.2f} TB"


def _reads(work: TensorWork) -> int:
    """Bytes the engine reads for one tensor (row-aligned terms may read a little less)."""
    total = work.target.nbytes if work.target is not None else 0
    return total + sum(t.plus.nbytes + (t.minus.nbytes if t.minus else 0) for t in work.terms)


def summarize_plan(plan: Plan, out: Path, kind: str, shard_size: int) -> PlanSummary:
    """What running ``plan`` into ``out`` would read and write, tensor by tensor."""
    method = plan.method.text() if plan.method is not None else "task_arithmetic"
    prepass = plan.method is not None and plan.method.needs_prepass
    tensors = [
        TensorPlan(
            w.name,
            tuple(w.shape),
            w.out_dtype,
            w.policy,
            tuple(t.ratio for t in w.terms),
            _reads(w),
            w.numel * DTYPES[w.out_dtype].itemsize,
        )
        for w in plan.tensors
    ]
    entries = [(w.name, w.out_dtype, tuple(w.shape)) for w in plan.tensors]
    prefix = "vector" if kind == "extract" else "model"
    shards = [
        ShardPlan(name, len(group), sum(DTYPES[d].itemsize * _count(s) for _, d, s in group))
        for name, group in shard_layout(entries, prefix, shard_size)
    ]
    prepass_bytes = sum(t.plus.nbytes + (t.minus.nbytes if t.minus else 0) for w in plan.tensors for t in w.terms)
    return PlanSummary(out, kind, method, tensors, shards, prepass_bytes if prepass else 0, list(plan.notes))


def _count(shape: tuple[int, ...]) -> int:
    total = 1
    for dim in shape:
        total *= dim
    return total
