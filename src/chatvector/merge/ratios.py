"""Ratios per module and per layer: rules and layer schedules, resolved to one ratio per tensor.

A term's ratio is a number, a layer schedule or a list of rules (first match wins)::

    ratio: 0.5
    ratio: {layers: [0.2, 1.0]}                    # interpolated over the decoder layers
    ratio: [{match: "lm_head|embed_tokens", ratio: 0}, {match: mlp, layers: [0.5, 1.0]}, {ratio: 1.0}]

A ``match`` is a regular expression searched in the output tensor's name; the last rule has no
``match`` and gives the ratio of every other tensor. A schedule's values are spread evenly from
the first decoder layer to the last and interpolated linearly between them (as mergekit's
gradients are); a tensor outside the layers takes the first value when it is an embedding (it
comes before the layers) and the last value otherwise (final norm, output head).

``MergeOptions.ratio_rule`` (``--ratio-rule REGEX=R``) adds rules in front of every term's own
ratio. Everything resolves at plan time to one float per (tensor, term), so the engine's work
and speed do not change.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass

import numpy as np
from pydantic import BaseModel, ConfigDict, field_validator, model_validator

from chatvector.merge.patterns import user_pattern

__all__ = [
    "RatioRule",
    "Ratio",
    "check_ratio",
    "parse_rule",
    "RatioResolver",
    "layer_of",
    "layer_count",
    "scale_ratio",
    "set_rule_ratio",
    "describe_ratio",
    "summarize_ratios",
]

_LAYER = re.compile(r"(?:^|\.)(?:layers|h|blocks|layer)\.(\d+)\.")
_EMBEDDING = re.compile(r"embed|wte|wpe")


def check_ratio(ratio: float) -> float:
    """A ratio must be finite, and one that is not 0 must stay non-zero in float32 (the engine's precision).

    Raises:
        ValueError: naming the ratio and why it cannot be used.
    """
    if not np.isfinite(ratio):
        raise ValueError(f"ratio {ratio} is not a finite number")
    if abs(ratio) > float(np.finfo(np.float32).max):
        raise ValueError(f"ratio {ratio!r} does not fit in float32")
    if ratio != 0 and np.float32(ratio) == 0:
        raise ValueError(f"ratio {ratio!r} rounds to 0 in float32, so it would change nothing; use 0 or a larger ratio")
    return ratio


def _check_regex(pattern: str) -> str:
    user_pattern(pattern)  # raises ValueError naming the pattern
    return pattern


class RatioRule(BaseModel):
    """``{match: REGEX, ratio: R}`` or ``{match: REGEX, layers: [R0, ..., Rn]}``; no ``match``: every tensor."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    match: str | None = None
    ratio: float | None = None
    layers: tuple[float, ...] | None = None

    @field_validator("match")
    @classmethod
    def _valid_match(cls, match: str | None) -> str | None:
        return None if match is None else _check_regex(match)

    @field_validator("ratio")
    @classmethod
    def _valid_ratio(cls, ratio: float | None) -> float | None:
        return None if ratio is None else check_ratio(ratio)

    @field_validator("layers")
    @classmethod
    def _valid_layers(cls, layers: tuple[float, ...] | None) -> tuple[float, ...] | None:
        if layers is None:
            return None
        if not layers:
            raise ValueError("a layer schedule needs at least one value, e.g. layers: [0.2, 1.0]")
        return tuple(check_ratio(value) for value in layers)

    @model_validator(mode="after")
    def _one_value(self) -> RatioRule:
        if (self.ratio is None) == (self.layers is None):
            raise ValueError("a ratio rule has either 'ratio: R' or 'layers: [R0, ..., Rn]' (exactly one)")
        return self


Ratio = float | RatioRule | tuple[RatioRule, ...]


def validate_ratio(ratio: Ratio) -> Ratio:
    """Check a term's ratio: a rule list ends with a catch-all (a rule without ``match``) and has only one."""
    if isinstance(ratio, (int, float)):
        return check_ratio(float(ratio))
    rules = (ratio,) if isinstance(ratio, RatioRule) else ratio
    if not rules:
        raise ValueError("an empty rule list; give a number, {layers: [...]}, or rules ending with {ratio: R}")
    for position, rule in enumerate(rules):
        last = position == len(rules) - 1
        if rule.match is None and not last:
            raise ValueError(
                f"rule {position + 1} has no 'match', so the rules after it are never used; "
                "put the rule without 'match' last"
            )
        if rule.match is not None and last:
            raise ValueError(
                f"the last rule ({rule.match!r}) needs no 'match': it gives the ratio of every "
                "other tensor; add one, e.g. {ratio: 1.0}"
            )
    return ratio


def parse_rule(text: str) -> tuple[str, float]:
    """``REGEX=R`` (``--ratio-rule``) as (regex, ratio); the ratio follows the last ``=``.

    Raises:
        ValueError: with an example of the expected form.
    """
    pattern, sep, value = text.rpartition("=")
    if not sep or not pattern:
        raise ValueError(f"{text!r} is not REGEX=RATIO, e.g. 'lm_head|embed_tokens=0' or 'mlp=0.8'")
    try:
        ratio = float(value)
    except ValueError:
        raise ValueError(f"{text!r}: {value!r} is not a number; write REGEX=RATIO, e.g. 'mlp=0.8'") from None
    return _check_regex(pattern), check_ratio(ratio)


def layer_of(name: str) -> int | None:
    """The decoder-layer index in a tensor name (``model.layers.7.mlp...`` → 7), or None."""
    found = _LAYER.search(name)
    return int(found.group(1)) if found else None


def layer_count(names: Iterable[str]) -> int:
    """How many decoder layers the names span (the largest layer index + 1; 0 without layers)."""
    indices = [i for i in (layer_of(n) for n in names) if i is not None]
    return max(indices) + 1 if indices else 0


def schedule_value(values: tuple[float, ...], name: str, layers: int) -> float:
    """A layer schedule's ratio for tensor ``name`` in a model of ``layers`` decoder layers."""
    index = layer_of(name)
    if index is None:
        return values[0] if _EMBEDDING.search(name) else values[-1]
    position = index / (layers - 1) if layers > 1 else 0.0
    anchors = np.linspace(0.0, 1.0, len(values))
    return float(np.interp(position, anchors, values))


def _rule_value(rule: RatioRule, name: str, layers: int) -> float:
    if rule.layers is not None:
        return schedule_value(rule.layers, name, layers)
    assert rule.ratio is not None  # a rule has a ratio or layers (validated when it is made)
    return float(rule.ratio)


@dataclass(frozen=True)
class RatioResolver:
    """Resolve one term's ratio for every tensor: option rules first, then the term's own ratio."""

    ratio: Ratio
    option_rules: tuple[tuple[re.Pattern[str], float], ...] = ()
    layers: int = 0

    @classmethod
    def build(cls, ratio: Ratio, option_rules: Iterable[str], layers: int) -> RatioResolver:
        compiled = tuple((user_pattern(p), r) for p, r in (parse_rule(text) for text in option_rules))
        return cls(ratio, compiled, layers)

    @property
    def is_plain(self) -> bool:
        """A single number with no rules: the ratio of every tensor, resolved as before."""
        return isinstance(self.ratio, (int, float)) and not self.option_rules

    def rule_for(self, name: str) -> str | None:
        """Which rule decided ``name``'s ratio (its regex), None for a plain ratio or a catch-all."""
        for pattern, _ in self.option_rules:
            if pattern.search(name):
                return pattern.pattern
        if isinstance(self.ratio, tuple):
            for rule in self.ratio:
                if rule.match is None or user_pattern(rule.match).search(name):
                    return rule.match
        return None

    def resolve(self, name: str) -> float:
        """The ratio of tensor ``name`` (first matching rule wins)."""
        for pattern, ratio in self.option_rules:
            if pattern.search(name):
                return ratio
        if isinstance(self.ratio, (int, float)):
            return float(self.ratio)
        if isinstance(self.ratio, RatioRule):
            return _rule_value(self.ratio, name, self.layers)
        for rule in self.ratio:
            if rule.match is None or user_pattern(rule.match).search(name):
                return _rule_value(rule, name, self.layers)
        raise AssertionError("validated rule lists end with a catch-all")  # pragma: no cover

    def unused_rules(self, names: Iterable[str]) -> list[str]:
        """Rule regexes that match none of ``names`` (probably a typo)."""
        listed = list(names)
        patterns = [p.pattern for p, _ in self.option_rules]
        if isinstance(self.ratio, tuple):
            patterns += [r.match for r in self.ratio if r.match is not None]
        return [p for p in patterns if not any(user_pattern(p).search(n) for n in listed)]


def _scaled_rule(rule: RatioRule, factor: float) -> RatioRule:
    if rule.layers is not None:
        return rule.model_copy(update={"layers": tuple(v * factor for v in rule.layers)})
    assert rule.ratio is not None  # a rule has a ratio or layers (validated when it is made)
    return rule.model_copy(update={"ratio": rule.ratio * factor})


def scale_ratio(ratio: Ratio, factor: float) -> Ratio:
    """``ratio`` with every number in it (plain, rule, schedule) multiplied by ``factor``."""
    if isinstance(ratio, (int, float)):
        return ratio * factor
    if isinstance(ratio, RatioRule):
        return _scaled_rule(ratio, factor)
    return tuple(_scaled_rule(rule, factor) for rule in ratio)


def set_rule_ratio(ratio: Ratio, match: str, value: float) -> tuple[Ratio, bool]:
    """``ratio`` with the rule whose ``match`` is exactly ``match`` set to ``value``; and whether one was."""
    if not isinstance(ratio, tuple):
        return ratio, False
    found = False
    rules = []
    for rule in ratio:
        if rule.match == match:
            rule = RatioRule(match=match, ratio=value)
            found = True
        rules.append(rule)
    return tuple(rules), found


def describe_ratio(ratio: Ratio) -> str:
    """A short text for a model card: ``0.5``, ``layers 0.2→1``, ``mlp: 0.8; else 1``."""
    if isinstance(ratio, (int, float)):
        return f"{ratio:g}"

    def one(rule: RatioRule) -> str:
        value = f"{rule.ratio:g}" if rule.layers is None else "layers " + "→".join(f"{v:g}" for v in rule.layers)
        return value if rule.match is None else f"`{rule.match}`: {value}"

    rules = (ratio,) if isinstance(ratio, RatioRule) else ratio
    return "; ".join(one(r) if r.match is not None or len(rules) == 1 else "else " + one(r) for r in rules)


def _group(name: str) -> tuple[str, str]:
    """(layer key or "", module) for grouping: ``model.layers.3.mlp.up_proj.weight`` → ("layer 3", "mlp.up_proj")."""
    stem = name.removesuffix(".weight").removesuffix(".bias")
    found = _LAYER.search(stem)
    if not found:
        return "", stem
    return f"layer {int(found.group(1))}", stem[found.end() :]


def summarize_ratios(resolved: Iterable[tuple[str, float]]) -> dict[str, float]:
    """Group resolved (tensor, ratio) pairs for the provenance.

    One entry per layer when all of a layer's tensors share a ratio (``layer 3: 0.8``), else one
    per module of the layer (``layer 3 mlp.up_proj: 0.8``); tensors outside the layers by module
    (``lm_head: 0``). A module whose weight and bias differ is listed tensor by tensor.
    """
    cells: dict[tuple[str, str], dict[str, float]] = {}
    for name, ratio in resolved:
        cells.setdefault(_group(name), {})[name] = ratio
    summary: dict[str, float] = {}
    layers: dict[str, set[float]] = {}
    for (layer, _), members in cells.items():
        if layer:
            layers.setdefault(layer, set()).update(members.values())
    for (layer, module), members in cells.items():
        if layer and len(layers[layer]) == 1:
            summary[layer] = next(iter(layers[layer]))
            continue
        key = f"{layer} {module}" if layer else module
        if len(set(members.values())) == 1:
            summary[key] = next(iter(members.values()))
        else:
            summary.update(members)
    return summary
