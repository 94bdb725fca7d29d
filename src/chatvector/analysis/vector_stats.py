"""Where a chat vector lives: per-layer norms, and cosine similarity between two deltas.

A *delta* is either a vector directory written by ``chatvector extract`` or a model minus its
base (e.g. the CP model's own language adaptation, ``cp − base``). Tensors are read one at a time
(through the safetensors library, with numpy) and reduced to a few float64 sums, so memory stays
at one tensor whatever the model size and torch is not needed.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass, field

import numpy as np

from chatvector.io.checkpoint import Checkpoint
from chatvector.io.hub import resolve_model
from chatvector.merge.lineage import Lineage, measure_checkpoints
from chatvector.verify.reference import load_tensor

_BLOCK = 1 << 20
_LAYER = re.compile(r"(?:layers|h|blocks|layer)\.(\d+)\.")
# Most specific first: "mlp.up_proj" is an up_proj, not an mlp.
_MODULES = (
    "q_proj",
    "k_proj",
    "v_proj",
    "o_proj",
    "gate_proj",
    "up_proj",
    "down_proj",
    "c_attn",
    "c_proj",
    "c_fc",
    "input_layernorm",
    "post_attention_layernorm",
    "ln_1",
    "ln_2",
)


def group_of(name: str) -> str:
    """``layer 7``, ``embeddings``, ``head`` or ``other`` for a tensor name."""
    found = _LAYER.search(name)
    if found:
        return f"layer {int(found.group(1)):03d}"
    if "embed" in name or "wte" in name or "wpe" in name:
        return "embeddings"
    if "lm_head" in name:
        return "head"
    return "other"


def module_of(name: str) -> str:
    """The kind of weight (``q_proj``, ``up_proj``, ``input_layernorm``, ...) a tensor is."""
    for module in _MODULES:
        if module in name:
            return module
    parts = name.split(".")
    return parts[-2] if len(parts) >= 2 else name


@dataclass
class Sums:
    """Running sums for norms and cosine: Σa², Σb², Σab."""

    aa: float = 0.0
    bb: float = 0.0
    ab: float = 0.0

    def add(self, a: np.ndarray, b: np.ndarray | None) -> None:
        flat_a = a.reshape(-1)
        flat_b = None if b is None else b.reshape(-1)
        for start in range(0, flat_a.size, _BLOCK):  # float64 sums of float32 blocks: exact enough, bounded memory
            block_a = flat_a[start : start + _BLOCK].astype(np.float64)
            self.aa += float(block_a @ block_a)
            if flat_b is not None:
                block_b = flat_b[start : start + _BLOCK].astype(np.float64)
                self.bb += float(block_b @ block_b)
                self.ab += float(block_a @ block_b)

    @property
    def norm_a(self) -> float:
        return math.sqrt(self.aa)

    @property
    def norm_b(self) -> float:
        return math.sqrt(self.bb)

    @property
    def cosine(self) -> float:
        denominator = self.norm_a * self.norm_b
        return self.ab / denominator if denominator else float("nan")


@dataclass
class DeltaStats:
    by_group: dict[str, Sums] = field(default_factory=dict)
    by_cell: dict[tuple[str, str], Sums] = field(default_factory=dict)  # (group, module)
    skipped: list[str] = field(default_factory=list)


class Delta:
    """Read one tensor of a delta at a time (vector dir, or model − base)."""

    def __init__(self, path: str, base: str | None = None) -> None:
        self.path = path
        self.model = Checkpoint.open(resolve_model(path, "vector" if base is None else "model"))
        self.base = Checkpoint.open(resolve_model(base, "base")) if base else None

    def names(self) -> list[str]:
        return sorted(self.model.tensors)

    def _load(self, checkpoint: Checkpoint, name: str) -> np.ndarray:
        return load_tensor(checkpoint, name).astype(np.float32)

    def tensor(self, name: str) -> np.ndarray | None:
        if self.base is None:
            return self._load(self.model, name)
        if name not in self.base.tensors or self.base.tensors[name].shape != self.model.tensors[name].shape:
            return None
        return self._load(self.model, name) - self._load(self.base, name)


def compare(first: Delta, second: Delta | None = None) -> DeltaStats:
    """Per-group and per-(group, module) sums of one delta, or of two deltas together."""
    stats = DeltaStats()
    for name in first.names():
        a = first.tensor(name)
        b = second.tensor(name) if second is not None and name in second.model.tensors else None
        if a is None or (second is not None and (b is None or b.shape != a.shape)):
            stats.skipped.append(name)
            continue
        group = group_of(name)
        stats.by_group.setdefault(group, Sums()).add(a, b)
        stats.by_cell.setdefault((group, module_of(name)), Sums()).add(a, b)
    return stats


def lineage(chat: Delta, target: Delta) -> Lineage | None:
    """The preflight's lineage figures for ``target`` (a model, with its base) against ``chat`` (a model
    minus the same base, or a vector); None when the target has no base to measure from."""
    if target.base is None:
        return None
    return measure_checkpoints(target.model, chat.model, target.base, chat_is_vector=chat.base is None)
