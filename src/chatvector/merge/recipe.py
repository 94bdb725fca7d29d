"""Recipes: a merge written down, so it can be shared, reproduced and verified.

Every output carries the recipe that made it (``chatvector_recipe.yaml``). A recipe file given to
``chatvector merge --recipe`` looks like::

    target: yentinglin/Taiwan-LLM-7B-v2.0-base
    terms:
      - {base: meta-llama/Llama-2-7b-hf, chat: meta-llama/Llama-2-7b-chat-hf, ratio: 1.0}
      - {vector: ./code-vector, ratio: 0.3}
    options: {embeddings: align, exclude: ["rotary_emb"], dtype: bfloat16}
"""

from __future__ import annotations

import difflib
import math
from pathlib import Path
from typing import Literal

import numpy as np
import yaml
from pydantic import BaseModel, ConfigDict, ValidationError, field_validator

from chatvector.errors import InputError
from chatvector.options import MergeOptions

__all__ = ["Recipe", "PairTerm", "VectorTerm", "MergeOptions", "RECIPE_FILENAME", "load_recipe", "parse_recipe",
           "check_ratio"]

RECIPE_FILENAME = "chatvector_recipe.yaml"


def check_ratio(ratio: float) -> float:
    """A ratio must be finite, and one that is not 0 must stay non-zero in float32 (the engine's precision).

    Raises:
        ValueError: naming the ratio and why it cannot be used.
    """
    if not math.isfinite(ratio):
        raise ValueError(f"ratio {ratio} is not a finite number")
    if abs(ratio) > float(np.finfo(np.float32).max):
        raise ValueError(f"ratio {ratio!r} does not fit in float32")
    if ratio != 0 and np.float32(ratio) == 0:
        raise ValueError(f"ratio {ratio!r} rounds to 0 in float32, so it would change nothing; use 0 or a larger ratio")
    return ratio


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class PairTerm(_Strict):
    """``ratio · (chat − base)``, computed on the fly from the two models."""

    base: str
    chat: str
    ratio: float = 1.0
    base_revision: str | None = None
    chat_revision: str | None = None

    @field_validator("ratio")
    @classmethod
    def _usable_ratio(cls, ratio: float) -> float:
        return check_ratio(ratio)


class VectorTerm(_Strict):
    """``ratio · vector``, from a directory written by ``chatvector extract``."""

    vector: str
    ratio: float = 1.0

    @field_validator("ratio")
    @classmethod
    def _usable_ratio(cls, ratio: float) -> float:
        return check_ratio(ratio)


class Recipe(_Strict):
    """A full merge (``kind: merge``) or an extraction (``kind: extract``, no target)."""

    kind: Literal["merge", "extract"] = "merge"
    target: str | None = None
    target_revision: str | None = None
    terms: tuple[PairTerm | VectorTerm, ...]
    options: MergeOptions = MergeOptions()

    @field_validator("terms")
    @classmethod
    def _at_least_one(cls, terms: tuple[PairTerm | VectorTerm, ...]) -> tuple[PairTerm | VectorTerm, ...]:
        if not terms:
            raise ValueError("a recipe needs at least one term")
        return terms

    def check_complete(self) -> None:
        """Raise InputError when the kind and the given parts do not fit together."""
        if self.kind == "merge" and not self.target:
            raise InputError("the recipe has no target: give --target (or 'target:' in the recipe)")
        if self.kind == "extract" and (self.target or len(self.terms) != 1
                                       or not isinstance(self.terms[0], PairTerm)):
            raise InputError("an extract recipe has exactly one (base, chat) term and no target")


def parse_recipe(data: object, source: str) -> Recipe:
    """Validate recipe data, turning pydantic's report into one InputError naming ``source``."""
    try:
        return Recipe.model_validate(data)
    except ValidationError as error:
        details = "; ".join(_describe(e) for e in error.errors())
        raise InputError(f"{source}: invalid recipe ({details})") from None


_KNOWN_KEYS = sorted(set(Recipe.model_fields) | set(PairTerm.model_fields)
                     | set(VectorTerm.model_fields) | set(MergeOptions.model_fields))


def _describe(error: dict) -> str:
    """One pydantic error as 'where: what', with a suggestion for a misspelled key."""
    # Union members (PairTerm | VectorTerm) appear in the location; they mean nothing to users.
    location = [str(p) for p in error["loc"] if p not in ("PairTerm", "VectorTerm")]
    message = error["msg"]
    if error["type"] == "extra_forbidden" and location:
        close = difflib.get_close_matches(location[-1], _KNOWN_KEYS, n=1)
        if close:
            message += f" (did you mean {close[0]!r}?)"
    return f"{'.'.join(location) or 'recipe'}: {message}"


def load_recipe(path: Path) -> Recipe:
    """Read a YAML recipe file."""
    try:
        data = yaml.safe_load(Path(path).read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise InputError(f"--recipe {path}: no such file") from None
    except yaml.YAMLError as error:
        raise InputError(f"--recipe {path}: not valid YAML ({error})") from None
    if isinstance(data, dict) and "recipe" in data and "terms" not in data:
        data = data["recipe"]  # a chatvector_recipe.yaml written next to an output
    return parse_recipe(data, str(path))
