"""``chatvector_lora.json``: what chatvector records beside an adapter it wrote (rank, ratio, the
energy kept per module and layer), read back through a schema when a scaled copy updates it."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any

from pydantic import BaseModel, ConfigDict, Field

from chatvector.io.files import read_json

__all__ = ["LORA_MANIFEST", "LoraManifest", "read_lora_manifest"]

LORA_MANIFEST = "chatvector_lora.json"


class LoraManifest(BaseModel):
    """The keys chatvector reads back; every other key is kept as written."""

    model_config = ConfigDict(extra="allow", strict=True, frozen=True)

    format: str = "chatvector-lora"
    ratio: Annotated[float, Field(allow_inf_nan=False)] = 1.0


def read_lora_manifest(folder: Path, root: Path) -> dict[str, Any] | None:
    """The adapter's ``chatvector_lora.json`` (checked against :class:`LoraManifest`), or None."""
    path = folder / LORA_MANIFEST
    if not path.exists() and not path.is_symlink():
        return None
    return read_json(path, LORA_MANIFEST, schema=LoraManifest, root=root)
