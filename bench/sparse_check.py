"""Compare chatvector's TIES, DARE and LoRA outputs with mergekit's on the same inputs.

- ties: both outputs are ``base + TIES(r·(chat − base))``: the share of bf16 elements the two
  agree on, the largest distance in bf16 steps, and how many entries each changed (TIES keeps
  ``k = int(density · n)`` per tensor; a kept entry can still round back to the base's value).
- dare: the random streams differ (numpy Philox here, torch's generator there), so only
  statistics compare: the share of entries changed (≈ density) and ``Σ|out − base| / Σ|r·δ|``
  (1 when the rescaling preserves the delta's L1 mass on average).
- lora: per adapter, its file size and ``‖Δ − s·B·A‖_F / ‖Δ‖_F`` over the linear layers it holds
  (``Δ = chat − base`` in float32), and the energy share ``‖s·B·A‖² / ‖Δ‖²``.

Streams one tensor at a time through ``safetensors.safe_open``.
"""

from __future__ import annotations

import json
import math
import sys
from pathlib import Path

import torch
from check import tensor_files
from safetensors import safe_open

from chatvector.io.adapter import read_adapter
from chatvector.io.hub import resolve_model


def _tensor(files: dict[str, Path], name: str) -> torch.Tensor:
    with safe_open(str(files[name]), framework="pt") as handle:
        return handle.get_tensor(name)


def _steps(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """Distance in representable bf16 values (same sign: difference of the bit patterns)."""

    def ordered(x: torch.Tensor) -> torch.Tensor:
        bits = x.contiguous().view(torch.int16).int()
        return torch.where(bits < 0, -(bits & 0x7FFF), bits)

    return (ordered(a) - ordered(b)).abs()


def _sparse(kind: str, models: dict[str, Path], ratio: float, outputs: dict[str, Path]) -> dict:
    base_files, chat_files = tensor_files(models["base"]), tensor_files(models["chat"])
    files = {name: tensor_files(path) for name, path in outputs.items()}
    stats = {name: {"changed": 0, "mass": 0.0} for name in outputs}
    elements, agree, worst, delta_mass = 0, 0, 0, 0.0
    for tensor in sorted(base_files):
        base = _tensor(base_files, tensor)
        delta = _tensor(chat_files, tensor).float() - base.float()
        delta_mass += float((ratio * delta).abs().sum())
        elements += base.numel()
        values = {}
        for name in outputs:
            values[name] = _tensor(files[name], tensor)
            stats[name]["changed"] += int((values[name] != base).sum())
            stats[name]["mass"] += float((values[name].float() - base.float()).abs().sum())
        if len(values) == 2:
            first, second = values.values()
            agree += int((first == second).sum())
            worst = max(worst, int(_steps(first, second).max()))
    result: dict = {"elements": elements}
    for name, entry in stats.items():
        result[name] = {"changed_share": entry["changed"] / elements, "l1_ratio": entry["mass"] / delta_mass}
    if len(outputs) == 2:
        result["identical_share"] = agree / elements
        result["max_steps"] = worst
    return result


def _adapter(folder: Path, models: dict[str, Path]) -> dict:
    weights = folder / "adapter_model.safetensors"
    adapter = read_adapter(resolve_model(str(folder), "vector"))
    config, modules = adapter.config, adapter.modules
    try:
        base_files, chat_files = tensor_files(models["base"]), tensor_files(models["chat"])
        error = total = kept = 0.0
        for module in modules:
            delta = _tensor(chat_files, module.weight_name).float() - _tensor(base_files, module.weight_name).float()
            b, a = (torch.from_numpy(adapter.tensor(f).astype("float32")) for f in (module.b, module.a))
            update = b @ a * module.scaling
            error += float((delta - update).double().square().sum())
            total += float(delta.double().square().sum())
            kept += float(update.double().square().sum())
    finally:
        adapter.close()
    return {
        "bytes": weights.stat().st_size,
        "modules": len(modules),
        "whole_modules": list(config.modules_to_save),
        "relative_error": math.sqrt(error / total),
        "energy_share": kept / total,
    }


def compare(kind: str, models: dict[str, Path], ratio: float, outputs: dict[str, Path]) -> dict:
    """The comparison of ``outputs`` (row name → directory) of one ``kind`` (ties, dare or lora)."""
    if kind == "lora":
        return {name: _adapter(path, models) for name, path in outputs.items()}
    return _sparse(kind, models, ratio, outputs)


if __name__ == "__main__":
    # python sparse_check.py KIND BASE CHAT RATIO NAME=DIR [NAME=DIR]
    kind, base, chat, r = sys.argv[1:5]
    named = dict(arg.split("=", 1) for arg in sys.argv[5:])
    print(
        json.dumps(
            compare(kind, {"base": Path(base), "chat": Path(chat)}, float(r), {k: Path(v) for k, v in named.items()}),
            indent=2,
        )
    )
