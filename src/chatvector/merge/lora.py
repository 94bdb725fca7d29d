"""PEFT LoRA adapters: their files, and an adapter read as a vector term (``apply --vector ADAPTER:r``).

A LoRA module ``M`` (an ``nn.Linear`` whose weight is ``M.weight``, shape out × in) stores
``base_model.model.M.lora_A.weight`` (r × in) and ``base_model.model.M.lora_B.weight`` (out × r);
PEFT adds ``scaling · B @ A`` to ``M.weight`` when it merges, with ``scaling = lora_alpha / r``
(``/ √r`` with rsLoRA), per module through ``rank_pattern`` and ``alpha_pattern``. chatvector
writes ``lora_alpha = r`` for every module, so the scaling is 1 and a ratio lives in ``B``.
Whole modules (``modules_to_save``) are stored as ``base_model.model.M.<param>`` and replace the
model's when loaded.

Read as a vector term, the adapter behaves like a vector directory whose tensor ``M.weight`` is
PEFT's merge update ``scaling · B @ A`` (float32, as PEFT computes it on a CPU), computed in fixed
blocks of rows when the engine reads a range of it. Tensors the adapter does not hold keep the
target's values. Merging therefore gives ``target + r · scaling · B @ A``, PEFT's
``merge_and_unload`` of the adapter with its scaling multiplied by r, up to the float32 rounding
of the matrix product (numpy's BLAS and torch's may sum the rank terms in another order).
"""

from __future__ import annotations

import hashlib
import json
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from chatvector.errors import InputError
from chatvector.io.checkpoint import Checkpoint
from chatvector.io.files import read_json
from chatvector.io.hub import ModelRef
from chatvector.io.output import write_file
from chatvector.io.safetensors_header import TensorInfo, read_header

__all__ = [
    "ADAPTER_CONFIG",
    "ADAPTER_WEIGHTS",
    "PREFIX",
    "ROW_BLOCK",
    "LoraModule",
    "AdapterConfig",
    "AdapterCheckpoint",
    "is_adapter",
    "read_adapter_config",
    "adapter_config_json",
    "write_adapter_config",
    "module_of",
    "open_adapter",
]

ADAPTER_CONFIG = "adapter_config.json"
ADAPTER_WEIGHTS = "adapter_model.safetensors"
PREFIX = "base_model.model."
_KEY = re.compile(r"^base_model\.model\.(.+)\.lora_([AB])(?:\.default)?\.weight$")


def is_adapter(folder: Path) -> bool:
    """Whether ``folder`` holds a PEFT adapter."""
    return (folder / ADAPTER_CONFIG).is_file() and (folder / ADAPTER_WEIGHTS).is_file()


def module_of(weight_name: str) -> str:
    """``model.layers.0.self_attn.q_proj.weight`` → ``model.layers.0.self_attn.q_proj``."""
    return weight_name.removesuffix(".weight")


@dataclass(frozen=True)
class LoraModule:
    """One module of an adapter: its weights' keys in the file and its scaling."""

    module: str
    a_key: str
    b_key: str
    scaling: float

    @property
    def weight_name(self) -> str:
        return f"{self.module}.weight"


@dataclass(frozen=True)
class AdapterConfig:
    """The parts of ``adapter_config.json`` that decide what merging the adapter adds."""

    r: int
    alpha: float
    rank_pattern: dict[str, int] = field(default_factory=dict)
    alpha_pattern: dict[str, float] = field(default_factory=dict)
    use_rslora: bool = False
    modules_to_save: tuple[str, ...] = ()
    raw: dict[str, Any] = field(default_factory=dict)

    def _pattern(self, patterns: dict[str, Any], module: str) -> Any:
        for key, value in patterns.items():  # PEFT's rule: the key matches a dotted suffix of the module name
            if re.match(rf"(.*\.)?({key})$", module):
                return value
        return None

    def scaling(self, module: str) -> float:
        rank = self._pattern(self.rank_pattern, module) or self.r
        alpha = self._pattern(self.alpha_pattern, module) or self.alpha
        return alpha / rank**0.5 if self.use_rslora else alpha / rank


def read_adapter_config(folder: Path) -> AdapterConfig:
    """Read and check an adapter's config: plain LoRA only (no DoRA, no other PEFT method).

    Raises:
        InputError: naming the file and the setting chatvector cannot read.
    """
    path = folder / ADAPTER_CONFIG
    data = read_json(path, ADAPTER_CONFIG, root=folder.resolve(), error=InputError)
    problems = []
    if data.get("peft_type", "LORA") != "LORA":
        problems.append(f"peft_type is {data.get('peft_type')!r}; only LORA adapters can be applied")
    for key in ("use_dora", "fan_in_fan_out", "lora_bias"):
        if data.get(key):
            problems.append(f"{key} is set; chatvector applies plain LoRA only (merge this adapter with peft)")
    if not isinstance(data.get("r"), int) or data["r"] < 1:
        problems.append(f"r is {data.get('r')!r}, not a positive integer")
    if problems:
        raise InputError(f"{path}: " + "; ".join(problems), file=path)
    return AdapterConfig(
        r=data["r"],
        alpha=float(data.get("lora_alpha", data["r"])),
        rank_pattern=dict(data.get("rank_pattern") or {}),
        alpha_pattern=dict(data.get("alpha_pattern") or {}),
        use_rslora=bool(data.get("use_rslora")),
        modules_to_save=tuple(data.get("modules_to_save") or ()),
        raw=data,
    )


def lora_modules(keys: list[str], config: AdapterConfig, where: Path) -> list[LoraModule]:
    """Pair every module's lora_A and lora_B keys; an unpaired one is an error naming the file."""
    found: dict[str, dict[str, str]] = {}
    for key in keys:
        match = _KEY.match(key)
        if match:
            found.setdefault(match.group(1), {})[match.group(2)] = key
    unpaired = sorted(m for m, pair in found.items() if len(pair) != 2)
    if unpaired:
        raise InputError(
            f"{where}: LoRA module {unpaired[0]} has only lora_{next(iter(found[unpaired[0]]))}; "
            "the adapter is incomplete",
            file=where,
        )
    return [LoraModule(m, pair["A"], pair["B"], config.scaling(m)) for m, pair in sorted(found.items())]


def adapter_config_json(
    rank: int, ranks: dict[str, int], target_modules: list[str], modules_to_save: list[str], base_model: str | None
) -> dict[str, Any]:
    """An ``adapter_config.json`` for a plain LoRA with scaling 1 on every module (alpha = rank)."""
    odd = {re.escape(m): r for m, r in sorted(ranks.items()) if r != rank}
    return {
        "peft_type": "LORA",
        "task_type": "CAUSAL_LM",
        "base_model_name_or_path": base_model,
        "r": rank,
        "lora_alpha": rank,
        "rank_pattern": odd,
        "alpha_pattern": dict(odd),
        "target_modules": sorted(target_modules),
        "modules_to_save": sorted(modules_to_save) or None,
        "lora_dropout": 0.0,
        "bias": "none",
        "fan_in_fan_out": False,
        "use_rslora": False,
        "use_dora": False,
        "init_lora_weights": True,
        "inference_mode": True,
        "layers_to_transform": None,
        "layers_pattern": None,
        "revision": None,
    }


def write_adapter_config(folder: Path, config: dict[str, Any]) -> Path:
    path = folder / ADAPTER_CONFIG
    write_file(path, json.dumps(config, indent=2, sort_keys=True) + "\n")
    return path


# The product is always formed in these fixed blocks of rows: a BLAS may round a row differently
# depending on how many rows one call holds, so a fixed blocking keeps every value independent of
# how the engine chunks the tensor (and equal to verify's whole-tensor computation).
ROW_BLOCK = 256


@dataclass
class AdapterCheckpoint(Checkpoint):
    """The merge updates of an adapter's LoRA modules, by weight name, computed on demand."""

    factors: dict[str, tuple[np.ndarray, np.ndarray, float]] = field(default_factory=dict)  # weight -> B, A, s

    def delta_rows(self, name: str, first: int, last: int) -> np.ndarray:
        """Rows ``[first, last)`` of ``scaling · B @ A`` in float32, formed in fixed ROW_BLOCK blocks."""
        b, a, scaling = self.factors[name]
        start = first - first % ROW_BLOCK
        blocks = [b[i : i + ROW_BLOCK] @ a for i in range(start, last, ROW_BLOCK)]
        rows = np.concatenate(blocks)[first - start : last - start]
        if scaling != 1.0:
            rows *= np.float32(scaling)
        return rows

    def whole_tensor(self, name: str) -> np.ndarray:
        """The whole update of one module (for verify)."""
        return self.delta_rows(name, 0, self.factors[name][0].shape[0])

    def read_into(self, info: TensorInfo, start: int, count: int, out: np.ndarray) -> None:
        cols = info.shape[1]
        first, last = start // cols, -(-(start + count) // cols)
        flat = self.delta_rows(info.name, first, last).reshape(-1)
        offset = start - first * cols
        out[: count * 4] = flat[offset : offset + count].view(np.uint8)

    def prefetch(self, info: TensorInfo, start: int, count: int) -> None:
        return None  # computed, nothing to read ahead

    def close(self) -> None:
        return None


def open_adapter(ref: ModelRef) -> AdapterCheckpoint:
    """Read an adapter's config and factors (all in memory: adapters are small).

    Raises:
        InputError: not a plain LoRA adapter, an incomplete one, or one with whole modules.
    """
    from safetensors.numpy import load_file

    folder = ref.path
    if not is_adapter(folder):
        raise InputError(f"{folder} is not a PEFT adapter", file=folder)
    config = read_adapter_config(folder)
    if config.modules_to_save:
        raise InputError(
            f"{folder}: the adapter stores whole modules ({', '.join(config.modules_to_save)}), which "
            "replace the target's instead of adding to them; merge it with peft, or extract the "
            "adapter without --keep-whole",
            file=folder,
            option="--vector",
        )
    path = folder / ADAPTER_WEIGHTS
    weights = load_file(str(path))
    modules = lora_modules(sorted(weights), config, path)
    if not modules:
        raise InputError(f"{path}: no lora_A/lora_B weights found", file=path)
    factors, tensors = {}, {}
    for module in modules:
        b = weights[module.b_key].astype(np.float32)
        a = weights[module.a_key].astype(np.float32)
        factors[module.weight_name] = (b, a, module.scaling)
        tensors[module.weight_name] = TensorInfo(
            module.weight_name, "F32", (b.shape[0], a.shape[1]), path, 0, 4 * b.shape[0] * a.shape[1]
        )
    header = read_header(path)
    fingerprints = {
        path.name: {"bytes": path.stat().st_size, "header_sha256": hashlib.sha256(header.header_bytes).hexdigest()}
    }
    return AdapterCheckpoint(ref, "lora", dict(sorted(tensors.items())), {}, fingerprints, factors=factors)
