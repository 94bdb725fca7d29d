"""Recipes: a merge written down, so it can be shared, reproduced and verified.

Every output carries the recipe that made it (``chatvector_recipe.yaml``). A recipe file given to
``chatvector merge --recipe`` looks like::

    target: yentinglin/Taiwan-LLM-7B-v2.0-base
    terms:
      - {base: meta-llama/Llama-2-7b-hf, chat: meta-llama/Llama-2-7b-chat-hf, ratio: 1.0}
      - {vector: ./code-vector, ratio: 0.3}
    options: {embeddings: align, exclude: ["rotary_emb"], dtype: bfloat16}

The recipe an output carries also records, beside each local input as the user spelled it, the
absolute directory it resolved to (``target_path``, ``chat_path``, ...): ``verify`` and ``merge
--recipe`` use those, so a relative spelling cannot silently mean other models when run from
another directory.

A term's ratio may also be a layer schedule or a list of rules (see :mod:`chatvector.merge.ratios`)::

      - {vector: ./code-vector, ratio: [{match: "lm_head|embed_tokens", ratio: 0}, {ratio: 1.0}]}
"""

from __future__ import annotations

import difflib
from collections.abc import Mapping
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, ValidationError, field_validator

from chatvector.errors import InputError
from chatvector.io.files import read_yaml, validate
from chatvector.merge.ratios import (
    Ratio,
    RatioRule,
    check_ratio,
    parse_rule,
    scale_ratio,
    set_rule_ratio,
    validate_ratio,
)
from chatvector.options import MergeOptions

__all__ = [
    "Recipe",
    "PairTerm",
    "VectorTerm",
    "MergeOptions",
    "RECIPE_FILENAME",
    "load_recipe",
    "parse_recipe",
    "check_ratio",
    "RecordedRecipe",
    "InputRecord",
    "OutputRecord",
    "read_recipe_file",
    "swept_recipe",
]

RECIPE_FILENAME = "chatvector_recipe.yaml"


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class PairTerm(_Strict):
    """``ratio · (chat − base)``, computed on the fly from the two models."""

    base: str
    chat: str
    ratio: Ratio = 1.0
    base_revision: str | None = None
    chat_revision: str | None = None
    base_path: str | None = None  # the absolute directory ``base`` meant when the output was made
    chat_path: str | None = None

    @field_validator("ratio")
    @classmethod
    def _usable_ratio(cls, ratio: Ratio) -> Ratio:
        return validate_ratio(ratio)


class VectorTerm(_Strict):
    """``ratio · vector``, from a directory written by ``chatvector extract``."""

    vector: str
    ratio: Ratio = 1.0
    vector_path: str | None = None  # the absolute directory ``vector`` meant when the output was made

    @field_validator("ratio")
    @classmethod
    def _usable_ratio(cls, ratio: Ratio) -> Ratio:
        return validate_ratio(ratio)


class Recipe(_Strict):
    """A full merge (``kind: merge``) or an extraction (``kind: extract``, no target)."""

    kind: Literal["merge", "extract"] = "merge"
    target: str | None = None
    target_revision: str | None = None
    target_path: str | None = None  # the absolute directory ``target`` meant when the output was made
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
        if self.kind == "extract" and (self.target or len(self.terms) != 1 or not isinstance(self.terms[0], PairTerm)):
            raise InputError("an extract recipe has exactly one (base, chat) term and no target")


def parse_recipe(data: object, source: str) -> Recipe:
    """Validate recipe data, turning pydantic's report into one InputError naming ``source``."""
    try:
        return Recipe.model_validate(data)
    except ValidationError as error:
        details = "; ".join(_describe(e) for e in error.errors()[:10])
        first = [
            str(p) for p in error.errors()[0]["loc"] if p not in _UNION_MEMBERS and not str(p).startswith("tuple[")
        ]
        raise InputError(f"{source}: invalid recipe ({details})", file=source, option=".".join(first) or None) from None
    except RecursionError:
        raise InputError(f"{source}: invalid recipe (nested too deeply)", file=source) from None


_KNOWN_KEYS = sorted(
    set(Recipe.model_fields)
    | set(PairTerm.model_fields)
    | set(VectorTerm.model_fields)
    | set(MergeOptions.model_fields)
    | set(RatioRule.model_fields)
)
# Union members appear in pydantic's error locations; they mean nothing to users.
_UNION_MEMBERS = ("PairTerm", "VectorTerm", "RatioRule", "float")


def _describe(error: Mapping[str, Any]) -> str:
    """One pydantic error as 'where: what', with a suggestion for a misspelled key."""
    # Union members (PairTerm | VectorTerm) appear in the location; they mean nothing to users.
    location = [str(p)[:80] for p in error["loc"] if p not in _UNION_MEMBERS and not str(p).startswith("tuple[")]
    message = error["msg"]
    if error["type"] == "extra_forbidden" and location:
        close = difflib.get_close_matches(location[-1], _KNOWN_KEYS, n=1)
        if close:
            message += f" (did you mean {close[0]!r}?)"
    return f"{'.'.join(location) or 'recipe'}: {message}"


class _Record(BaseModel):
    model_config = ConfigDict(extra="allow", frozen=True)


class InputRecord(_Record):
    """One input as an output's recipe records it: role, spelling, where it was, file fingerprints."""

    role: str
    ref: str
    path: str | None = None
    hub_id: str | None = None
    revision: str | None = None
    files: dict[str, dict[str, Any]] = {}


class OutputRecord(_Record):
    """What an output held when it was written: the SHA-256 of every non-weight file, and each
    weight file's size and header SHA-256 (names, dtypes, shapes and offsets of its tensors)."""

    files: dict[str, str] = {}
    weights: dict[str, dict[str, Any]] = {}


class RecordedRecipe(_Record):
    """``chatvector_recipe.yaml`` as written next to an output (the recipe plus provenance)."""

    chatvector_version: str | None = None
    recipe: dict[str, Any]
    inputs: list[InputRecord] = []
    embedding_policy: dict[str, str] = {}
    notes: list[str] = []
    output: OutputRecord | None = None


def read_recipe_file(path: Path, *, root: Path | None = None) -> tuple[Recipe, RecordedRecipe | None]:
    """Read a recipe file: one written by hand, or the ``chatvector_recipe.yaml`` of an output (then
    also returned as a :class:`RecordedRecipe`).

    Args:
        root: the directory the file must lie in once links are followed (an output's own recipe
            must not be a link to elsewhere); default: wherever it points.

    Raises:
        InputError: naming the file and, for a wrong type, the key.
    """
    path = Path(path)
    data = read_yaml(path, "recipe", root=root if root is not None else path.resolve().parent)
    if isinstance(data, dict) and "recipe" in data and "terms" not in data:
        recorded = validate(data, RecordedRecipe, path, "recipe")
        assert isinstance(recorded, RecordedRecipe)
        return parse_recipe(recorded.recipe, str(path)), recorded
    return parse_recipe(data, str(path)), None


def load_recipe(path: Path) -> Recipe:
    """Read a YAML recipe file (a hand-written one or an output's ``chatvector_recipe.yaml``)."""
    return read_recipe_file(path)[0]


def swept_recipe(recipe: Recipe, value: float, rule: str | None = None) -> Recipe:
    """``recipe`` at one sweep point: every term's ratio scaled by ``value``, or, with ``rule``, only
    the ratio of the rule whose ``match`` (or ``--ratio-rule`` regex) is exactly ``rule`` set to ``value``.

    Raises:
        ValueError: ``rule`` names no rule of the recipe.
        InputError: ``value``, or a ratio scaled by it, is not a usable ratio (``check_ratio``).
    """
    if rule is None:
        # model_copy does not validate: a point or product that is not finite, overflows float32 or
        # rounds to 0 is refused here, as every ratio is where it enters
        try:
            scaled = tuple(
                t.model_copy(update={"ratio": validate_ratio(scale_ratio(t.ratio, check_ratio(value)))})
                for t in recipe.terms
            )
        except ValueError as error:
            raise InputError(f"sweep point {value!r}: {error}", option="--ratios") from None
        return recipe.model_copy(update={"terms": scaled})
    found = False
    terms = []
    for term in recipe.terms:
        ratio, hit = set_rule_ratio(term.ratio, rule, value)
        found |= hit
        terms.append(term.model_copy(update={"ratio": ratio}))
    option_rules = []
    for text in recipe.options.ratio_rule:
        pattern, _ = parse_rule(text)
        found |= pattern == rule
        option_rules.append(f"{rule}={value!r}" if pattern == rule else text)
    if not found:
        known = [r.match for t in recipe.terms if isinstance(t.ratio, tuple) for r in t.ratio if r.match]
        known += [parse_rule(text)[0] for text in recipe.options.ratio_rule]
        raise ValueError(f"the recipe has no rule matching exactly {rule!r}; its rules are {known or 'none'}")
    options = recipe.options.model_copy(update={"ratio_rule": tuple(option_rules)})
    return recipe.model_copy(update={"terms": tuple(terms), "options": options})
