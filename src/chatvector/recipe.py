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
import re
from pathlib import Path
from typing import Literal

import yaml
from pydantic import BaseModel, ConfigDict, ValidationError, field_validator

from chatvector.errors import InputError

RECIPE_FILENAME = "chatvector_recipe.yaml"
EmbeddingPolicy = Literal["auto", "align", "add", "skip"]
OutputDtype = Literal["float32", "bfloat16", "float16"]


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class PairTerm(_Strict):
    """``ratio · (chat − base)``, computed on the fly from the two models."""

    base: str
    chat: str
    ratio: float = 1.0
    base_revision: str | None = None
    chat_revision: str | None = None


class VectorTerm(_Strict):
    """``ratio · vector``, from a directory written by ``chatvector extract``."""

    vector: str
    ratio: float = 1.0


class MergeOptions(_Strict):
    """Policies that change the result; all recorded in the output."""

    embeddings: EmbeddingPolicy = "auto"
    exclude: tuple[str, ...] = ()
    dtype: OutputDtype | None = None

    @field_validator("exclude")
    @classmethod
    def _valid_regexes(cls, patterns: tuple[str, ...]) -> tuple[str, ...]:
        for pattern in patterns:
            try:
                re.compile(pattern)
            except re.error as error:
                raise ValueError(f"--exclude {pattern!r} is not a valid regular expression: "
                                 f"{error}") from None
        return patterns


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

    def to_yaml(self) -> str:
        return yaml.safe_dump(self.model_dump(mode="json", exclude_none=True), sort_keys=False,
                              allow_unicode=True)


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
