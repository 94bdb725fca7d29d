"""The chat-vector artifact: a directory of float deltas plus what ``apply`` needs later.

A vector directory holds ``vector*.safetensors`` (``chat − base``, tensor by tensor), the chat
model's config, tokenizer files, chat template and generation config, and a manifest
(``chatvector.json``) naming the base and chat models, the dtype, the excluded tensors and every
tensor's shape.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, ValidationError

from chatvector.errors import InputError
from chatvector.io.files import read_json

__all__ = ["VECTOR_MANIFEST", "VECTOR_FORMAT", "VectorManifest", "read_manifest", "write_manifest"]

VECTOR_MANIFEST = "chatvector.json"
VECTOR_FORMAT = "chatvector-vector"


class VectorManifest(BaseModel):
    """What ``chatvector.json`` records; unknown keys are kept for forward compatibility."""

    model_config = ConfigDict(extra="allow", frozen=True)

    format: Literal["chatvector-vector"]
    format_version: int = 1
    chatvector_version: str | None = None
    formula: str = "chat - base"
    base: dict[str, Any] | None = None
    chat: dict[str, Any] | None = None
    dtype: str | None = None
    excluded: tuple[str, ...] = ()
    architecture: dict[str, Any] = {}
    tensors: dict[str, tuple[int, ...]] = {}


def read_manifest(folder: Path) -> VectorManifest | None:
    """The manifest of a vector directory, or None when ``folder`` is not one.

    Raises:
        InputError: the manifest claims to be a chat vector's but a field has the wrong type.
    """
    path = folder / VECTOR_MANIFEST
    if not path.exists():
        return None
    data = read_json(path, VECTOR_MANIFEST)
    if data.get("format") != VECTOR_FORMAT:
        return None
    try:
        return VectorManifest.model_validate(data)
    except ValidationError as error:
        first = error.errors()[0]
        key = ".".join(str(p) for p in first["loc"]) or "manifest"
        raise InputError(f"{path}: key {key!r}: {first['msg']}; the vector directory is damaged, extract it again",
                         file=path, option=key) from None


def write_manifest(folder: Path, manifest: VectorManifest) -> Path:
    path = folder / VECTOR_MANIFEST
    path.write_text(json.dumps(manifest.model_dump(mode="json"), indent=2) + "\n", encoding="utf-8")
    return path
