"""Groups of tensors, each searched with its own ratio, and the ratio rules that express a candidate.

A group is a name and a regular expression searched in tensor names; the first group whose
expression matches a tensor owns it (the order of a recipe's rules). By default the groups are

- ``embeddings``: input embeddings and the output head (``embed|wte|wpe|lm_head``),
- ``norms``: every normalisation weight (``norm|ln_``),
- ``layers_1`` … ``layers_K``: the decoder layers cut into K bands of consecutive layers
  (early, middle, late for K = 3),

and tensors no group matches (rotary tables, a bias outside the layers...) form a group
``other`` when there are any. A candidate is one ratio per group; :func:`candidate_rules` writes it
as a normal rule list (``[{match: REGEX, ratio: R}, ..., {ratio: R}]``), so the recipe that holds
it is merged by ``chatvector merge --recipe`` like any other.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass

from chatvector.errors import InputError
from chatvector.merge.patterns import user_pattern
from chatvector.merge.ratios import RatioRule, layer_count

__all__ = [
    "Group",
    "Bounds",
    "default_groups",
    "parse_group",
    "parse_bounds",
    "assign",
    "candidate_rules",
    "OTHER",
]

OTHER = "other"
_EMBEDDINGS = r"embed|wte|wpe|lm_head"
_NORMS = r"norm|ln_"
_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")


@dataclass(frozen=True)
class Group:
    """A named set of tensors: those whose name ``pattern`` matches (None: every tensor left over)."""

    name: str
    pattern: str | None

    def matches(self, tensor: str) -> bool:
        return self.pattern is None or user_pattern(self.pattern).search(tensor) is not None


@dataclass(frozen=True)
class Bounds:
    """The range a group's ratio is searched in."""

    low: float = 0.0
    high: float = 2.0


def _band_pattern(layers: Sequence[int]) -> str:
    indices = "|".join(str(i) for i in layers)
    return rf"(?:^|\.)(?:layers|h|blocks|layer)\.(?:{indices})\."


def default_groups(names: Iterable[str], bands: int) -> list[Group]:
    """Embeddings and head, norms, and the layers in ``bands`` bands of consecutive layers.

    Raises:
        InputError: ``bands`` is below 1 or above the target's number of decoder layers.
    """
    layers = layer_count(names)
    if bands < 1:
        raise InputError(f"--bands {bands}: give 1 or more", option="--bands")
    if layers and bands > layers:
        raise InputError(
            f"--bands {bands}: the target has only {layers} decoder layers; give --bands {layers} or fewer",
            option="--bands",
        )
    groups = [Group("embeddings", _EMBEDDINGS), Group("norms", _NORMS)]
    for band in range(bands if layers else 0):
        members = range(band * layers // bands, (band + 1) * layers // bands)
        groups.append(Group(f"layers_{band + 1}", _band_pattern(members)))
    return groups


def compile_pattern(pattern: str, option: str) -> str:
    """``pattern`` once checked by the project's bounded compile (:func:`~chatvector.merge.patterns.
    user_pattern`: length, syntax, repeat counts, nesting), or an InputError naming ``option``."""
    try:
        user_pattern(pattern)
    except ValueError as error:
        raise InputError(f"{option}: {error}", option=option) from None
    return pattern


def parse_group(text: str) -> Group:
    """``NAME=REGEX`` (``--group``) as a :class:`Group`.

    Raises:
        InputError: no ``=``, a name that is not an identifier, or a regex that does not compile.
    """
    name, sep, pattern = text.partition("=")
    if not sep or not _NAME.match(name) or not pattern:
        raise InputError(
            f"--group {text!r} is not NAME=REGEX with NAME a word (letters, digits, _), e.g. attention=self_attn",
            option="--group",
        )
    return Group(name, compile_pattern(pattern, "--group"))


def parse_bounds(text: str) -> tuple[str, Bounds]:
    """``NAME=LO:HI`` (``--bounds``) as (name, bounds).

    Raises:
        InputError: not that form, numbers that do not parse or are not finite, or LO >= HI.
    """
    name, sep, rest = text.partition("=")
    low_text, colon, high_text = rest.partition(":")
    try:
        low, high = float(low_text), float(high_text)
    except ValueError:
        low = high = float("nan")
    if (
        not sep
        or not colon
        or not name
        or low != low
        or high != high
        or abs(low) == float("inf")
        or abs(high) == float("inf")
    ):
        raise InputError(
            f"--bounds {text!r} is not NAME=LO:HI with two numbers, e.g. embeddings=0:1", option="--bounds"
        )
    if low >= high:
        raise InputError(
            f"--bounds {text!r}: the low end {low:g} is not below the high end {high:g}", option="--bounds"
        )
    return name, Bounds(low, high)


def assign(groups: Sequence[Group], names: Iterable[str], fixed: Sequence[str] = ()) -> dict[str, list[str]]:
    """Which tensors each group owns (first match wins), with ``other`` for the rest when any.

    Tensors matched by one of the ``fixed`` regexes (``--ratio-rule``: ratios the user set;
    ``--exclude``: tensors kept as in the target) belong to no group.

    Raises:
        InputError: a group that owns no tensor, naming it and its regex.
    """
    owned: dict[str, list[str]] = {group.name: [] for group in groups}
    rest: list[str] = []
    for name in names:
        if any(user_pattern(pattern).search(name) for pattern in fixed):
            continue
        owner = next((group for group in groups if group.matches(name)), None)
        (owned[owner.name] if owner else rest).append(name)
    for group in groups:
        if not owned[group.name]:
            raise InputError(
                f"group {group.name} ({group.pattern}) matches no tensor of the target"
                + (
                    " that an earlier group, --ratio-rule or --exclude has not taken"
                    if _matches_any(group, names)
                    else ""
                )
                + "; check the regex against `chatvector inspect` or the target's tensor names",
                option="--group",
            )
    if rest:
        owned[OTHER] = rest
    return owned


def _matches_any(group: Group, names: Iterable[str]) -> bool:
    return any(group.matches(name) for name in names)


def candidate_rules(groups: Sequence[Group], ratios: Mapping[str, float], scale: float = 1.0) -> tuple[RatioRule, ...]:
    """A term's rule list giving each group its ratio (times ``scale``, a term's own ratio).

    The last rule has no ``match``: it is the ``other`` group's ratio when there is one, else the
    ratio of the last group, whose tensors it then also holds (its ``match`` is dropped, so a tensor
    the groups do not know cannot appear at merge time with a ratio the search never chose).
    """
    listed = [g for g in groups if g.name != OTHER]
    last = ratios[OTHER] if OTHER in ratios else ratios[listed[-1].name]
    head = listed if OTHER in ratios else listed[:-1]
    rules = [RatioRule(match=g.pattern, ratio=ratios[g.name] * scale) for g in head]
    return (*rules, RatioRule(ratio=last * scale))
