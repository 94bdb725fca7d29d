"""The independent reference: whole-tensor float32 recomputation with torch.

The streaming engine computes with numpy in cache-sized blocks and reads with its own reader;
this module loads whole tensors through the ``safetensors`` library and recomputes them with
torch, so an error in either the engine's reader, its chunking or its arithmetic shows up as a
difference. Used by ``verify --recompute`` and the tests; never on the merge path (importing
torch costs about a second).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import torch

from chatvector.checkpoint import Checkpoint

if TYPE_CHECKING:
    from chatvector.plan import TensorWork
    from chatvector.verification import VerifyReport

STEP_BITS = {torch.bfloat16: 8, torch.float16: 11, torch.float32: 24}


def within_rounding(result: torch.Tensor, reference: torch.Tensor) -> bool:
    """Whether ``result`` equals the float32 ``reference`` up to one step of result's dtype."""
    bits = STEP_BITS.get(result.dtype, 24)
    ref = reference.float()
    step = torch.where(ref == 0, torch.full_like(ref, 2.0 ** -126),
                       torch.exp2(torch.floor(torch.log2(ref.abs())) - (bits - 1)))
    return bool(((result.float() - ref).abs() <= step * 1.0001).all())


def reference_combine(
    target: torch.Tensor | None, terms: list[tuple[float, torch.Tensor, torch.Tensor | None]],
) -> torch.Tensor:
    """Whole-tensor float32 recomputation of a merge with torch: the reference that checks the
    streaming numpy engine in ``verify`` and the tests, independent of its code and library."""
    result = torch.zeros_like(terms[0][1], dtype=torch.float32) if target is None else target.float()
    for ratio, plus, minus in terms:
        delta = plus.float() if minus is None else plus.float() - minus.float()
        result = result + ratio * delta
    return result


def load_tensor(checkpoint: Checkpoint, name: str) -> torch.Tensor:
    """Read a whole tensor with the safetensors library (not our reader), for independence."""
    from safetensors import safe_open

    info = checkpoint.tensors[name]
    if checkpoint.format == "pickle":
        return checkpoint._pickled[name]
    with safe_open(str(info.file), framework="pt") as handle:
        return handle.get_tensor(name)


def recompute_tensor(work: TensorWork, checkpoints: list[Checkpoint], output: Checkpoint,
                     report: VerifyReport) -> None:
    """Recompute one output tensor from its inputs; record its max error and whether it is
    within one rounding step in ``report``."""
    target = load_tensor(checkpoints[work.target_source], work.name) if work.target else None
    reference = target.float() if target is not None else torch.zeros(work.shape)
    for term in work.terms:
        plus = load_tensor(checkpoints[term.plus_source], term.plus.name)
        minus = load_tensor(checkpoints[term.minus_source], term.minus.name) if term.minus else None
        if term.runs is None:
            reference = reference_combine(reference, [(term.ratio, plus, minus)])
            continue
        for run in term.runs:
            rows = slice(run.out_start, run.out_start + run.length)
            p = plus[run.plus_start: run.plus_start + run.length]
            m = None if minus is None else minus[run.minus_start: run.minus_start + run.length]
            reference[rows] = reference_combine(reference[rows], [(term.ratio, p, m)])
    result = load_tensor(output, work.name)
    report.recomputed[work.name] = float((result.float() - reference).abs().max()) if result.numel() else 0.0
    if result.is_floating_point() and not within_rounding(result, reference):
        report.beyond_rounding.append(work.name)
