"""Write a chat vector as a PEFT LoRA adapter.

Every linear layer's delta (a 2-D ``….weight`` that is not an embedding) is computed whole as the
merge's preflight plans it (:func:`chatvector.merge.plan.build_plan`, through
:func:`chatvector.merge.inputs.open_inputs`), factored by a truncated SVD in float32
(:mod:`chatvector.lora.svd`) and written as ``lora_A``/``lora_B`` with scaling 1; the share of each
delta's energy (Frobenius norm squared) the rank keeps is reported per module and per layer.
Tensors a LoRA cannot hold (norms, embeddings, biases) are listed; with ``keep_whole`` their
chat-model values are stored as PEFT ``modules_to_save`` (loading the adapter then *replaces*
those modules of the target by the chat model's: not ``target + r·Δ``, which is why it is off by
default). Memory: one delta at a time. The adapter format itself is :mod:`chatvector.io.adapter`.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import os
import re
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from chatvector._version import __version__
from chatvector.errors import InputError, NonFiniteError
from chatvector.io.adapter import (
    ADAPTER_CONFIG,
    PREFIX,
    Entry,
    adapter_config_json,
    adapter_config_text,
    module_of,
    read_adapter_config,
    write_adapter,
)
from chatvector.io.checkpoint import model_root
from chatvector.io.files import ModelDir
from chatvector.io.output import check_output_path
from chatvector.lora.manifest import LORA_MANIFEST
from chatvector.lora.options import lora_options
from chatvector.lora.scale import scaled
from chatvector.lora.svd import low_rank
from chatvector.merge.assets import copy_tokenizer_files
from chatvector.merge.inputs import open_inputs, precheck_remote
from chatvector.merge.recipe import PairTerm, Recipe, VectorTerm
from chatvector.merge.vector import read_manifest
from chatvector.options import MergeOptions
from chatvector.verify.reference import load_tensor, reference_tensor

if TYPE_CHECKING:
    from chatvector.io.hub import ModelRef
    from chatvector.io.safetensors_header import TensorInfo
    from chatvector.lora.options import LoraOptions
    from chatvector.merge.inputs import Inputs
    from chatvector.merge.plan import Plan, TensorWork

__all__ = ["LoraReport", "extract_lora", "lora_targets", "meant_for", "LORA_MANIFEST"]

log = logging.getLogger(__name__)

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
    base_model: str | None = None  # the model the adapter is meant for (base_model_name_or_path)
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
            "linear layers' delta energy (‖·‖²)",
            f"  meant for {self.base_model or 'an unrecorded base model'} (base_model_name_or_path)",
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
            "base_model": self.base_model,
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
    held = [n for n, i in tensors.items() if _holdable(n, i)]
    return held, [n for n in tensors if n not in set(held)]


def _holdable(name: str, info: TensorInfo) -> bool:
    return info.is_float and len(info.shape) == 2 and name.endswith(".weight") and not _EMBEDDING.search(name)


def extract_lora(
    out: str | os.PathLike[str],
    rank: int,
    *,
    vector: str | None = None,
    base: str | None = None,
    chat: str | None = None,
    target: str | None = None,
    ratio: float = 1.0,
    keep_whole: bool = False,
    force: bool = False,
    merge_options: MergeOptions | None = None,
) -> LoraReport:
    """Write the chat vector (a VECTOR directory, or CHAT − BASE) as a rank-``rank`` PEFT adapter.

    The tensors are paired, checked and given their policies by the merge's own preflight
    (:func:`chatvector.merge.plan.build_plan`): name mapping, vocabulary alignment of the output
    head, and for hub ids the checks before any weights download. With ``target`` the plan is made
    in the target's frame (its tensor names, shapes and vocabulary), so the adapter fits the model it
    is meant for. ``base_model_name_or_path`` names that model: ``target``, else the vector's base.
    ``merge_options`` (its ``embeddings`` and ``exclude``) decide, as for a merge, how output-head
    rows line up and which tensors stay out of the adapter.

    Example:
        >>> extract_lora("cv-lora64", 64, vector="llama2-cv")  # doctest: +SKIP
    """
    options = lora_options(rank=rank, ratio=ratio, target=target, keep_whole=keep_whole)
    recipe = _recipe(vector, base, chat, target, merge_options or MergeOptions())
    if keep_whole and vector is not None:
        raise InputError(
            "--keep-whole stores the chat model's own values: give --base and --chat, not a vector",
            option="--keep-whole",
        )
    out_path = Path(out)
    check_output_path(out_path, [], force)  # before any download
    precheck_remote(recipe)
    with open_inputs(recipe) as inputs:
        check_output_path(out_path, inputs.directories, force)
        _check_layout(inputs.frame.checkpoint.config or {})
        plan = inputs.plan()
        return _write(inputs, plan, out_path, options, force)


def _recipe(
    vector: str | None, base: str | None, chat: str | None, target: str | None, options: MergeOptions
) -> Recipe:
    """The extraction as a recipe: one term (the vector, or chat − base), and the target if given."""
    if (vector is None) == (chat is None and base is None) or (vector is None and (base is None or chat is None)):
        raise InputError("give a VECTOR directory, or --base and --chat (not both)", option="--base")
    term: VectorTerm | PairTerm
    if vector is not None:
        term = VectorTerm(vector=vector, ratio=1.0)
    else:
        assert base is not None and chat is not None  # checked above, with the fix in the message
        term = PairTerm(base=base, chat=chat, ratio=1.0)
    if target is None:
        return Recipe(kind="extract", terms=(term,), options=options)
    return Recipe(kind="merge", target=target, terms=(term,), options=options)


def _check_layout(config: dict) -> None:
    if config.get("model_type") == "gpt2":
        raise InputError(
            "GPT-2 stores its linear layers transposed (Conv1D); chatvector writes adapters for "
            "nn.Linear models (Llama, Mistral, Qwen, Gemma, ...) only",
            option="--rank",
        )


def _name_of(ref: ModelRef) -> str:
    """How PEFT should find a model: its hub id, or its absolute directory."""
    return ref.hub_id or str(ref.path.resolve())


def meant_for(inputs: Inputs) -> str | None:
    """The model the adapter is meant for: the target when given, else the base the vector was
    extracted from (recorded in its manifest), else the base model of the pair."""
    if inputs.target is not None:
        return _name_of(inputs.target)
    term = inputs.terms[0]
    if term.minus is not None:
        return _name_of(term.minus.checkpoint.ref)
    ref = term.plus.checkpoint.ref
    if term.plus.checkpoint.format == "lora":  # an adapter re-factored: the model it was meant for
        return read_adapter_config(ref.path, model_root(ref)).raw.get("base_model_name_or_path")
    manifest = read_manifest(ref.path, model_root(ref))
    recorded = (manifest.base if manifest else None) or {}
    found = recorded.get("hub_id") or recorded.get("path") or recorded.get("ref")
    return found if isinstance(found, str) else None


def _entries(held: list[TensorWork], whole: list[TensorWork], rank: int) -> list[Entry]:
    entries: list[Entry] = []
    for work in held:
        rows, cols = work.shape
        k = min(rank, rows, cols)
        entries += [
            (f"{PREFIX}{module_of(work.name)}.lora_A.weight", "F32", (k, cols)),
            (f"{PREFIX}{module_of(work.name)}.lora_B.weight", "F32", (rows, k)),
        ]
    return entries + [(f"{PREFIX}{w.name}", _chat_tensor(w).dtype, w.shape) for w in whole]


def _chat_tensor(work: TensorWork) -> TensorInfo:
    """The chat model's own tensor of a kept-whole module (the first term's plus side)."""
    return work.terms[0].plus


def _split(inputs: Inputs, plan: Plan, keep_whole: bool) -> tuple[list[TensorWork], list[str], list[TensorWork]]:
    """(tensors the adapter holds as LoRA factors, names it cannot hold, those kept whole)."""
    held = [w for w in plan.tensors if w.terms and _holdable(w.name, _frame_info(inputs, w))]
    names = {w.name for w in held}
    not_held = [w.name for w in plan.tensors if w.name not in names]
    whole = []
    if keep_whole:
        candidates = [w for w in plan.tensors if w.name not in names and w.terms and w.terms[0].plus.is_float]
        for work in candidates:
            if _chat_tensor(work).shape != work.shape:
                raise InputError(
                    f"--keep-whole: tensor {work.name} has shape {_chat_tensor(work).shape} in the chat model but "
                    f"{work.shape} in the target; a whole module must fit the target (drop --keep-whole)",
                    option="--keep-whole",
                    tensor=work.name,
                )
            whole.append(work)
    return held, not_held, whole


def _frame_info(inputs: Inputs, work: TensorWork) -> TensorInfo:
    return inputs.frame.checkpoint.tensors[work.name]


def _write(inputs: Inputs, plan: Plan, out: Path, options: LoraOptions, force: bool) -> LoraReport:
    started = time.perf_counter()
    assert options.rank is not None  # lora_options was given one
    frame = inputs.frame.checkpoint
    held, not_held, whole = _split(inputs, plan, options.keep_whole)
    if not held:
        raise InputError(f"{frame.ref.path} has no linear-layer weights a LoRA could hold", file=frame.ref.path)
    ratio = 1.0 if options.ratio is None else options.ratio
    base_model = meant_for(inputs)
    report = LoraReport(out, options.rank, ratio, not_held=not_held, kept_whole=[w.name for w in whole])
    report.base_model = base_model
    entries = _entries(held, whole, options.rank)
    metadata = {"format": "pt", "chatvector_version": __version__}
    with write_adapter(out, entries, metadata, force=force) as adapter:
        # the small files first: one refused by the reading rule stops the run before any SVD
        copy_tokenizer_files(ModelDir(frame.ref.path, model_root(frame.ref)), adapter.path)  # for apply
        for name, values in _factors(plan, held, options.rank, ratio, report):
            adapter.write(name, values)
        for work in whole:
            adapter.write(
                f"{PREFIX}{work.name}",
                load_tensor(plan.checkpoints[work.terms[0].plus_source], work.terms[0].plus.name),
            )
        report.bytes_written = adapter.finish_weights()
        ranks = {module_of(w.name): int(report.modules[w.name]["rank"]) for w in held}
        modules_to_save = [module_of(w.name) if w.name.endswith(".weight") else w.name for w in whole]
        config = adapter_config_json(max(ranks.values()), ranks, sorted(ranks), modules_to_save, base_model)
        adapter.add_file(ADAPTER_CONFIG, adapter_config_text(config))
        report.seconds = time.perf_counter() - started
        adapter.add_file(LORA_MANIFEST, json.dumps(report.to_json(), indent=2) + "\n")
    log.info("wrote %s", out)
    return report


def _delta(plan: Plan, work: TensorWork) -> np.ndarray:
    """The tensor's whole float32 delta as the plan makes it (rows aligned by token where the
    vocabularies differ), without the target's values: the adapter adds it to them."""
    delta = reference_tensor(dataclasses.replace(work, target=None, target_source=None), plan.checkpoints)
    if not np.isfinite(delta).all():
        raise NonFiniteError(
            f"tensor {work.name}: the delta holds NaN or Inf; fix the input model, or leave the tensor out",
            tensor=work.name,
        )
    return delta


def _factors(
    plan: Plan, held: list[TensorWork], rank: int, ratio: float, report: LoraReport
) -> Iterator[tuple[str, np.ndarray]]:
    """(key, values) of every lora_A and lora_B, with the ratio folded into B."""
    for number, work in enumerate(held, start=1):
        factors = low_rank(_delta(plan, work), rank, work.name)
        k = factors.a.shape[0]
        report.modules[work.name] = {"rank": k, "kept": factors.kept, "total": factors.total, "share": factors.share}
        log.debug("%d/%d %s: rank %d keeps %.1f%%", number, len(held), work.name, k, 100 * factors.share)
        yield f"{PREFIX}{module_of(work.name)}.lora_A.weight", factors.a
        yield f"{PREFIX}{module_of(work.name)}.lora_B.weight", scaled(factors.b, ratio, f"lora_B of {work.name}")
