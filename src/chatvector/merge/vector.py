"""The chat-vector artifact: a directory of float deltas plus what ``apply`` needs later.

A vector directory holds ``vector*.safetensors`` (``chat − base``, tensor by tensor), the chat
model's config, tokenizer files, chat template and generation config, and a manifest
(``chatvector.json``) naming the base and chat models, the dtype, the excluded tensors and every
tensor's shape.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from chatvector.errors import CheckpointError, InputError
from chatvector.io.files import present, read_json, validate
from chatvector.io.output import write_file
from chatvector.io.safetensors_header import TensorInfo

__all__ = [
    "VECTOR_MANIFEST",
    "VECTOR_FORMAT",
    "VectorManifest",
    "read_manifest",
    "write_manifest",
    "check_vector_tensors",
]

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
    tensors: dict[str, tuple[Annotated[int, Field(ge=0, le=2**40)], ...]] = {}


def read_manifest(folder: Path, root: Path | None = None) -> VectorManifest | None:
    """The manifest of a vector directory, or None when ``folder`` is not one.

    Raises:
        InputError: the manifest claims to be a chat vector's but a field has the wrong type
            (naming the file and key).
    """
    path = folder / VECTOR_MANIFEST
    if not present(path):
        return None
    data = read_json(path, VECTOR_MANIFEST, root=root)
    if data.get("format") != VECTOR_FORMAT:
        return None
    try:
        manifest = validate(data, VectorManifest, path, VECTOR_MANIFEST)
    except InputError as error:
        raise InputError(
            f"{error}; the vector directory is damaged, extract it again", file=error.file, option=error.option
        ) from None
    assert isinstance(manifest, VectorManifest)
    return manifest


def write_manifest(folder: Path, manifest: VectorManifest) -> Path:
    path = folder / VECTOR_MANIFEST
    write_file(path, json.dumps(manifest.model_dump(mode="json"), indent=2) + "\n")
    return path


def check_vector_tensors(folder: Path, manifest: VectorManifest, tensors: dict[str, TensorInfo]) -> None:
    """Every tensor the manifest lists must be in the vector's weights with the listed shape.

    The one check of a vector's completeness, for everything that reads a vector (``apply``,
    ``lora``): a vector that lost a tensor would otherwise be applied or converted without it.

    Raises:
        CheckpointError: naming the first missing or reshaped tensor and the fix.
    """
    for name, shape in manifest.tensors.items():
        found = tensors.get(name)
        if found is None or found.shape != tuple(shape):
            state = "is missing from its weights" if found is None else f"has shape {found.shape} in its weights"
            raise CheckpointError(
                f"{folder}: tensor {name} is listed in {VECTOR_MANIFEST} with shape {tuple(shape)} but {state}; "
                "the vector directory is damaged, extract it again",
                file=folder / VECTOR_MANIFEST,
                tensor=name,
            )
