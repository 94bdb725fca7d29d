"""Check an output: structure right after writing, and contents (and provenance) on demand.

``check_written`` re-reads what a merge just wrote through the ``safetensors`` library (a reader
independent of ours) and compares every tensor name, dtype and shape to the plan.
``verify`` scans every tensor of a finished directory for NaN/Inf and, given the recipe's
inputs, recomputes tensors with plain whole-tensor float32 arithmetic and reports the error.
"""

from __future__ import annotations

import logging
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
import yaml

from chatvector.arithmetic import all_finite, reference_combine
from chatvector.checkpoint import Checkpoint, ModelRef
from chatvector.errors import InputError, OutputError
from chatvector.recipe import RECIPE_FILENAME, load_recipe

log = logging.getLogger(__name__)

STEP_BITS = {torch.bfloat16: 8, torch.float16: 11, torch.float32: 24}


def check_written(folder: Path, entries: list[tuple[str, str, tuple[int, ...]]]) -> None:
    """Raise OutputError unless ``folder`` holds exactly the planned tensors."""
    from safetensors import safe_open

    found: dict[str, tuple[str, tuple[int, ...]]] = {}
    for path in sorted(folder.glob("*.safetensors")):
        with safe_open(str(path), framework="pt") as handle:
            for name in handle.keys():  # noqa: SIM118 - safe_open is not a mapping
                sliced = handle.get_slice(name)
                found[name] = (sliced.get_dtype(), tuple(sliced.get_shape()))
    expected = {name: (dtype, tuple(shape)) for name, dtype, shape in entries}
    if found != expected:
        missing = sorted(set(expected) - set(found))
        wrong = sorted(n for n in expected if n in found and found[n] != expected[n])
        raise OutputError(f"the written output does not match the plan (missing: {missing[:5]}, "
                          f"wrong dtype/shape: {wrong[:5]}); nothing was kept")


@dataclass
class VerifyReport:
    """The outcome of ``chatvector verify``."""

    path: Path
    tensors: int = 0
    nonfinite: list[str] = field(default_factory=list)
    recomputed: dict[str, float] = field(default_factory=dict)  # name -> max abs error
    beyond_rounding: list[str] = field(default_factory=list)
    problems: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not (self.nonfinite or self.beyond_rounding or self.problems)

    def summary(self) -> str:
        lines = [f"{self.path}: {self.tensors} tensors read, "
                 f"{len(self.nonfinite) or 'none'} with NaN/Inf"]
        if self.recomputed:
            worst = max(self.recomputed.values())
            lines.append(f"recomputed {len(self.recomputed)} tensors from the recipe's inputs: "
                         f"max abs error {worst:.3g}, {len(self.beyond_rounding)} beyond one "
                         "rounding step of the output dtype")
        lines += [f"NaN/Inf: {name}" for name in self.nonfinite[:20]]
        lines += [f"differs from the recomputation: {name} (max abs error {self.recomputed[name]:.3g})"
                  for name in self.beyond_rounding[:20]]
        lines += [f"problem: {p}" for p in self.problems]
        lines.append("OK" if self.ok else "FAILED")
        return "\n".join(lines)


def _scan_finite(checkpoint: Checkpoint, report: VerifyReport) -> None:
    from chatvector.engine import TORCH_DTYPES

    buffer = torch.empty((1 << 20) * 8, dtype=torch.uint8)
    for name, info in checkpoint.tensors.items():
        report.tensors += 1
        if not info.is_float:
            continue
        for start in range(0, info.numel, 1 << 20):
            count = min(1 << 20, info.numel - start)
            checkpoint.read_into(info, start, count, buffer)
            values = buffer[: count * info.itemsize].view(TORCH_DTYPES[info.dtype])
            if not all_finite(values):
                report.nonfinite.append(name)
                break


def _sample(names: list[str], count: int) -> list[str]:
    """Evenly spread, deterministic sample that always includes embedding-like tensors."""
    if count >= len(names):
        return names
    step = len(names) / count
    chosen = {names[int(i * step)] for i in range(count)}
    chosen |= {n for n in names if "embed" in n or "lm_head" in n or "wte" in n}
    return sorted(chosen)


def within_rounding(result: torch.Tensor, reference: torch.Tensor) -> bool:
    """Whether ``result`` equals the float32 ``reference`` up to one step of result's dtype."""
    bits = STEP_BITS.get(result.dtype, 24)
    ref = reference.float()
    step = torch.where(ref == 0, torch.full_like(ref, 2.0 ** -126),
                       torch.exp2(torch.floor(torch.log2(ref.abs())) - (bits - 1)))
    return bool(((result.float() - ref).abs() <= step * 1.0001).all())


def _recompute(out_dir: Path, recipe_path: Path, full: bool, allow_pickle: bool,
               report: VerifyReport, sample: int) -> None:
    from chatvector import api

    recipe = load_recipe(recipe_path)
    recorded = _recorded_inputs(recipe_path)
    target_ref, resolved = api._resolve_all(recipe, allow_pickle)
    frame, terms = api._operands(recipe, target_ref, resolved, allow_pickle)
    from chatvector.plan import build_plan

    plan = build_plan(frame, frame_is_target=target_ref is not None, terms=terms, options=recipe.options)
    _compare_fingerprints(plan.checkpoints, recorded, report)
    output = Checkpoint.open(ModelRef(str(out_dir), out_dir.resolve(), "output"))
    names = [w.name for w in plan.tensors]
    chosen = set(names if full else _sample(names, sample))
    for work in plan.tensors:
        if work.name in chosen:
            _recompute_one(work, plan.checkpoints, output, report)


def _load(checkpoint: Checkpoint, name: str) -> torch.Tensor:
    """Read a whole tensor with the safetensors library (not our reader), for independence."""
    from safetensors import safe_open

    info = checkpoint.tensors[name]
    if checkpoint.format == "pickle":
        return checkpoint._pickled[name]
    with safe_open(str(info.file), framework="pt") as handle:
        return handle.get_tensor(name)


def _recompute_one(work: Any, checkpoints: list[Checkpoint], output: Checkpoint,
                   report: VerifyReport) -> None:
    target = _load(checkpoints[work.target_source], work.name) if work.target else None
    reference = target.float() if target is not None else torch.zeros(work.shape)
    for term in work.terms:
        plus = _load(checkpoints[term.plus_source], term.plus.name)
        minus = _load(checkpoints[term.minus_source], term.minus.name) if term.minus else None
        if term.runs is None:
            reference = reference_combine(reference, [(term.ratio, plus, minus)])
            continue
        for run in term.runs:
            rows = slice(run.out_start, run.out_start + run.length)
            p = plus[run.plus_start: run.plus_start + run.length]
            m = None if minus is None else minus[run.minus_start: run.minus_start + run.length]
            reference[rows] = reference_combine(reference[rows], [(term.ratio, p, m)])
    result = _load(output, work.name)
    report.recomputed[work.name] = float((result.float() - reference).abs().max()) if result.numel() else 0.0
    if result.is_floating_point() and not within_rounding(result, reference):
        report.beyond_rounding.append(work.name)


def _recorded_inputs(recipe_path: Path) -> list[dict[str, Any]]:
    data = yaml.safe_load(recipe_path.read_text(encoding="utf-8"))
    return data.get("inputs", []) if isinstance(data, dict) else []


def _compare_fingerprints(checkpoints: list[Checkpoint], recorded: list[dict[str, Any]],
                          report: VerifyReport) -> None:
    by_ref = {(r.get("role"), r.get("ref")): r for r in recorded}
    for checkpoint in checkpoints:
        entry = by_ref.get((checkpoint.ref.role, checkpoint.ref.spec))
        if entry is None:
            continue
        if entry.get("files") and entry["files"] != checkpoint.fingerprints:
            report.problems.append(
                f"input {checkpoint.ref.role} {checkpoint.ref.spec} differs from the one recorded "
                "at merge time (file sizes or safetensors headers changed)")


def verify(path: str | Path, *, against: str | Path | None = None, recompute: bool = False,
           full: bool = False, allow_pickle: bool = False, sample: int = 8) -> VerifyReport:
    """Check a chatvector output (or any safetensors model directory).

    Every tensor is read and checked for NaN/Inf. With ``recompute`` (implied by ``against``),
    the recipe's inputs are opened, their fingerprints compared with the recorded ones, and a
    sample of tensors (all with ``full``) recomputed in float32 and compared within one
    rounding step of the output dtype.
    """
    folder = Path(path)
    if not folder.is_dir():
        raise InputError(f"verify: {folder} is not a directory")
    report = VerifyReport(folder)
    checkpoint = Checkpoint.open(ModelRef(str(folder), folder.resolve(), "output"),
                                 allow_pickle=allow_pickle)
    with checkpoint:
        _scan_finite(checkpoint, report)
    if recompute:
        recipe_path = Path(against) if against else folder / RECIPE_FILENAME
        if not recipe_path.exists():
            raise InputError(f"verify: no recipe at {recipe_path}; pass --against RECIPE")
        _recompute(folder, recipe_path, full, allow_pickle, report, sample)
    report.tensors = report.tensors or 0
    if math.isnan(max(report.recomputed.values(), default=0.0)):
        report.problems.append("recomputation produced NaN")
    return report
