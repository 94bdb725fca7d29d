"""Check a finished output: its files as recorded at merge time, every tensor readable and finite,
and, on demand, its structure and values recomputed from the recipe's inputs.

``verify`` first compares the output's files with what its recipe recorded (a SHA-256 of every
non-weight file, the header of every weight file), then scans every tensor for NaN/Inf and, given
the recipe's inputs, checks every tensor's name, dtype and shape against the plan and recomputes
tensors with plain whole-tensor float32 arithmetic.
"""

from __future__ import annotations

import hashlib
import logging
import math
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from chatvector.dtypes import DTYPES
from chatvector.errors import ChatVectorError, InputError
from chatvector.io.checkpoint import Checkpoint
from chatvector.io.files import present, read_bytes, read_yaml
from chatvector.io.hub import ModelRef
from chatvector.merge.arithmetic import all_finite
from chatvector.merge.card import RECIPE_DIGEST_KEY, recipe_digest
from chatvector.merge.inputs import open_inputs
from chatvector.merge.methods import MergeMethod
from chatvector.merge.plan import Plan, TensorWork
from chatvector.merge.recipe import (
    RECIPE_FILENAME,
    InputRecord,
    OutputRecord,
    Recipe,
    RecordedRecipe,
    read_recipe_file,
)
from chatvector.verify.reference import load_tensor, max_abs_error, reference_tensor, within_rounding
from chatvector.verify.sparse import method_reference_tensor

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
    notes: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not (self.nonfinite or self.beyond_rounding or self.problems)

    def summary(self) -> str:
        lines = [f"{self.path}: {self.tensors} tensors read, {len(self.nonfinite) or 'none'} with NaN/Inf"]
        if self.recomputed:
            worst = max(self.recomputed.values())
            lines.append(
                f"recomputed {len(self.recomputed)} tensors from the recipe's inputs: "
                f"max abs error {worst:.3g}, {len(self.beyond_rounding)} beyond one "
                "rounding step of the output dtype"
            )
        lines += [f"NaN/Inf: {name}" for name in self.nonfinite[:20]]
        lines += [
            f"differs from the recomputation: {name} (max abs error {self.recomputed[name]:.3g})"
            for name in self.beyond_rounding[:20]
        ]
        lines += [f"problem: {p}" for p in self.problems]
        lines += [f"note: {n}" for n in self.notes]
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


def _read_recipe(
    folder: Path, against: Path | None, recompute: bool, report: VerifyReport
) -> tuple[Recipe | None, RecordedRecipe | None]:
    """The recipe to check against; a missing or malformed one becomes a problem of the report."""
    recipe_path = against if against is not None else folder / RECIPE_FILENAME
    if not present(recipe_path):
        if recompute or against is not None:
            report.problems.append(f"no recipe at {recipe_path}; pass --against RECIPE")
        else:
            report.notes.append(f"no {RECIPE_FILENAME}: only the tensors were checked")
        return None, None
    try:
        return read_recipe_file(recipe_path, root=None if against is not None else folder.resolve())
    except ChatVectorError as error:
        report.problems.append(f"the recipe cannot be used: {error}")
        return None, None


def _check_files(folder: Path, recorded: OutputRecord, output: Checkpoint, report: VerifyReport) -> None:
    """Every non-weight file against its SHA-256 recorded at merge time; weight files against their
    recorded sizes and header hashes (which change with any tensor added, removed or reshaped)."""
    root = folder.resolve()
    for name, digest in sorted(recorded.files.items()):
        try:
            data = read_bytes(folder / name, name, root=root)
        except ChatVectorError as error:
            report.problems.append(f"{name}: recorded at merge time, but {error}")
            continue
        if hashlib.sha256(data).hexdigest() != digest:
            if name == "README.md":
                report.notes.append("README.md was edited after the merge (the model card is not checked)")
            else:
                report.problems.append(f"{name} differs from the one written at merge time")
    for name in _unrecorded(folder, recorded):
        report.problems.append(f"{name} is not from the merge (the recipe records no such file)")
    for name in sorted(set(recorded.weights) | set(output.fingerprints)):
        if recorded.weights.get(name) != output.fingerprints.get(name):
            state = (
                "is missing"
                if name not in output.fingerprints
                else "was added"
                if name not in recorded.weights
                else "differs from the one written at merge time (size or header)"
            )
            report.problems.append(f"weights file {name} {state}")


def _check_recipe_binding(folder: Path, output: Checkpoint, report: VerifyReport) -> None:
    """The output's own recipe file against the digest its weights recorded at merge time: the
    recipe is what ``--recompute`` trusts, so an edited one (another target, another ratio) is a
    failure, not a different reference."""
    digest = output.metadata.get(RECIPE_DIGEST_KEY)
    if digest is None:
        report.notes.append(
            f"the weights record no {RECIPE_DIGEST_KEY} (written by an older chatvector); "
            f"{RECIPE_FILENAME} itself was not checked"
        )
        return
    try:
        data = read_yaml(folder / RECIPE_FILENAME, "recipe", root=folder.resolve())
    except ChatVectorError:
        return  # _read_recipe reported it
    try:
        matches = isinstance(data, dict) and recipe_digest(data) == digest
    except (TypeError, ValueError, RecursionError):  # keys json cannot sort or encode: not what was written
        matches = False
    if not matches:
        report.problems.append(
            f"{RECIPE_FILENAME} was edited after the merge: its recipe or inputs differ from those the "
            f"weights recorded ({RECIPE_DIGEST_KEY} in their metadata); verify against the original "
            "recipe with --against, or merge again"
        )


def _unrecorded(folder: Path, recorded: OutputRecord) -> list[str]:
    """Files of OUT the merge did not write (hidden ones and the card excepted: the hub adds them)."""
    found = []
    for path in sorted(folder.rglob("*")):
        name = path.relative_to(folder).as_posix()
        if path.is_dir() and not path.is_symlink():
            continue
        if any(part.startswith(".") for part in path.relative_to(folder).parts) or name in (
            RECIPE_FILENAME,
            "README.md",
        ):
            continue
        if name not in recorded.files and name not in recorded.weights:
            found.append(name)
    return found


def _check_structure(plan: Plan, output: Checkpoint, report: VerifyReport) -> set[str]:
    """Names, dtypes and shapes of the output against the recipe's plan; returns the tensors that match."""
    expected = {w.name: (w.out_dtype, tuple(w.shape)) for w in plan.tensors}
    found = {n: (i.dtype, tuple(i.shape)) for n, i in output.tensors.items()}
    for name in sorted(set(expected) - set(found)):
        report.problems.append(f"tensor {name} is missing from the output")
    for name in sorted(set(found) - set(expected)):
        report.problems.append(f"tensor {name} is in the output but the recipe makes no such tensor")
    for name in sorted(n for n in expected if n in found and expected[n] != found[n]):
        (want_dtype, want_shape), (dtype, shape) = expected[name], found[name]
        report.problems.append(
            f"tensor {name} is {dtype} {shape} in the output but the recipe makes {want_dtype} {want_shape}"
        )
    return {n for n in expected if found.get(n) == expected[n]}


def _recompute(
    recipe: Recipe,
    recorded: RecordedRecipe | None,
    output: Checkpoint,
    full: bool,
    allow_pickle: bool,
    report: VerifyReport,
    sample: int,
) -> None:
    with open_inputs(recipe, allow_pickle=allow_pickle) as inputs:
        plan = inputs.plan()
        _compare_fingerprints(plan.checkpoints, recorded.inputs if recorded else [], report)
        matching = _check_structure(plan, output, report)
        names = [w.name for w in plan.tensors if w.name in matching]
        chosen = set(names if full else _sample(names, sample))
        for work in plan.tensors:
            if work.name in chosen:
                _check_tensor(work, plan.checkpoints, output, report, plan.method)


def _check_tensor(
    work: TensorWork,
    checkpoints: list[Checkpoint],
    output: Checkpoint,
    report: VerifyReport,
    method: MergeMethod | None = None,
) -> None:
    """Recompute one output tensor; record its max error and whether it is within one rounding step."""
    if method is None or method.plain:
        expected = reference_tensor(work, checkpoints)
    else:
        expected = method_reference_tensor(work, checkpoints, method)
    result = load_tensor(output, work.name)
    report.recomputed[work.name] = max_abs_error(result, expected)
    if DTYPES[output.tensors[work.name].dtype].is_float and not within_rounding(
        result, expected, output.tensors[work.name].dtype
    ):
        report.beyond_rounding.append(work.name)


def _compare_fingerprints(checkpoints: list[Checkpoint], recorded: list[InputRecord], report: VerifyReport) -> None:
    by_ref = {(r.role, r.ref): r for r in recorded}
    for checkpoint in checkpoints:
        entry = by_ref.get((checkpoint.ref.role, checkpoint.ref.spec))
        if entry is None:
            continue
        if entry.files and entry.files != checkpoint.fingerprints:
            report.problems.append(
                f"input {checkpoint.ref.role} {checkpoint.ref.spec} differs from the one recorded "
                "at merge time (file sizes or safetensors headers changed)"
            )


def verify(
    path: str | Path,
    *,
    against: str | Path | None = None,
    recompute: bool = False,
    full: bool = False,
    allow_pickle: bool = False,
    sample: int = 8,
) -> VerifyReport:
    """Check a chatvector output (or any safetensors model directory).

    First its structure: the recipe file against the digest recorded in the weights' metadata, the
    non-weight files against the SHA-256 recorded at merge time, the weight files against their
    recorded headers, then every tensor read and checked for NaN/Inf.
    With ``recompute`` (implied by ``against``), the recipe's inputs are opened, their fingerprints
    compared with the recorded ones, every tensor's name, dtype and shape compared with what the
    recipe makes (missing and extra tensors named), and a sample of tensors (all with ``full``)
    recomputed in float32 and compared within one rounding step of the output dtype.

    Anything wrong with the output or its recipe (malformed, tampered, unreadable) is a problem of
    the report (``ok`` is False), never an exception.

    Raises:
        InputError: ``path`` is not a directory.
    """
    folder = Path(path)
    if not folder.is_dir():
        raise InputError(f"verify: {folder} is not a directory", file=folder)
    report = VerifyReport(folder)
    recipe, recorded = _read_recipe(folder, Path(against) if against else None, recompute, report)
    try:
        output = Checkpoint.open(ModelRef(str(folder), folder.resolve(), "output"), allow_pickle=allow_pickle)
    except ChatVectorError as error:
        report.problems.append(f"the output's weights cannot be read: {error}")
        return report
    with output:
        if recorded is not None and against is None:
            _check_recipe_binding(folder, output, report)
        if recorded is not None and recorded.output is not None:
            _check_files(folder, recorded.output, output, report)
        elif recorded is not None:
            report.notes.append(
                "the recipe records no file hashes (written by an older chatvector); "
                "config, tokenizer and template files were not checked"
            )
        try:
            _scan_finite(output, report)
        except ChatVectorError as error:
            report.problems.append(f"the output's tensors cannot be read: {error}")
        if recipe is not None and (recompute or against is not None):
            try:
                _recompute(recipe, recorded, output, full, allow_pickle, report, sample)
            except ChatVectorError as error:
                report.problems.append(f"cannot recompute from the recipe: {error}")
    if math.isnan(max(report.recomputed.values(), default=0.0)):
        report.problems.append("recomputation produced NaN")
    return report
