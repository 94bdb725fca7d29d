"""What a search will do, checked before any work: groups, bounds, grid, objective, constraints.

:func:`plan_search` reads only options, prompt-set names and the target's safetensors headers, so
every mistake (an unknown metric, a ``--require`` that names nothing, bounds that cross, a group
that matches no tensor) is one :class:`~chatvector.errors.InputError` before a model is merged.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from chatvector.errors import InputError
from chatvector.merge.ratios import parse_rule
from chatvector.merge.recipe import Recipe
from chatvector.search.groups import (
    OTHER,
    Bounds,
    Group,
    assign,
    candidate_rules,
    default_groups,
    parse_bounds,
    parse_group,
)
from chatvector.search.objective import Requirement, check_metric, known_metrics, parse_requirement
from chatvector.search.options import SearchOptions
from chatvector.sweep.run import SweepSpec

__all__ = ["SearchSpec", "SearchPlan", "plan_search"]


@dataclass(frozen=True)
class SearchSpec:
    """A search: its folder, the inputs with every merge and eval option (``inputs``, a sweep's spec:
    target, base/chat, vector or recipe, ``keep``, the RAM limit), and the search's own options."""

    out: Path
    inputs: SweepSpec
    options: SearchOptions = field(default_factory=SearchOptions)

    @property
    def merge_out(self) -> Path | None:
        return None if self.options.merge is None else Path(self.options.merge)


@dataclass(frozen=True)
class SearchPlan:
    """The checked search: the recipe at ratio 1, groups with their tensors and bounds, objective."""

    spec: SearchSpec
    base: Recipe
    groups: tuple[Group, ...]
    owned: dict[str, list[str]]
    bounds: dict[str, Bounds]
    objective: str
    maximize: bool
    requires: tuple[Requirement, ...]
    known: dict[str, bool] = field(default_factory=dict)

    def recipe(self, ratios: dict[str, float]) -> Recipe:
        """The candidate with ``ratios`` per group: each term's ratio becomes the group rules, scaled by
        the term's own ratio in the base recipe (1 unless ``--recipe`` says otherwise)."""
        terms = tuple(
            term.model_copy(update={"ratio": candidate_rules(self.groups, ratios, scale=float(term.ratio))})  # type: ignore[arg-type]
            for term in self.base.terms
        )
        return self.base.model_copy(update={"terms": terms})

    def uniform(self, ratio: float) -> dict[str, float]:
        return {group.name: ratio for group in self.groups}

    def describe(self) -> dict[str, Any]:
        return {
            g.name: {
                "pattern": g.pattern,
                "low": self.bounds[g.name].low,
                "high": self.bounds[g.name].high,
                "tensors": len(self.owned[g.name]),
            }
            for g in self.groups
        }


def _target_names(recipe: Recipe, allow_pickle: bool) -> list[str]:
    from chatvector.io.checkpoint import Checkpoint
    from chatvector.io.hub import resolve_model

    assert recipe.target is not None  # checked by check_complete
    with Checkpoint.open(
        resolve_model(recipe.target, "target", revision=recipe.target_revision), allow_pickle=allow_pickle
    ) as target:
        return list(target.tensors)


def _check_eval(spec: SearchSpec) -> dict[str, bool]:
    from chatvector.eval.backends import kind_of
    from chatvector.eval.job import suites_of

    inputs = spec.inputs
    if not kind_of(inputs.backend).capabilities.loads_weights:
        raise InputError(
            "a search evaluates a new model per trial: use the hf backend or --serve, not a fixed --base-url",
            option="--backend",
        )
    if inputs.data.lm_eval:
        raise InputError(
            "--lm-eval tasks cannot be split into dev and held-out prompts yet; search on the suites "
            "(--suite, --data) and run lm-eval on the best model afterwards",
            option="--lm-eval",
        )
    return known_metrics(suites_of(inputs.data), inputs.data.lang)


def _base_recipe(spec: SearchSpec) -> Recipe:
    base = spec.inputs.recipe_at(1.0)
    base.check_complete()
    for position, term in enumerate(base.terms, 1):
        if not isinstance(term.ratio, int | float):
            raise InputError(
                f"term {position} of the recipe has its own ratio rules; the search sets the ratio per "
                "group, so give that term a plain ratio (its scale)",
                option="--recipe",
            )
    return base


def _groups(spec: SearchSpec, names: list[str], fixed: list[str]) -> tuple[tuple[Group, ...], dict[str, list[str]]]:
    groups = [parse_group(text) for text in spec.options.group] or default_groups(names, spec.options.bands)
    seen: set[str] = set()
    for group in groups:
        if group.name in seen or group.name == OTHER:
            raise InputError(f"--group {group.name}: each group needs its own name (not {OTHER!r})", option="--group")
        seen.add(group.name)
    owned = assign(groups, names, fixed)
    if OTHER in owned:
        groups.append(Group(OTHER, None))
    return tuple(groups), owned


def _bounds(spec: SearchSpec, groups: tuple[Group, ...]) -> dict[str, Bounds]:
    bounds = {group.name: Bounds() for group in groups}
    for text in spec.options.bounds:
        name, given = parse_bounds(text)
        if name not in bounds:
            raise InputError(
                f"--bounds {text!r}: no group {name!r}; the groups are {', '.join(bounds)}", option="--bounds"
            )
        bounds[name] = given
    for ratio in spec.options.grid_values:
        for name, b in bounds.items():
            if not b.low <= ratio <= b.high:
                raise InputError(
                    f"--grid {ratio:g} lies outside the bounds of group {name} ({b.low:g}:{b.high:g}); "
                    "widen --bounds or drop that grid point",
                    option="--grid",
                )
    return bounds


def plan_search(spec: SearchSpec) -> SearchPlan:
    """Check everything that can be checked without merging or evaluating; see the module docstring.

    Raises:
        InputError: the first problem found, naming the option and the fix.
    """
    options = spec.options
    if options.objective is None:
        raise InputError("search needs --objective METRIC, e.g. verifiable.pass_rate", option="--objective")
    known = _check_eval(spec)
    objective = check_metric(options.objective, known, "--objective")
    requires = tuple(parse_requirement(text) for text in options.require)
    for requirement in requires:
        check_metric(requirement.metric, known, "--require")
    base = _base_recipe(spec)
    # tensors whose ratio the user fixed (--ratio-rule) or that are not merged (--exclude) are searched by no group
    fixed = [parse_rule(text)[0] for text in base.options.ratio_rule] + list(base.options.exclude)
    names = _target_names(base, spec.inputs.merge_run.allow_pickle)
    groups, owned = _groups(spec, names, fixed)
    bounds = _bounds(spec, groups)
    return SearchPlan(spec, base, groups, owned, bounds, objective, known[objective], requires, known)
