"""Merged weights written straight into a loaded transformers model (``sweep --in-place``).

:class:`ParameterSink` has the engine's sink contract (``write(name, byte_offset, data)``, see
:class:`~chatvector.io.output.TensorSink`); its destination is the model's own parameter storage,
found by checkpoint tensor name. :func:`update_in_place` runs the normal merge
(:func:`chatvector.merge.inplace.merge_into`) with it, so the parameters end up equal, bit for bit,
to what loading ``chatvector merge``'s output would give:

- a CPU parameter in the dtype the merge writes receives the bytes as they are;
- a CPU float32 parameter of a bfloat16 merge (the hf backend loads float32 on the CPU) receives
  each chunk widened by numpy, in the engine's worker thread: widening bfloat16 is exact, and
  gives the bits torch's conversion gives for all 65536 bfloat16 values, NaNs included
  (``tests/test_inplace.py``). torch's ``copy_`` would start its own thread pool per chunk, which
  on a 2-core machine made the write take longer than the merge;
- a CPU parameter in another dtype receives each chunk converted by torch's ``copy_``, the
  conversion ``from_pretrained`` applies to a checkpoint loaded in another dtype;
- a parameter on an accelerator is computed on the CPU into a pinned host buffer per tensor,
  then copied to the device with ``param.data.copy_`` once the merge is done.

Names: a checkpoint name is looked up as it is, then as the model renames it on load (its
``base_model_prefix`` added or dropped, and the regex renames a model class declares in
``_checkpoint_conversion_mapping``). Tied parameters (an output head sharing the embedding's
storage) are written once, through the name the model registers first, as loading ties them.
A tensor the checkpoint has and the model does not hold in its state dict (parameters and
persistent buffers) is skipped, as loading ignores it.

:func:`update_in_place` keeps one :class:`~chatvector.merge.inplace.InPlaceState` per model, so
successive candidates skip the tensors whose work did not change and may read their inputs from
memory. It assumes nothing else writes the parameters in between; a model whose tensors moved
(another storage, device or dtype) is written whole again, and :func:`forget_in_place` drops the
state (the inputs held in memory too).
"""

from __future__ import annotations

import logging
import re
import weakref
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import numpy as np

from chatvector.dtypes import DTYPES
from chatvector.errors import InputError
from chatvector.merge.inplace import InPlaceReport, InPlaceState, OutputTensor, merge_into
from chatvector.merge.recipe import Recipe
from chatvector.options import RunOptions

__all__ = ["ParameterSink", "update_in_place", "forget_in_place"]

log = logging.getLogger(__name__)


@dataclass
class _Slot:
    """Where one output tensor's elements go: a flat view of the destination, in the merge's dtype
    when bytes can be copied as they are."""

    flat: Any  # torch.Tensor, 1-D: the parameter itself on the CPU, or its pinned host buffer
    source_dtype: Any  # torch.dtype of the bytes the engine writes
    itemsize: int
    parameter: Any  # the torch parameter (or buffer)
    staged: bool  # flat is a host buffer to copy into ``parameter`` after the merge
    array: np.ndarray | None = None  # numpy view of ``flat`` written directly (see ``widen``)
    widen: np.dtype | None = None  # the merge's numpy dtype when ``array`` is float32 to widen into


def _renames(model: Any) -> list[tuple[re.Pattern[str], str]]:
    """The regex renames the model class applies to checkpoint names on load (transformers'
    ``_checkpoint_conversion_mapping``; empty for most models)."""
    mapping = getattr(model, "_checkpoint_conversion_mapping", None) or {}
    return [(re.compile(pattern), replacement) for pattern, replacement in mapping.items()]


def _candidates(name: str, prefix: str, renames: list[tuple[re.Pattern[str], str]]) -> Iterator[str]:
    yield name
    for pattern, replacement in renames:
        renamed, count = pattern.subn(replacement, name)
        if count:
            yield renamed
    if prefix:
        if name.startswith(prefix + "."):
            yield name[len(prefix) + 1 :]
        else:
            yield f"{prefix}.{name}"


class ParameterSink:
    """An engine sink whose destination is ``model``'s parameters (see the module doc).

    Args:
        model: a loaded transformers model (any ``torch.nn.Module`` with named parameters).
        outputs: every tensor the merge will write.
        host_buffers: pinned host buffers by tensor name, kept between calls for a model on an
            accelerator (allocated here when missing).

    Raises:
        InputError: an output whose shape differs from the model's tensor of that name (a merge
            that resizes the vocabulary), or a model split over devices by a device map.
    """

    def __init__(self, model: Any, outputs: list[OutputTensor], host_buffers: dict[str, Any] | None = None) -> None:
        import torch

        self._torch = torch
        named = dict(model.state_dict(keep_vars=True))  # parameters and persistent buffers, tied names too
        canonical = {id(p): n for n, p in model.named_parameters()}  # the first name of each tied parameter
        prefix = getattr(model, "base_model_prefix", "") or ""
        renames = _renames(model)
        self.slots: dict[str, _Slot] = {}
        self.skipped: list[str] = []
        self.written: set[str] = set()  # tensors that received chunks (only those are staged out)
        self._host = host_buffers if host_buffers is not None else {}
        owner: dict[int, str] = {}  # parameter -> the output written into it
        for output in outputs:
            found = next((c for c in _candidates(output.name, prefix, renames) if c in named), None)
            if found is None:
                self.skipped.append(output.name)
                continue
            parameter = named[found]
            _check_shape(output, parameter)
            earlier = owner.get(id(parameter))
            if earlier is not None:  # tied: written once, through the name the model registers first
                if canonical.get(id(parameter)) != found:
                    self.skipped.append(output.name)
                    continue
                self.skipped.append(earlier)
                del self.slots[earlier]
            owner[id(parameter)] = output.name
            self.slots[output.name] = self._slot(output, parameter)
        if self.skipped:
            log.info("in place: not written (absent from the model, or tied): %s", ", ".join(self.skipped))

    def _slot(self, output: OutputTensor, parameter: Any) -> _Slot:
        torch = self._torch
        kind = DTYPES[output.dtype]
        source = getattr(torch, kind.torch or "")
        if parameter.device.type == "cpu":
            if not parameter.data.is_contiguous():
                raise InputError(f"in place: tensor {output.name} is not contiguous in the model; use --no-in-place")
            flat = parameter.data.view(-1)
            slot = _Slot(flat, source, kind.itemsize, parameter, staged=False)
            if parameter.dtype == source:  # the bytes as they are
                slot.array = flat.view(torch.uint8).numpy()
            elif source == torch.bfloat16 and parameter.dtype == torch.float32:  # exact widening
                slot.array, slot.widen = flat.numpy(), kind.numpy
            return slot
        host = self._host.get(output.name)
        if host is None or host.dtype != source or host.numel() != parameter.numel():
            host = torch.empty(parameter.numel(), dtype=source, pin_memory=torch.cuda.is_available())
            self._host[output.name] = host
        return _Slot(host, source, kind.itemsize, parameter, staged=True, array=host.view(torch.uint8).numpy())

    def write(self, name: str, byte_offset: int, data: memoryview) -> None:
        """Put one chunk of tensor ``name`` (bytes in the merge's dtype) at ``byte_offset``."""
        slot = self.slots.get(name)
        if slot is None:
            return
        self.written.add(name)
        if slot.array is not None and slot.widen is None:
            slot.array[byte_offset : byte_offset + len(data)] = np.frombuffer(data, dtype=np.uint8)
            return
        start = byte_offset // slot.itemsize
        if slot.array is not None:
            values = np.frombuffer(data, dtype=slot.widen)
            np.copyto(slot.array[start : start + values.size], values, casting="unsafe")
            return
        torch = self._torch
        chunk = torch.frombuffer(data, dtype=slot.source_dtype)
        with torch.no_grad():
            slot.flat[start : start + chunk.numel()].copy_(chunk)

    def finish(self) -> None:
        """Copy the staged host buffers written to their device parameters (nothing to do on the CPU)."""
        torch = self._torch
        staged = [s for n, s in self.slots.items() if s.staged and n in self.written]
        with torch.no_grad():
            for slot in staged:
                target = slot.parameter.data
                target.copy_(slot.flat.view(target.shape), non_blocking=True)
        if staged and torch.cuda.is_available():
            torch.cuda.synchronize()


def _check_shape(output: OutputTensor, parameter: Any) -> None:
    if tuple(parameter.shape) != output.shape:
        raise InputError(
            f"in place: tensor {output.name} is {list(output.shape)} in the merge but "
            f"{list(parameter.shape)} in the loaded model; evaluate this recipe with --no-in-place"
        )


# per model, kept while the model lives: pinned host buffers of a model on an accelerator (pinning
# is slow), and the state successive merges share (what each tensor holds, the inputs in memory)
_HOST_BUFFERS: weakref.WeakKeyDictionary[Any, dict[str, Any]] = weakref.WeakKeyDictionary()
_STATES: weakref.WeakKeyDictionary[Any, tuple[InPlaceState, tuple[Any, ...]]] = weakref.WeakKeyDictionary()


def _layout(model: Any) -> tuple[Any, ...]:
    """Where the model's tensors live: another storage, dtype or device means written anew."""
    return tuple((n, t.data_ptr(), t.dtype, t.device) for n, t in model.state_dict(keep_vars=True).items())


def forget_in_place(model: Any) -> None:
    """Drop what successive in-place merges into ``model`` shared (the next one writes every
    tensor, from the files or from inputs read into memory again)."""
    found = _STATES.pop(model, None)
    if found is not None:
        found[0].close()


def update_in_place(
    model: Any, recipe: Recipe, run: RunOptions | None = None, *, memory_limit: int | None = None
) -> InPlaceReport:
    """Overwrite ``model``'s parameters with the merge of ``recipe`` (see the module doc).

    Each call binds the plan it runs, so a candidate whose plan differs (another method, other
    excluded tensors) is written in full; tensors whose work is the one last written into them are
    left as they are. ``memory_limit``: the most bytes the inputs held in memory may take (None:
    half of the memory available; 0: read the files at each call).

    Raises:
        InputError: a model spread over devices (``--device-map``), or a plan the model cannot hold.
    """
    if len({p.device for p in model.parameters()}) > 1:
        raise InputError("in place: the model is spread over several devices (--device-map); use --no-in-place")
    made: list[ParameterSink] = []
    buffers = _HOST_BUFFERS.setdefault(model, {})
    layout = _layout(model)
    state, known = _STATES.get(model, (InPlaceState(), layout))
    if known != layout:
        state.forget()
    state.memory_limit = memory_limit
    _STATES[model] = (state, layout)

    def bind(outputs: list[OutputTensor]) -> ParameterSink:
        made.append(ParameterSink(model, outputs, buffers))
        return made[-1]

    report = merge_into(recipe, bind, run, state)
    made[0].finish()
    return report
