"""Open a model by local path or hub id and read its tensors one range at a time.

Nothing here loads a whole model: headers and index files are parsed up front (so preflight can
check every name, shape and dtype before heavy I/O) and tensor bytes are read later, range by
range, into buffers the caller owns. Pickled ``.bin`` checkpoints are refused unless the caller
opts in, and are then read with ``torch.load(weights_only=True)``.
"""

from __future__ import annotations

import hashlib
import logging
import os
import threading
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from chatvector.dtypes import DTYPES, by_torch_name
from chatvector.errors import CheckpointError
from chatvector.io.files import checked_regular_file, is_inside, read_json
from chatvector.io.hub import PICKLE_NAMES, ModelRef
from chatvector.io.safetensors_header import TensorInfo, read_header
from chatvector.io.schemas import ModelConfig, SafetensorsIndex

log = logging.getLogger(__name__)


def remote_headers(ref: ModelRef) -> Checkpoint | None:
    """Tensor names, dtypes and shapes of a hub model, before its weights are downloaded.

    ``huggingface_hub``'s ``get_safetensors_metadata`` reads each shard's header with HTTP range
    requests (a few kB each), at the commit ``ref`` was resolved to. The result can be planned
    but not read. None when the headers cannot be had (offline, pickled weights, an unknown
    dtype, a name in two shards): the full check after the download then covers them.
    """
    from huggingface_hub import HfApi

    try:
        found = HfApi().get_safetensors_metadata(ref.hub_id or ref.spec, revision=ref.revision)
    except Exception as error:  # offline, not found, no safetensors, ...: all mean "not now"
        log.info(
            "no remote safetensors headers for %s (%s); they are checked after the download",
            ref.spec,
            type(error).__name__,
        )
        return None
    tensors: dict[str, TensorInfo] = {}
    for filename, header in sorted(found.files_metadata.items()):
        for name, info in header.tensors.items():
            if name in tensors or info.dtype not in DTYPES:
                return None
            begin, end = info.data_offsets
            tensors[name] = TensorInfo(name, info.dtype, tuple(info.shape), ref.path / filename, begin, end)
    return Checkpoint(ref, "remote-headers", dict(sorted(tensors.items())), {})


def _checked_shard_path(ref: ModelRef, index_path: Path, filename: Any) -> Path:
    """Return the shard an index entry names, refusing anything that leaves the model directory."""
    if (
        not isinstance(filename, str)
        or not filename
        or "/" in filename
        or "\\" in filename
        or filename in {".", ".."}
        or os.path.isabs(filename)
    ):
        raise CheckpointError(
            f"{index_path}: weight_map entry {filename!r} is not a plain file name in the model "
            "directory; refusing to read outside it"
        )
    shard = ref.path / filename
    root = model_root(ref)
    if not is_inside(shard, root):
        raise CheckpointError(f"{index_path}: {filename!r} is a link leading outside {root}; refusing it")
    if not os.path.lexists(shard):
        raise CheckpointError(f"{index_path}: shard {filename!r} is missing from {ref.path}")
    checked_regular_file(shard, "weights file", root=root)
    return shard


def model_root(ref: ModelRef) -> Path:
    """The directory every file of ``ref`` must lie in once links are followed."""
    return ref.allowed_root or ref.path.resolve()


def _index_files(ref: ModelRef, allow_pickle: bool) -> tuple[str, list[Path]]:
    """Find the weight files of a model directory: ("safetensors"|"pickle", files)."""
    folder = ref.path
    indexes = sorted(folder.glob("*.safetensors.index.json"))
    if len(indexes) > 1:
        names = ", ".join(p.name for p in indexes)
        raise CheckpointError(f"{folder}: several safetensors index files ({names}); keep one")
    if indexes:
        index = read_json(indexes[0], "safetensors index", schema=SafetensorsIndex, root=model_root(ref))
        files = {_checked_shard_path(ref, indexes[0], f) for f in index["weight_map"].values()}
        return "safetensors", sorted(files)
    singles = sorted(p for p in folder.glob("*.safetensors") if not p.name.startswith("."))
    singles = [p for p in singles if p.name != "adapter_model.safetensors"]
    root = model_root(ref)
    for single in singles:
        if not is_inside(single, root):
            raise CheckpointError(f"{single} is a link leading outside {root}; refusing it")
        checked_regular_file(single, "weights file", root=root)
    if singles:
        return "safetensors", singles
    if (folder / "adapter_model.safetensors").exists():
        raise CheckpointError(
            f"{folder} holds a LoRA adapter, not a full model; merge the adapter into its base "
            "model first (e.g. peft's merge_and_unload) and pass that directory"
        )
    pickles = [folder / n for n in PICKLE_NAMES if (folder / n).exists()]
    if pickles:
        if not allow_pickle:
            raise CheckpointError(
                f"{folder} holds only pickled weights ({pickles[0].name}). Loading a pickle can "
                "run code from the file. Convert it to safetensors, or pass --allow-pickle to "
                "read it with torch.load(weights_only=True)"
            )
        return "pickle", _pickle_files(ref, pickles[0])
    raise CheckpointError(
        f"{folder} has no model weights (*.safetensors or pytorch_model.bin); is --{ref.role} the right directory?"
    )


def _pickle_files(ref: ModelRef, first: Path) -> list[Path]:
    if first.name.endswith(".index.json"):
        index = read_json(first, "pickle index", schema=SafetensorsIndex, root=model_root(ref))
        return sorted({_checked_shard_path(ref, first, f) for f in index["weight_map"].values()})
    checked_regular_file(first, "weights file", root=model_root(ref))
    return [first]


@dataclass
class Checkpoint:
    """The tensors of one model (or vector) directory, by name, read lazily and thread-safely.

    Use as a context manager so file descriptors are closed.
    """

    ref: ModelRef
    format: str
    tensors: dict[str, TensorInfo]
    metadata: dict[str, str]
    fingerprints: dict[str, dict[str, object]] = field(default_factory=dict)
    _fds: dict[Path, int] = field(default_factory=dict, repr=False)
    _pickled: dict[str, Any] = field(default_factory=dict, repr=False)
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False)
    _cache: dict[str, Any] = field(default_factory=dict, repr=False)

    @classmethod
    def open(cls, ref: ModelRef, *, allow_pickle: bool = False) -> Checkpoint:
        """Parse every header (or, for pickles, load lazily-mapped tensors) of ``ref``."""
        kind, files = _index_files(ref, allow_pickle)
        if kind == "pickle":
            return _open_pickled(ref, files)
        tensors: dict[str, TensorInfo] = {}
        metadata: dict[str, str] = {}
        fingerprints: dict[str, dict[str, object]] = {}
        for shard in files:
            header = read_header(shard)
            metadata.update(header.metadata)
            fingerprints[shard.name] = {
                "bytes": shard.stat().st_size,
                "header_sha256": hashlib.sha256(header.header_bytes).hexdigest(),
            }
            for name, info in header.tensors.items():
                if name in tensors:
                    raise CheckpointError(
                        f"tensor {name!r} appears in both {tensors[name].file.name} and {shard.name} of {ref.path}"
                    )
                tensors[name] = info
        return cls(ref, kind, dict(sorted(tensors.items())), metadata, fingerprints)

    @property
    def config(self) -> dict[str, Any] | None:
        """The model's ``config.json`` (checked against :class:`ModelConfig`; read once), or None."""
        if "config" not in self._cache:
            path = self.ref.path / "config.json"
            self._cache["config"] = (
                read_json(path, "config.json", schema=ModelConfig, root=model_root(self.ref))
                if os.path.lexists(path)
                else None
            )
        return self._cache["config"]

    def pickled_tensor(self, name: str) -> Any:
        """The whole torch tensor ``name`` of a pickled checkpoint (only those hold whole tensors)."""
        return self._pickled[name]

    def prefetch(self, info: TensorInfo, start: int, count: int) -> None:
        """Ask the kernel to start reading elements ``[start, start+count)`` in the background."""
        if self.format == "pickle":
            return
        os.posix_fadvise(
            self._fd(info.file), info.begin + start * info.itemsize, count * info.itemsize, os.POSIX_FADV_WILLNEED
        )

    def read_into(self, info: TensorInfo, start: int, count: int, out: np.ndarray) -> None:
        """Copy elements ``[start, start+count)`` of tensor ``info`` into ``out``.

        ``out`` is a contiguous numpy uint8 array of at least ``count * itemsize`` bytes.
        """
        nbytes = count * info.itemsize
        if self.format == "pickle":
            import torch  # already loaded: the pickle was read with it

            source = self._pickled[info.name].reshape(-1)[start : start + count]
            out[:nbytes] = source.contiguous().view(torch.uint8).numpy()
            return
        view = out[:nbytes].data  # a memoryview of the caller's contiguous buffer
        offset = info.begin + start * info.itemsize
        fd = self._fd(info.file)
        done = 0
        while done < nbytes:
            try:
                got = os.preadv(fd, [view[done:]], offset + done)
            except OSError as error:  # EIO from a failing disk, a network file system gone away
                raise CheckpointError(
                    f"{info.file}: cannot read tensor {info.name!r} ({error.strerror or error})",
                    file=info.file,
                    tensor=info.name,
                ) from None
            if got <= 0:
                raise CheckpointError(
                    f"{info.file}: unexpected end of file reading tensor {info.name!r}; "
                    "the file was truncated or changed during the merge"
                )
            done += got

    def read_typed(self, info: TensorInfo, start: int, count: int, buffer: np.ndarray) -> np.ndarray:
        """Elements ``[start, start+count)`` of tensor ``info`` as a typed array: read into
        ``buffer`` (as :meth:`read_into`), or, for a source held in memory, a view of it (never
        to be written)."""
        self.read_into(info, start, count, buffer)
        return buffer[: count * info.itemsize].view(DTYPES[info.dtype].numpy)

    def _fd(self, path: Path) -> int:
        fd = self._fds.get(path)
        if fd is None:
            with self._lock:
                fd = self._fds.get(path)
                if fd is None:
                    try:
                        fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | os.O_CLOEXEC)
                    except OSError as error:
                        raise CheckpointError(f"cannot read {path}: {error.strerror or error}", file=path) from None
                    self._fds[path] = fd
        return fd

    def close(self) -> None:
        for fd in self._fds.values():
            os.close(fd)
        self._fds.clear()
        self._pickled.clear()

    def __enter__(self) -> Checkpoint:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def _open_pickled(ref: ModelRef, files: list[Path]) -> Checkpoint:
    import torch

    log.warning("reading pickled checkpoint %s with torch.load(weights_only=True)", ref.path)
    pickled: dict[str, Any] = {}
    tensors: dict[str, TensorInfo] = {}
    for path in files:
        try:
            state = torch.load(path, map_location="cpu", weights_only=True, mmap=True)
        except Exception as error:  # torch raises many types for bad pickles
            raise CheckpointError(
                f"{path}: cannot be read with torch.load(weights_only=True): {str(error).splitlines()[0][:300]}"
            ) from None
        for name, tensor in state.items():
            found = by_torch_name(str(tensor.dtype))
            dtype = found.safetensors if found else None
            if dtype is None:
                raise CheckpointError(f"{path}: tensor {name!r} has unsupported dtype {tensor.dtype}")
            pickled[name] = tensor.contiguous()
            nbytes = tensor.numel() * tensor.element_size()
            tensors[name] = TensorInfo(name, dtype, tuple(tensor.shape), path, 0, nbytes)
    fingerprints: dict[str, dict[str, object]] = {p.name: {"bytes": p.stat().st_size} for p in files}
    return Checkpoint(ref, "pickle", dict(sorted(tensors.items())), {}, fingerprints, _pickled=pickled)
