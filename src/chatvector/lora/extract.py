"""Write a chat vector as a PEFT LoRA adapter, and rescale an adapter for another ratio.

Every linear layer's delta (a 2-D ``….weight`` that is not an embedding) is read whole, factored
by a truncated SVD in float32 (:mod:`chatvector.lora.svd`) and written as ``lora_A``/``lora_B``
with scaling 1; the share of each delta's energy (Frobenius norm squared) the rank keeps is
reported per module and per layer. Tensors a LoRA cannot hold (norms, embeddings, biases) are
listed; with ``keep_whole`` their chat-model values are stored as PEFT ``modules_to_save``
(loading the adapter then *replaces* those modules of the target by the chat model's: not
``target + r·Δ``, which is why it is off by default). Memory: one delta at a time.
"""

from __future__ import annotations

import json
import logging
import os
import re
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from chatvector._version import __version__
from chatvector.dtypes import DTYPES
from chatvector.errors import InputError, PreflightError
from chatvector.io.checkpoint import Checkpoint, model_root
from chatvector.io.files import ModelDir, read_bytes, read_json
from chatvector.io.hub import resolve_model
from chatvector.io.output import (
    ShardedTensorWriter,
    StagedDirectory,
    check_output_path,
    check_written,
    write_file,
)
from chatvector.io.safetensors_header import TensorInfo
from chatvector.lora.svd import low_rank
from chatvector.merge.assets import copy_tokenizer_files
from chatvector.merge.lora import (
    ADAPTER_CONFIG,
    ADAPTER_WEIGHTS,
    PREFIX,
    adapter_config_json,
    is_adapter,
    module_of,
    write_adapter_config,
)
from chatvector.merge.plan import compare_configs
from chatvector.merge.vector import read_manifest

__all__ = ["LoraReport", "extract_lora", "scale_adapter", "lora_targets", "LORA_MANIFEST"]

log = logging.getLogger(__name__)

LORA_MANIFEST = "chatvector_lora.json"
_EMBEDDING = re.compile(r"embed|wte|wpe")
_LAYER = re.compile(r"(?:^|\.)(?:layers|h|blocks|layer)\.(\d+)\.")


@dataclass
class LoraReport:
    """What an extraction wrote: per module its rank and kept energy share; what a LoRA could not hold."""

    out: Path
    rank: int
    ratio: float
    modules: dict[str, dict[str, float]] = field(default_factory=dict)  # weight -> rank, kept, total
    not_held: list[str] = field(default_factory=list)
    kept_whole: list[str] = field(default_factory=list)
    bytes_written: int = 0
    seconds: float = 0.0

    def by_layer(self) -> dict[str, float]:
        """The energy share kept per layer (``layer 3``, ``other``), weighted by each delta's energy."""
        sums: dict[str, list[float]] = {}
        for name, entry in self.modules.items():
            found = _LAYER.search(name)
            group = f"layer {int(found.group(1))}" if found else "other"
            pair = sums.setdefault(group, [0.0, 0.0])
            pair[0], pair[1] = pair[0] + entry["kept"], pair[1] + entry["total"]
        order = sorted(sums, key=lambda g: (g == "other", int(g.split()[1]) if g != "other" else 0))
        return {g: sums[g][0] / sums[g][1] if sums[g][1] else 1.0 for g in order}

    @property
    def share(self) -> float:
        total = sum(e["total"] for e in self.modules.values())
        return sum(e["kept"] for e in self.modules.values()) / total if total else 1.0

    def summary(self) -> str:
        lines = [
            f"Wrote a rank-{self.rank} LoRA adapter to {self.out}: {len(self.modules)} modules, "
            f"{self.bytes_written / 1e6:.1f} MB, in {self.seconds:.1f} s; it keeps {self.share:.1%} of the "
            "linear layers' delta energy (‖·‖²)"
        ]
        lines += [f"  {group}: {share:.1%}" for group, share in self.by_layer().items()]
        if self.not_held:
            verb = "kept whole (modules_to_save)" if self.kept_whole else "not in the adapter"
            lines.append(f"{len(self.not_held)} tensor(s) a LoRA cannot hold, {verb}: {_short(self.not_held)}")
        return "\n".join(lines)

    def to_json(self) -> dict[str, object]:
        return {
            "format": "chatvector-lora",
            "chatvector_version": __version__,
            "rank": self.rank,
            "ratio": self.ratio,
            "energy_share": self.share,
            "by_layer": self.by_layer(),
            "modules": self.modules,
            "not_held": self.not_held,
            "kept_whole": self.kept_whole,
        }


def _short(names: list[str], shown: int = 4) -> str:
    return ", ".join(names[:shown]) + (f" and {len(names) - shown} more" if len(names) > shown else "")


def lora_targets(tensors: dict[str, TensorInfo]) -> tuple[list[str], list[str]]:
    """(weights a LoRA holds: 2-D linear weights; everything else: norms, embeddings, biases)."""
    held = [
        n
        for n, i in tensors.items()
        if i.is_float and len(i.shape) == 2 and n.endswith(".weight") and not _EMBEDDING.search(n)
    ]
    return held, [n for n in tensors if n not in set(held)]


class _DeltaSource:
    """Whole float32 deltas, one at a time: from a vector directory or from (chat − base)."""

    def __init__(self, vector: str | None, base: str | None, chat: str | None) -> None:
        if (vector is None) == (chat is None and base is None) or (vector is None and (base is None or chat is None)):
            raise InputError("give a VECTOR directory, or --base and --chat (not both)", option="--base")
        self.base: Checkpoint | None = None
        if vector is not None:
            ref = resolve_model(vector, "vector")
            if read_manifest(ref.path, model_root(ref)) is None:
                raise InputError(
                    f"{vector} is not a chat-vector directory (no chatvector.json); make one with "
                    "`chatvector extract`, or give --base and --chat",
                    file=ref.path,
                )
            self.model = Checkpoint.open(ref)
        else:
            assert chat is not None and base is not None  # checked above, with the fix in the message
            self.model = Checkpoint.open(resolve_model(chat, "chat"))
            self.base = Checkpoint.open(resolve_model(base, "base"))
            self._check_pair()
        self.buffer = np.empty(0, dtype=np.uint8)

    def _check_pair(self) -> None:
        assert self.base is not None
        problems = compare_configs("base", self.base.config or {}, "chat", self.model.config or {})
        for name, info in self.model.tensors.items():
            other = self.base.tensors.get(name)
            if other is None or other.shape != info.shape:
                problems.append(
                    f"tensor {name} has shape {info.shape} in the chat model but "
                    f"{other.shape if other else 'is missing'} in the base"
                )
        if problems:
            raise PreflightError(problems)

    @property
    def directory(self) -> Path:
        return self.model.ref.path

    def _read(self, checkpoint: Checkpoint, name: str) -> np.ndarray:
        info = checkpoint.tensors[name]
        if self.buffer.size < info.nbytes:
            self.buffer = np.empty(info.nbytes, dtype=np.uint8)
        checkpoint.read_into(info, 0, info.numel, self.buffer)
        values = self.buffer[: info.nbytes].view(DTYPES[info.dtype].numpy).astype(np.float32)
        return values.reshape(info.shape)

    def delta(self, name: str) -> np.ndarray:
        value = self._read(self.model, name)
        if self.base is not None:
            value -= self._read(self.base, name)
        return value

    def whole(self, name: str) -> np.ndarray:
        """The chat model's own values (for modules_to_save)."""
        info = self.model.tensors[name]
        return self._read(self.model, name).astype(DTYPES[info.dtype].numpy)

    def close(self) -> None:
        self.model.close()
        if self.base is not None:
            self.base.close()


def extract_lora(
    out: str | os.PathLike[str],
    rank: int,
    *,
    vector: str | None = None,
    base: str | None = None,
    chat: str | None = None,
    ratio: float = 1.0,
    keep_whole: bool = False,
    force: bool = False,
) -> LoraReport:
    """Write the chat vector (a VECTOR directory, or CHAT − BASE) as a rank-``rank`` PEFT adapter.

    Example:
        >>> extract_lora("cv-lora64", 64, vector="llama2-cv")  # doctest: +SKIP
    """
    if rank < 1:
        raise InputError(f"--rank {rank}: the rank is a positive integer", option="--rank")
    out_path = Path(out)
    check_output_path(out_path, [], force)
    source = _DeltaSource(vector, base, chat)
    try:
        if keep_whole and source.base is None:
            raise InputError(
                "--keep-whole stores the chat model's own values: give --base and --chat, not a vector",
                option="--keep-whole",
            )
        return _write(source, out_path, rank, ratio, keep_whole, force)
    finally:
        source.close()


def _check_layout(config: dict) -> None:
    if config.get("model_type") == "gpt2":
        raise InputError(
            "GPT-2 stores its linear layers transposed (Conv1D); chatvector writes adapters for "
            "nn.Linear models (Llama, Mistral, Qwen, Gemma, ...) only",
            option="--rank",
        )


Entry = tuple[str, str, tuple[int, ...]]  # (name, safetensors dtype, shape) of an output tensor


def _entries(source: _DeltaSource, held: list[str], whole: list[str], rank: int) -> list[Entry]:
    entries: list[Entry] = []
    for name in held:
        rows, cols = source.model.tensors[name].shape
        k = min(rank, rows, cols)
        entries += [
            (f"{PREFIX}{module_of(name)}.lora_A.weight", "F32", (k, cols)),
            (f"{PREFIX}{module_of(name)}.lora_B.weight", "F32", (rows, k)),
        ]
    entries += [
        (f"{PREFIX}{name}", source.model.tensors[name].dtype, source.model.tensors[name].shape) for name in whole
    ]
    return entries


def _write(source: _DeltaSource, out: Path, rank: int, ratio: float, keep_whole: bool, force: bool) -> LoraReport:
    started = time.perf_counter()
    config = source.model.config or {}
    _check_layout(config)
    held, not_held = lora_targets(source.model.tensors)
    if not held:
        raise InputError(f"{source.directory} has no linear-layer weights a LoRA could hold", file=source.directory)
    whole = [n for n in not_held if source.model.tensors[n].is_float] if keep_whole else []
    report = LoraReport(out, rank, ratio, not_held=not_held, kept_whole=whole)
    entries = _entries(source, held, whole, rank)
    with StagedDirectory(out) as staging:
        writer = ShardedTensorWriter(
            staging.path, entries, "adapter_model", 2**62, {"format": "pt", "chatvector_version": __version__}
        )
        try:
            for name, values in _factors(source, held, rank, ratio, report):
                writer.write(name, 0, _bytes(values))
            for name in whole:
                writer.write(f"{PREFIX}{name}", 0, _bytes(source.whole(name)))
            writer.finish()
        finally:
            writer.close()
        ranks = {module_of(n): int(report.modules[n]["rank"]) for n in held}
        modules_to_save = [module_of(n) if n.endswith(".weight") else n for n in whole]
        write_adapter_config(
            staging.path,
            adapter_config_json(max(ranks.values()), ranks, sorted(ranks), modules_to_save, source.model.ref.spec),
        )
        copy_tokenizer_files(ModelDir(source.directory, model_root(source.model.ref)), staging.path)  # for apply
        report.bytes_written = (staging.path / ADAPTER_WEIGHTS).stat().st_size
        report.seconds = time.perf_counter() - started
        write_file(staging.path / LORA_MANIFEST, json.dumps(report.to_json(), indent=2) + "\n")
        check_written(staging.path, entries)
        staging.commit(force)
    log.info("wrote %s", out)
    return report


def _bytes(values: np.ndarray) -> memoryview:
    return np.ascontiguousarray(values).view(np.uint8).reshape(-1).data


def _factors(
    source: _DeltaSource, held: list[str], rank: int, ratio: float, report: LoraReport
) -> Iterator[tuple[str, np.ndarray]]:
    """(key, values) of every lora_A and lora_B, with the ratio folded into B."""
    for number, name in enumerate(held, start=1):
        factors = low_rank(source.delta(name), rank, name)
        k = factors.a.shape[0]
        report.modules[name] = {"rank": k, "kept": factors.kept, "total": factors.total, "share": factors.share}
        log.debug("%d/%d %s: rank %d keeps %.1f%%", number, len(held), name, k, 100 * factors.share)
        b = factors.b if ratio == 1.0 else (factors.b * np.float32(ratio)).astype(np.float32)
        yield f"{PREFIX}{module_of(name)}.lora_A.weight", factors.a
        yield f"{PREFIX}{module_of(name)}.lora_B.weight", b


def scale_adapter(
    adapter: str | os.PathLike[str], ratio: float, out: str | os.PathLike[str], *, force: bool = False
) -> Path:
    """A copy of a LoRA adapter whose every ``lora_B`` is multiplied by ``ratio`` (so merging it adds
    ``ratio`` times the update); whole modules (``modules_to_save``) cannot be scaled and are refused."""
    from safetensors.numpy import load_file, save_file

    source, out_path = Path(adapter), Path(out)
    if not is_adapter(source):
        raise InputError(f"{source} is not a PEFT adapter (no {ADAPTER_CONFIG} and {ADAPTER_WEIGHTS})", file=source)
    check_output_path(out_path, [source], force)
    config = read_json(source / ADAPTER_CONFIG, ADAPTER_CONFIG, root=source.resolve())
    if config.get("modules_to_save"):
        raise InputError(
            f"{source} holds whole modules (modules_to_save), which replace the target's and "
            "cannot be scaled by a ratio; extract it without --keep-whole",
            file=source,
        )
    weights = load_file(str(source / ADAPTER_WEIGHTS))
    scaled = {
        k: (v.astype(np.float32) * np.float32(ratio)).astype(v.dtype) if ".lora_B." in k else v
        for k, v in weights.items()
    }
    with StagedDirectory(out_path) as staging:
        save_file(scaled, str(staging.path / ADAPTER_WEIGHTS), metadata={"format": "pt"})
        for path in sorted(source.iterdir()):
            if path.is_file() and path.name != ADAPTER_WEIGHTS:  # config, tokenizer, manifest
                write_file(staging.path / path.name, read_bytes(path, path.name, root=source.resolve()))
        _record_scale(staging.path, ratio)
        staging.commit(force)
    return out_path


def _record_scale(folder: Path, ratio: float) -> None:
    manifest = folder / LORA_MANIFEST
    data: dict[str, Any] = read_json(manifest, LORA_MANIFEST) if manifest.exists() else {"format": "chatvector-lora"}
    data["ratio"] = data.get("ratio", 1.0) * ratio
    write_file(manifest, json.dumps(data, indent=2) + "\n")
