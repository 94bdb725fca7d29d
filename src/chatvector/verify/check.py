"""Check a finished output: every tensor readable and finite, and, on demand, recomputed.

``verify`` scans every tensor of a finished directory for NaN/Inf and, given the recipe's
inputs, recomputes tensors with plain whole-tensor float32 arithmetic and reports the error.
"""

from __future__ import annotations

import logging
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import yaml

from chatvector.dtypes import DTYPES
from chatvector.errors import InputError
from chatvector.io.checkpoint import Checkpoint
from chatvector.io.hub import ModelRef
from chatvector.merge.arithmetic import all_finite
from chatvector.merge.inputs import open_inputs
from chatvector.merge.plan import TensorWork
from chatvector.merge.recipe import RECIPE_FILENAME, load_recipe
from chatvector.verify.reference import load_tensor, max_abs_error, reference_tensor, within_rounding

log = logging.getLogger(__name__)


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
    buffer = np.empty((1 << 20) * 8, dtype=np.uint8)
    for name, info in checkpoint.tensors.items():
        report.tensors += 1
        if not info.is_float:
            continue
        for start in range(0, info.numel, 1 << 20):
            count = min(1 << 20, info.numel - start)
            checkpoint.read_into(info, start, count, buffer)
            values = buffer[: count * info.itemsize].view(DTYPES[info.dtype].numpy)
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


def _recompute(out_dir: Path, recipe_path: Path, full: bool, allow_pickle: bool,
               report: VerifyReport, sample: int) -> None:
    recipe = load_recipe(recipe_path)
    recorded = _recorded_inputs(recipe_path)
    with open_inputs(recipe, allow_pickle=allow_pickle) as inputs:
        plan = inputs.plan()
        _compare_fingerprints(plan.checkpoints, recorded, report)
        with Checkpoint.open(ModelRef(str(out_dir), out_dir.resolve(), "output")) as output:
            names = [w.name for w in plan.tensors]
            chosen = set(names if full else _sample(names, sample))
            for work in plan.tensors:
                if work.name in chosen:
                    _check_tensor(work, plan.checkpoints, output, report)


def _check_tensor(work: TensorWork, checkpoints: list[Checkpoint], output: Checkpoint,
                  report: VerifyReport) -> None:
    """Recompute one output tensor; record its max error and whether it is within one rounding step."""
    expected = reference_tensor(work, checkpoints)
    result = load_tensor(output, work.name)
    report.recomputed[work.name] = max_abs_error(result, expected)
    if DTYPES[output.tensors[work.name].dtype].is_float and not within_rounding(
            result, expected, output.tensors[work.name].dtype):
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
