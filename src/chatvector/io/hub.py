"""Name a model by local path or Hugging Face Hub id, and get it onto the local disk.

Hub ids go through ``huggingface_hub.snapshot_download``, so ``HF_HUB_OFFLINE``, ``HF_HOME``, tokens
and the shared cache behave as users expect. Configs and tokenizer files can be fetched before the
weights, so that preflight runs before gigabytes are downloaded.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

from chatvector.errors import InputError

__all__ = ["ModelRef", "resolve_model", "METADATA_PATTERNS", "SAFETENSORS_PATTERNS", "PICKLE_PATTERNS", "PICKLE_NAMES"]

# Files a merge needs besides the weights; fetched from the hub first so preflight can run on
# them before gigabytes of weights are downloaded.
METADATA_PATTERNS = [
    "*.json",
    "*.jinja",
    "tokenizer.model",
    "*.tiktoken",
    "vocab.txt",
    "merges.txt",
    "*.md",
]
SAFETENSORS_PATTERNS = ["*.safetensors"]
PICKLE_PATTERNS = ["*.bin"]

PICKLE_NAMES = ("pytorch_model.bin", "pytorch_model.bin.index.json")


@dataclass(frozen=True)
class ModelRef:
    """A model the user named, resolved to a local directory."""

    spec: str  # what the user wrote: a path or a hub id
    path: Path  # local directory holding the files
    role: str  # "base", "chat", "target" or "vector", used in messages
    hub_id: str | None = None
    revision: str | None = None  # the commit hash a hub snapshot resolved to
    allowed_root: Path | None = None  # files may resolve (through symlinks) only below this

    def describe(self) -> str:
        if self.hub_id:
            return f"{self.role} {self.hub_id}@{(self.revision or '?')[:12]}"
        return f"{self.role} {self.path}"


def _looks_like_hub_id(spec: str) -> bool:
    from huggingface_hub.utils import HFValidationError, validate_repo_id

    if spec.startswith((".", "/", "~")) or spec.count("/") > 1:
        return False
    try:
        validate_repo_id(spec)
    except HFValidationError:
        return False
    return True


def _download(spec: str, role: str, revision: str | None, patterns: list[str]) -> Path:
    from huggingface_hub import snapshot_download

    try:
        return Path(snapshot_download(spec, revision=revision, allow_patterns=patterns))
    except Exception as error:  # hub client errors are many; all mean "could not get it"
        raise InputError(
            f"--{role} {spec!r} is not a local directory and could not be fetched from the "
            f"Hugging Face Hub ({type(error).__name__}: {str(error).splitlines()[0][:300]}). "
            "Check the path or the hub id; offline, pre-download it or set HF_HUB_OFFLINE=1 "
            "to use the local cache"
        ) from None


def resolve_model(
    spec: str | os.PathLike[str],
    role: str,
    *,
    revision: str | None = None,
    allow_pickle: bool = False,
    weights: bool = True,
) -> ModelRef:
    """Resolve ``spec`` (a local directory or a hub id) to a local directory.

    Hub ids go through ``huggingface_hub.snapshot_download``, so ``HF_HUB_OFFLINE``, ``HF_HOME``
    and the shared cache behave as users expect. With ``weights=False`` only configs and
    tokenizer files are fetched, which lets preflight run before large downloads.
    """
    text = os.fspath(spec)
    path = Path(text).expanduser()
    if path.exists():
        if not path.is_dir():
            raise InputError(f"--{role} {text!r} is a file; give the model's directory instead")
        root = path.resolve()
        return ModelRef(text, root, role, allowed_root=root)
    if not _looks_like_hub_id(text):
        raise InputError(f"--{role} {text!r}: no such directory")
    patterns = list(METADATA_PATTERNS)
    if weights:
        patterns += SAFETENSORS_PATTERNS + (PICKLE_PATTERNS if allow_pickle else [])
    local = _download(text, role, revision, patterns)
    # A hub snapshot's files are symlinks into the repo cache's blobs/: allow that folder.
    return ModelRef(text, local, role, hub_id=text, revision=local.name, allowed_root=local.parent.parent.resolve())
