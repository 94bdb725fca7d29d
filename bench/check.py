"""How far a merged checkpoint is from the float32 recomputation ``cp + r·(chat − base)``.

For every tensor, row block by row block (so memory stays at a few MB whatever the model size),
the reference is computed exactly as ``cp.float() + r * (chat.float() - base.float())`` and
rounded once to bfloat16; the output is compared with it:

- ``max_abs_err``: the largest ``|output − reference|`` (reference rounded to bf16);
- ``max_steps``: the largest distance in bf16 representable values ("ulps") between output and
  reference; 0 means bit-identical, 1 means at most one rounding step off;
- ``mismatched``: how many elements differ at all.

Tensors are paired by name through ``safetensors.safe_open``; missing, extra or reshaped tensors
are listed in ``problems`` and make the check fail. Nothing here knows how the output was made.

Usage: ``python check.py BASE CHAT TARGET RATIO OUTPUT`` prints the result as JSON.
"""

from __future__ import annotations

import json
import math
import sys
import threading
from concurrent.futures import ThreadPoolExecutor
from contextlib import ExitStack
from dataclasses import asdict, dataclass, field
from pathlib import Path

BLOCK_ELEMENTS = 1024 * 1024


@dataclass
class Deviation:
    """The comparison of one output with the reference; tensors merge into a whole-model total."""

    tensors: int = 0
    elements: int = 0
    mismatched: int = 0
    nonfinite: int = 0
    max_abs_err: float = 0.0
    max_steps: int = 0
    output_dtypes: list[str] = field(default_factory=list)
    problems: list[str] = field(default_factory=list)

    @property
    def within_one_step(self) -> bool:
        """True when every tensor is present and every element is at most one bf16 step off."""
        return (
            not self.problems
            and self.nonfinite == 0
            and self.tensors > 0
            and math.isfinite(self.max_abs_err)
            and self.max_steps <= 1
        )

    def absorb(self, other: Deviation) -> None:
        self.tensors += other.tensors
        self.elements += other.elements
        self.mismatched += other.mismatched
        self.nonfinite += other.nonfinite
        self.max_abs_err = max(self.max_abs_err, other.max_abs_err, key=_nan_first)
        self.max_steps = max(self.max_steps, other.max_steps)
        self.output_dtypes = sorted(set(self.output_dtypes) | set(other.output_dtypes))
        self.problems += other.problems

    def to_json(self) -> dict[str, object]:
        return {**asdict(self), "within_one_step": self.within_one_step}


def _nan_first(value: float) -> float:
    return math.inf if math.isnan(value) else value


def tensor_files(folder: Path) -> dict[str, Path]:
    """Tensor name → the safetensors file of ``folder`` that holds it (read from the headers)."""
    from safetensors import safe_open

    found: dict[str, Path] = {}
    for path in sorted(folder.glob("*.safetensors")):
        with safe_open(str(path), framework="pt") as handle:
            for name in handle.keys():  # noqa: SIM118 - safe_open is not a dict
                found[name] = path
    return found


def _ordered(bits):  # noqa: ANN001, ANN202 - torch tensors; torch is imported lazily
    """bf16 bit patterns → integers that increase with the value, one per representable value."""
    import torch

    wide = bits.to(torch.int32)
    return torch.where(wide < 0, -(wide & 0x7FFF), wide)


class _Buffers(threading.local):
    """Per-thread float32 work buffers, reused for every block (fresh memory is slow to touch)."""

    def get(self, n: int):  # noqa: ANN201 - torch tensors
        import torch

        if getattr(self, "size", 0) < n:
            self.size = n
            self.left, self.right = torch.empty(n), torch.empty(n)
            self.reference = torch.empty(n, dtype=torch.bfloat16)
        return self.left[:n], self.right[:n], self.reference[:n]


_buffers = _Buffers()


def compare_block(result: Deviation, base, chat, cp, out, ratio: float) -> None:  # noqa: ANN001
    """Fold one row block (bf16 tensors of equal shape) into ``result``."""
    import torch

    n = out.numel()
    left, right, reference = _buffers.get(n)
    # reference = cp + ratio * (chat - base), in float32, rounded once to bf16
    left.copy_(chat.reshape(-1))
    right.copy_(base.reshape(-1))
    left.sub_(right).mul_(ratio)
    right.copy_(cp.reshape(-1))
    left.add_(right)
    reference.copy_(left)
    out_flat = out.reshape(-1).to(torch.bfloat16)
    out_bits, reference_bits = out_flat.view(torch.int16), reference.view(torch.int16)
    result.elements += n
    exponent_all_ones = (out_bits & 0x7F80) == 0x7F80  # Inf or NaN
    if exponent_all_ones.any():
        result.nonfinite += int(exponent_all_ones.sum())
    if torch.equal(out_bits, reference_bits):
        return
    # only the differing elements (usually a few percent) go through the slower arithmetic
    differ = out_bits != reference_bits
    out_bits, reference_bits = out_bits[differ], reference_bits[differ]
    result.mismatched += out_bits.numel()
    error = (out_bits.view(torch.bfloat16).float() - reference_bits.view(torch.bfloat16).float()).abs().max()
    result.max_abs_err = max(result.max_abs_err, error.item(), key=_nan_first)
    steps = (_ordered(out_bits) - _ordered(reference_bits)).abs().max()
    result.max_steps = max(result.max_steps, int(steps))


def compare_tensor(name: str, files: dict[str, Path], ratio: float) -> Deviation:
    """Compare one output tensor with its float32 reference, row block by row block."""
    from safetensors import safe_open

    result = Deviation(tensors=1)
    roles = ("base", "chat", "cp", "out")
    with ExitStack() as stack:
        slices = {
            role: stack.enter_context(safe_open(str(files[role]), framework="pt")).get_slice(name) for role in roles
        }
        shapes = {role: tuple(slices[role].get_shape()) for role in roles}
        if len(set(shapes.values())) != 1:
            result.problems.append(f"{name}: shapes differ: {shapes}")
            return result
        shape = shapes["out"]
        result.output_dtypes = [slices["out"].get_dtype()]
        if result.output_dtypes != ["BF16"]:
            result.problems.append(f"{name}: output dtype {result.output_dtypes[0]}, expected BF16")
        if not shape:  # a scalar
            compare_block(result, *(slices[role][:] for role in roles), ratio)
            return result
        step = max(1, BLOCK_ELEMENTS // max(math.prod(shape[1:]), 1))
        for first in range(0, shape[0], step):
            compare_block(result, *(slices[role][first : first + step] for role in roles), ratio)
    return result


def compare(models: dict[str, Path], output: Path, ratio: float, threads: int = 2) -> Deviation:
    """Compare every tensor of ``output`` with the reference built from ``models`` (base/chat/cp).

    Args:
        models: ``{"base": dir, "chat": dir, "cp": dir}``.
        output: the merged checkpoint directory.
        ratio: the ``r`` of the merge.
        threads: tensors compared in parallel (one torch thread each).

    Returns:
        A Deviation; its ``within_one_step`` says whether the output is acceptable.
    """
    import torch

    torch.set_num_threads(1)
    where = {role: tensor_files(folder) for role, folder in models.items()}
    where["out"] = tensor_files(output)
    total = Deviation()
    names = set(where["cp"])
    for role, found in where.items():
        if set(found) != names:
            missing, extra = sorted(names - set(found)), sorted(set(found) - names)
            total.problems.append(
                f"{role}: tensors missing {missing[:5]}, extra {extra[:5]} ({len(missing)} missing, {len(extra)} extra)"
            )
    common = sorted(names.intersection(*map(set, where.values())))
    with ThreadPoolExecutor(threads) as pool:
        for part in pool.map(lambda n: compare_tensor(n, {r: where[r][n] for r in where}, ratio), common):
            total.absorb(part)
    return total


def main() -> None:
    base, chat, cp, ratio, output = sys.argv[1:]
    models = {"base": Path(base), "chat": Path(chat), "cp": Path(cp)}
    print(json.dumps(compare(models, Path(output), float(ratio)).to_json(), indent=2))


if __name__ == "__main__":
    main()
