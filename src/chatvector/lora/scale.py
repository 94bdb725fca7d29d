"""A copy of a LoRA adapter for another ratio: every ``lora_B`` multiplied by it.

The adapter is read by :func:`chatvector.io.adapter.read_adapter`, the rule every adapter is read
by (its files regular and inside it, its config typed, its factors paired and shaped), and every
file copied is read by the small-file rule; the scaled values are computed and checked (finite in
their dtype) before anything is written.
"""

from __future__ import annotations

import json
import logging
import os
from pathlib import Path
from typing import Any

import numpy as np

from chatvector.errors import InputError, NonFiniteError
from chatvector.io.adapter import ADAPTER_WEIGHTS, Adapter, read_adapter, write_adapter
from chatvector.io.checkpoint import model_root
from chatvector.io.files import read_bytes
from chatvector.io.hub import resolve_model
from chatvector.io.output import check_output_path
from chatvector.lora.manifest import LORA_MANIFEST, read_lora_manifest
from chatvector.lora.options import lora_options

__all__ = ["scale_adapter", "scaled"]

log = logging.getLogger(__name__)


def scale_adapter(
    adapter: str | os.PathLike[str], ratio: float, out: str | os.PathLike[str], *, force: bool = False
) -> Path:
    """Write a copy of ``adapter`` whose every ``lora_B`` is multiplied by ``ratio`` (so merging it
    adds ``ratio`` times the update). Whole modules (``modules_to_save``) cannot be scaled and are
    refused.

    Raises:
        InputError: a ratio that is not finite or overflows the factors' dtype, an adapter with
            whole modules, or not an adapter at all.
        CheckpointError: an adapter file that is refused by the reading rule (see
            :func:`chatvector.io.adapter.read_adapter`).
    """
    checked = lora_options(ratio=ratio).ratio
    ratio = 1.0 if checked is None else checked
    out_path = Path(out)
    ref = resolve_model(os.fspath(adapter), "vector")
    check_output_path(out_path, [ref.path], force)
    source = read_adapter(ref)
    try:
        if source.config.modules_to_save:
            raise InputError(
                f"{ref.path} holds whole modules (modules_to_save), which replace the target's and "
                "cannot be scaled by a ratio; extract it without --keep-whole",
                file=ref.path,
            )
        tensors = _scaled_tensors(source, ratio)
        files = _small_files(source, ratio)
    finally:
        source.close()
    entries = [(name, source.header.tensors[name].dtype, tuple(values.shape)) for name, values in tensors.items()]
    with write_adapter(out_path, entries, dict(source.header.metadata), force=force) as output:
        for name, values in tensors.items():
            output.write(name, values)
        for name, data in files.items():
            output.add_file(name, data)
    log.info("wrote %s", out_path)
    return out_path


def _scaled_tensors(source: Adapter, ratio: float) -> dict[str, np.ndarray]:
    """Every tensor of the weights file, lora_B scaled; refused when one is or becomes non-finite."""
    b_names = {m.b.name for m in source.modules}
    tensors = {}
    for name, info in source.header.tensors.items():
        values = source.tensor(info)
        if not np.isfinite(values).all():
            raise NonFiniteError(
                f"{source.header.path}: tensor {name!r} holds NaN or Inf; the adapter is damaged",
                file=source.header.path,
                tensor=name,
            )
        tensors[name] = scaled(values, ratio, f"tensor {name!r} of {source.header.path}") if name in b_names else values
    return tensors


def _small_files(source: Adapter, ratio: float) -> dict[str, bytes]:
    """Every other file of the adapter (config, tokenizer, manifest), read by the small-file rule,
    with the manifest's ratio updated."""
    root = model_root(source.weights.ref)
    files = {}
    for path in sorted(source.folder.iterdir()):
        if path.name == ADAPTER_WEIGHTS:
            continue
        if path.is_dir() and not path.is_symlink():
            log.warning("%s: skipping the folder %s (an adapter's files are all at its top)", source.folder, path.name)
            continue
        files[path.name] = read_bytes(path, path.name, root=root)
    manifest: dict[str, Any] = read_lora_manifest(source.folder, root) or {"format": "chatvector-lora"}
    manifest["ratio"] = float(manifest.get("ratio", 1.0)) * ratio
    files[LORA_MANIFEST] = (json.dumps(manifest, indent=2) + "\n").encode()
    return files


def scaled(values: np.ndarray, ratio: float, what: str) -> np.ndarray:
    """``values · ratio`` in float32, cast back to ``values``' dtype; refused when that overflows it.

    Raises:
        InputError: naming ``--ratio`` and what overflows.
    """
    if ratio == 1.0:
        return values
    with np.errstate(over="ignore", invalid="ignore"):
        result = (values.astype(np.float32) * np.float32(ratio)).astype(values.dtype)
    if not np.isfinite(result).all():
        raise InputError(
            f"--ratio {ratio:g}: {what} scaled by it overflows {values.dtype}; use a smaller ratio "
            "(nothing was written)",
            option="--ratio",
        )
    return result
