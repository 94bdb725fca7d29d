"""PEFT LoRA adapters on disk: reading them as strictly as models, writing them, and an adapter read
as a checkpoint of merge updates (``apply --vector ADAPTER:r``).

A LoRA module ``M`` (an ``nn.Linear`` whose weight is ``M.weight``, shape out × in) stores
``base_model.model.M.lora_A.weight`` (r × in) and ``base_model.model.M.lora_B.weight`` (out × r);
PEFT adds ``scaling · B @ A`` to ``M.weight`` when it merges, with ``scaling = lora_alpha / r``
(``/ √r`` with rsLoRA), per module through ``rank_pattern`` and ``alpha_pattern``. chatvector
writes ``lora_alpha = r`` for every module, so the scaling is 1 and a ratio lives in ``B``.
Whole modules (``modules_to_save``) are stored as ``base_model.model.M.<param>`` and replace the
model's when loaded.

Every file of an adapter is read by the rule models are read by (:mod:`chatvector.io.files`: a
regular file inside the adapter once links are followed): ``adapter_config.json`` through the
typed schema :class:`~chatvector.io.schemas.AdapterConfigFile`, ``adapter_model.safetensors``
through the validating header parser, so a truncated file, a link elsewhere, a wrongly typed
field or factors whose shapes do not pair up are errors naming the file and the key.

Read as a vector term, the adapter behaves like a vector directory whose tensor ``M.weight`` is
PEFT's merge update ``scaling · B @ A`` (float32, as PEFT computes it on a CPU), computed in fixed
blocks of rows when the engine reads a range of it. Merging therefore gives
``target + r · scaling · B @ A``, PEFT's ``merge_and_unload`` of the adapter with its scaling
multiplied by r, up to the float32 rounding of the matrix product.
"""

from __future__ import annotations

import hashlib
import json
import re
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from chatvector import interrupts
from chatvector.dtypes import DTYPES
from chatvector.errors import CheckpointError, InputError
from chatvector.io.checkpoint import Checkpoint, model_root
from chatvector.io.files import checked_regular_file, present, read_json, validate
from chatvector.io.hub import ModelRef
from chatvector.io.output import ShardedTensorWriter, StagedDirectory, check_written, write_file
from chatvector.io.safetensors_header import SafetensorsHeader, TensorInfo, read_header
from chatvector.io.schemas import AdapterConfigFile

__all__ = [
    "ADAPTER_CONFIG",
    "ADAPTER_WEIGHTS",
    "PREFIX",
    "ROW_BLOCK",
    "LoraModule",
    "AdapterConfig",
    "Adapter",
    "AdapterCheckpoint",
    "is_adapter",
    "read_adapter_config",
    "read_adapter",
    "adapter_config_json",
    "adapter_config_text",
    "AdapterOutput",
    "write_adapter",
    "module_of",
    "open_adapter",
]

ADAPTER_CONFIG = "adapter_config.json"
ADAPTER_WEIGHTS = "adapter_model.safetensors"
PREFIX = "base_model.model."
_KEY = re.compile(r"^base_model\.model\.(.+)\.lora_([AB])(?:\.default)?\.weight$")


def is_adapter(folder: Path) -> bool:
    """Whether ``folder`` holds a PEFT adapter (its files are checked when read, not here: a linked
    one must be refused as an adapter's file, not mistaken for something else)."""
    return present(folder / ADAPTER_CONFIG) and present(folder / ADAPTER_WEIGHTS)


def module_of(weight_name: str) -> str:
    """``model.layers.0.self_attn.q_proj.weight`` → ``model.layers.0.self_attn.q_proj``."""
    return weight_name.removesuffix(".weight")


@dataclass(frozen=True)
class LoraModule:
    """One module of an adapter: its factors in the file and its scaling."""

    module: str
    a: TensorInfo
    b: TensorInfo
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

    @staticmethod
    def _pattern(patterns: dict[str, Any], module: str) -> Any:
        for key, value in patterns.items():  # PEFT's rule: the key matches a dotted suffix of the module name
            if re.match(rf"(.*\.)?({key})$", module):
                return value
        return None

    def rank(self, module: str) -> int:
        """The rank PEFT gives ``module`` (its ``rank_pattern`` entry, else ``r``)."""
        return self._pattern(self.rank_pattern, module) or self.r

    def scaling(self, module: str) -> float:
        alpha = self._pattern(self.alpha_pattern, module) or self.alpha
        rank = self.rank(module)
        return alpha / rank**0.5 if self.use_rslora else alpha / rank


def read_adapter_config(folder: Path, root: Path | None = None) -> AdapterConfig:
    """Read and check an adapter's config: plain LoRA only (no DoRA, no other PEFT method).

    Raises:
        InputError: naming the file and the key chatvector cannot read or apply.
        CheckpointError: the file is not a regular file inside the adapter.
    """
    path = folder / ADAPTER_CONFIG
    data = read_json(path, ADAPTER_CONFIG, root=root or folder.resolve(), error=InputError)
    checked = validate(data, AdapterConfigFile, path, ADAPTER_CONFIG)
    assert isinstance(checked, AdapterConfigFile)
    if checked.peft_type not in (None, "LORA"):
        raise InputError(
            f"{path}: key 'peft_type' is {checked.peft_type!r}; only LORA adapters can be applied",
            file=path,
            option="peft_type",
        )
    for key in ("use_dora", "fan_in_fan_out", "lora_bias"):
        if getattr(checked, key):
            raise InputError(
                f"{path}: key {key!r} is set; chatvector applies plain LoRA only (merge this adapter with peft)",
                file=path,
                option=key,
            )
    return AdapterConfig(
        r=checked.r,
        alpha=float(checked.r if checked.lora_alpha is None else checked.lora_alpha),
        rank_pattern=dict(checked.rank_pattern or {}),
        alpha_pattern=dict(checked.alpha_pattern or {}),
        use_rslora=bool(checked.use_rslora),
        modules_to_save=tuple(checked.modules_to_save or ()),
        raw=data,
    )


def _pair_up(tensors: dict[str, TensorInfo], config: AdapterConfig, path: Path) -> list[LoraModule]:
    """Every module's lora_A and lora_B, checked: float, 2-D, inner sizes equal to the module's rank.

    Keys that are neither (whole modules are allowed only where ``modules_to_save`` names them) are
    refused: what chatvector cannot apply must not be dropped without a word.
    """
    found: dict[str, dict[str, TensorInfo]] = {}
    for key, info in tensors.items():
        match = _KEY.match(key)
        if match:
            found.setdefault(match.group(1), {})[match.group(2)] = info
        elif not any(key.startswith(f"{PREFIX}{m}.") for m in config.modules_to_save):
            raise CheckpointError(
                f"{path}: tensor {key!r} is not a lora_A/lora_B weight nor part of a module in modules_to_save; "
                "chatvector reads plain LoRA adapters only",
                file=path,
                tensor=key,
            )
    modules = []
    for module, pair in sorted(found.items()):
        if len(pair) != 2:
            missing = "B" if "A" in pair else "A"
            raise CheckpointError(
                f"{path}: LoRA module {module} has no lora_{missing} weight; the adapter is incomplete",
                file=path,
                tensor=module,
            )
        a, b = pair["A"], pair["B"]
        _check_factors(path, module, a, b, config.rank(module))
        modules.append(LoraModule(module, a, b, config.scaling(module)))
    return modules


def _check_factors(path: Path, module: str, a: TensorInfo, b: TensorInfo, rank: int) -> None:
    for info in (a, b):
        if not info.is_float or len(info.shape) != 2:
            raise CheckpointError(
                f"{path}: tensor {info.name!r} is {info.dtype} of shape {info.shape}; a LoRA factor is a "
                "2-D float matrix",
                file=path,
                tensor=info.name,
            )
    if a.shape[0] != rank or b.shape[1] != rank:
        raise CheckpointError(
            f"{path}: LoRA module {module}: lora_A is {a.shape} and lora_B is {b.shape}, but lora_A must be "
            f"(rank, in) and lora_B (out, rank) with the rank {rank} that {ADAPTER_CONFIG} gives this module",
            file=path,
            tensor=a.name,
        )


@dataclass
class Adapter:
    """An adapter read and checked: its config, its LoRA modules and all of its weights' tensors."""

    folder: Path
    config: AdapterConfig
    modules: list[LoraModule]
    weights: Checkpoint  # every tensor of adapter_model.safetensors, read range by range
    header: SafetensorsHeader

    def tensor(self, info: TensorInfo) -> np.ndarray:
        """One tensor of the weights file, whole, in its own dtype."""
        raw = np.empty(info.nbytes, dtype=np.uint8)
        self.weights.read_into(info, 0, info.numel, raw)
        return raw.view(DTYPES[info.dtype].numpy).reshape(info.shape)

    def close(self) -> None:
        self.weights.close()


def read_adapter(ref: ModelRef) -> Adapter:
    """Read an adapter directory by the rule models are read by (see the module's docstring).

    Raises:
        InputError: not an adapter, or a config chatvector cannot apply (naming file and key).
        CheckpointError: a file that is a link elsewhere or not a regular file, a truncated or
            corrupt weights file, factors that do not pair up (naming file and tensor).
    """
    folder, root = ref.path, model_root(ref)
    if not is_adapter(folder):
        raise InputError(
            f"{folder} is not a PEFT adapter (it needs {ADAPTER_CONFIG} and {ADAPTER_WEIGHTS})", file=folder
        )
    config = read_adapter_config(folder, root)
    path = folder / ADAPTER_WEIGHTS
    checked_regular_file(path, ADAPTER_WEIGHTS, root=root)
    header = read_header(path)
    modules = _pair_up(header.tensors, config, path)
    if not modules:
        raise CheckpointError(f"{path}: no lora_A/lora_B weights found", file=path)
    fingerprints: dict[str, dict[str, object]] = {
        path.name: {"bytes": path.stat().st_size, "header_sha256": hashlib.sha256(header.header_bytes).hexdigest()}
    }
    weights = Checkpoint(ref, "safetensors", dict(header.tensors), header.metadata, fingerprints)
    return Adapter(folder, config, modules, weights, header)


def adapter_config_json(
    rank: int, ranks: dict[str, int], target_modules: list[str], modules_to_save: list[str], base_model: str | None
) -> dict[str, Any]:
    """An ``adapter_config.json`` for a plain LoRA with scaling 1 on every module (alpha = rank).

    ``base_model`` is the model the adapter is meant for (``base_model_name_or_path``, which PEFT's
    ``AutoPeftModel`` loads the adapter onto): a hub id or an absolute directory.
    """
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


def adapter_config_text(config: dict[str, Any]) -> str:
    """``adapter_config.json``'s text, as chatvector writes it."""
    return json.dumps(config, indent=2, sort_keys=True) + "\n"


Entry = tuple[str, str, tuple[int, ...]]  # (name, safetensors dtype, shape) of a tensor to write


class AdapterOutput:
    """The adapter being written: its weights file laid out in advance, its small files added."""

    def __init__(self, path: Path, writer: ShardedTensorWriter) -> None:
        self.path = path  # the staging directory: files put here are published with the adapter
        self._writer = writer
        self.finished = False

    def write(self, name: str, values: np.ndarray) -> None:
        """Write one whole tensor (its dtype and shape as its entry says)."""
        self._writer.write(name, 0, np.ascontiguousarray(values).view(np.uint8).reshape(-1).data)

    def finish_weights(self) -> int:
        """Flush the weights file once every tensor is written; its size in bytes."""
        if not self.finished:
            self._writer.finish()
            self.finished = True
        return (self.path / ADAPTER_WEIGHTS).stat().st_size

    def add_file(self, name: str, data: bytes | str) -> None:
        write_file(self.path / name, data)


@contextmanager
def write_adapter(out: Path, entries: list[Entry], metadata: dict[str, str], *, force: bool) -> Iterator[AdapterOutput]:
    """Write an adapter directory atomically: a locked staging directory beside ``out`` receives the
    weights and small files; when the block ends without error the weights are re-read against
    ``entries`` and only then is the directory renamed to ``out``. On any error, nothing is left.

    Example:
        >>> with write_adapter(out, entries, {"format": "pt"}, force=False) as adapter:  # doctest: +SKIP
        ...     adapter.write(name, values)
        ...     adapter.add_file(ADAPTER_CONFIG, text)
    """
    with StagedDirectory(out) as staging:
        writer = ShardedTensorWriter(staging.path, entries, "adapter_model", 2**62, metadata)
        try:
            output = AdapterOutput(staging.path, writer)
            yield output
            output.finish_weights()
        finally:
            writer.close()
        check_written(staging.path, entries)
        interrupts.check()  # a stop whose exception got lost must not publish the adapter
        staging.commit(force)


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
    """An adapter as a checkpoint of merge updates (its factors are read into memory: adapters are small).

    Raises:
        InputError: not a plain LoRA adapter, or one with whole modules (they replace, not add).
        CheckpointError: see :func:`read_adapter`.
    """
    adapter = read_adapter(ref)
    if adapter.config.modules_to_save:
        adapter.close()
        raise InputError(
            f"{ref.path}: the adapter stores whole modules ({', '.join(adapter.config.modules_to_save)}), which "
            "replace the target's instead of adding to them; merge it with peft, or extract the "
            "adapter without --keep-whole",
            file=ref.path,
            option="--vector",
        )
    try:
        factors, tensors = {}, {}
        for module in adapter.modules:
            b = adapter.tensor(module.b).astype(np.float32)
            a = adapter.tensor(module.a).astype(np.float32)
            factors[module.weight_name] = (b, a, module.scaling)
            rows, cols = b.shape[0], a.shape[1]
            path = adapter.header.path
            tensors[module.weight_name] = TensorInfo(module.weight_name, "F32", (rows, cols), path, 0, 4 * rows * cols)
    finally:
        adapter.close()
    return AdapterCheckpoint(
        ref, "lora", dict(sorted(tensors.items())), {}, adapter.weights.fingerprints, factors=factors
    )
