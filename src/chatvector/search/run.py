"""``chatvector search``: choose a ratio per group of tensors by searching, then check the choice on
prompts the search never saw.

The steps, each in its own module:

1. :mod:`~chatvector.search.plan` checks every option against the suites' metrics and the target's
   tensor names (no model is merged before that);
2. :mod:`~chatvector.search.splits` splits the prompts into dev and held-out, and the dev prompts
   into growing stages;
3. the Optuna study (:mod:`~chatvector.search.study`, stored in ``OUT/search.db``) runs the uniform
   grid first, then its sampler's candidates; each candidate is a recipe
   (:meth:`~chatvector.search.plan.SearchPlan.recipe`) evaluated on the dev stages through a
   :class:`~chatvector.search.candidates.CandidateEvaluator`; after each stage but the last the
   objective is reported and Optuna's pruner may stop the trial;
4. the best feasible trial and the best feasible uniform ratio are evaluated on the held-out
   prompts and compared with the paired bootstrap of ``chatvector compare``; the optimism is the
   dev objective minus the held-out one;
5. ``search.json``, ``best-recipe.yaml`` and the reports (:mod:`~chatvector.search.report`) are
   written, and with ``merge_out`` the best model through the normal merge.
"""

from __future__ import annotations

import logging
import math
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import yaml

import chatvector
from chatvector.errors import InputError
from chatvector.eval.options import DataOptions
from chatvector.merge.recipe import Recipe
from chatvector.search.candidates import CandidateEvaluator, default_evaluator
from chatvector.search.objective import metric_value
from chatvector.search.plan import SearchPlan, SearchSpec, plan_search
from chatvector.search.splits import Splits, prepare_splits
from chatvector.search.study import (
    RESUMED,
    counted_trials,
    make_pruner,
    make_sampler,
    open_study,
    unfinished,
    waiting,
)
from chatvector.sweep import state

__all__ = ["SearchSpec", "run_search", "BEST_RECIPE", "SEARCH_JSON"]

log = logging.getLogger(__name__)

BEST_RECIPE = "best-recipe.yaml"
SEARCH_JSON = "search.json"
SPEC_FILE = "search-spec.json"

OnTrial = Callable[[dict[str, Any]], None]


def _identity(plan: SearchPlan, splits: Splits) -> dict[str, Any]:
    """What a resumed search must share with the one it resumes (not --trials or --timeout)."""
    from chatvector.eval.job import EvalJob, settings_of

    spec, options = plan.spec, plan.spec.options
    inputs = spec.inputs
    job = EvalJob(model="model", out=spec.out, backend=inputs.backend, generation=inputs.generation, judge=inputs.judge)
    settings = settings_of(job)
    settings.pop("data")  # the split files stand for the data
    return {
        "base_recipe": plan.base.model_dump(mode="json"),
        "groups": plan.describe(),
        "grid": list(options.grid_values),
        "objective": plan.objective,
        "requires": [str(r) for r in plan.requires],
        "sampler": options.sampler,
        "seed": options.search_seed,
        "stages": options.stages,
        "prune": not options.no_prune,
        "splits": splits.to_json(),
        "eval": settings,
    }


def _check_resumable(out: Path, identity: dict[str, Any]) -> None:
    marker = out / SPEC_FILE
    if marker.exists():
        before = state.read_json(marker, f"remove {out} to start afresh, or give a new -o")
        if before != identity:
            changed = ", ".join(sorted(k for k in identity.keys() | before.keys() if identity.get(k) != before.get(k)))
            raise InputError(
                f"{out} holds a search with other settings ({changed}); resume with the same settings, "
                "or give a new -o directory"
            )
    else:
        state.write_json(marker, identity)


class _Search:
    """One run of the study loop (see the module docstring)."""

    def __init__(self, plan: SearchPlan, splits: Splits, evaluator: CandidateEvaluator, on_trial: OnTrial | None):
        self.plan, self.splits, self.evaluator, self.on_trial = plan, splits, evaluator, on_trial
        self.spec, self.options = plan.spec, plan.spec.options
        self.target: dict[str, Any] | None = None
        self.study = open_study(self.spec.out / "search.db", plan.maximize)
        self.study.pruner = make_pruner(not self.options.no_prune, startup=max(2, len(self.options.grid_values)))

    # ------------------------------------------------------------ constraints
    def violations(self, metrics: dict[str, Any]) -> list[float]:
        return [r.violation(metrics, self.target) for r in self.plan.requires]

    # ------------------------------------------------------------ target reference
    def reference(self) -> None:
        """The target alone (every ratio 0) on the dev prompts, when a requirement is relative to it."""
        if not any(r.bound is None for r in self.plan.requires):
            return
        folder = self.spec.out / "reference" / "target-dev"
        done = folder / "results.json"
        if done.exists():
            self.target = state.read_json(done, f"remove {folder} to evaluate the target again")
            return
        recipe = self.plan.recipe(self.plan.uniform(0.0))
        with self.evaluator.candidate(recipe, "target") as evaluate:
            self.target = evaluate(self.splits.dev, folder)

    # ------------------------------------------------------------ trials
    def run(self) -> None:
        started = time.monotonic()
        while (counted := len(counted_trials(self.study))) < self.options.trials:
            self._one(counted)
            if self.options.timeout is not None and time.monotonic() - started >= self.options.timeout:
                log.info("--timeout reached after %d trials", counted + 1)
                return

    def _one(self, position: int) -> None:
        self.study.sampler = make_sampler(self.options.sampler, self.options.search_seed, position)
        grid = self.options.grid_values
        trial = unfinished(self.study)
        if trial is not None:
            log.info("resuming trial %d, left unfinished by a stopped search", trial.number)
        else:
            if position < len(grid) and not waiting(self.study):
                self.study.enqueue_trial({g.name: grid[position] for g in self.plan.groups})
            trial = self.study.ask()
        trial.set_user_attr("uniform", position < len(grid))
        ratios = {
            g.name: trial.suggest_float(g.name, self.plan.bounds[g.name].low, self.plan.bounds[g.name].high)
            for g in self.plan.groups
        }
        began = time.perf_counter()
        # Ctrl-C or an evaluation error leaves the trial running: the resumed search finishes it
        state, value = self._evaluate(trial, ratios)
        trial.set_user_attr("seconds", round(time.perf_counter() - began, 3))
        if value is None:
            self.study.tell(trial, state=state)
        else:
            self.study.tell(trial, value)
        if self.on_trial is not None:
            self.on_trial(_trial_row(self.study.trials[trial.number]))

    def _evaluate(self, trial: Any, ratios: dict[str, float]) -> tuple[Any, float | None]:
        import optuna

        State = optuna.trial.TrialState
        folder = self.spec.out / "trials" / f"{trial.number:04d}"
        stages = self.splits.stages
        with self.evaluator.candidate(self.plan.recipe(ratios), f"trial-{trial.number:04d}") as evaluate:
            for step, data in enumerate(stages, 1):
                results = evaluate(data, folder)
                metrics = {name: metric_value(results, name) for name in results.get("metrics", {})}
                value = metrics.get(self.plan.objective)
                trial.set_user_attr("metrics", metrics)
                trial.set_user_attr("stage", step)
                if value is None:
                    trial.set_user_attr("note", f"{self.plan.objective} was not measured")
                    self._constrain(trial, results)
                    return State.FAIL, None
                trial.report(value, step)
                if step < len(stages) and trial.should_prune():
                    self._constrain(trial, results)
                    return State.PRUNED, None
        self._constrain(trial, results)
        return State.COMPLETE, value

    def _constrain(self, trial: Any, results: dict[str, Any]) -> None:
        """Record the constraints of the trial's last results (Optuna keeps the first value set, so
        this runs once, as the trial ends; a resumed trial may have set them before it stopped)."""
        stored = self.study._storage.get_trial(trial._trial_id).constraints
        for requirement, violation in zip(self.plan.requires, self.violations(results), strict=True):
            if str(requirement) not in stored:
                trial.set_constraint(str(requirement), violation)


def _trial_row(trial: Any) -> dict[str, Any]:
    return {
        "number": trial.number,
        "state": trial.state.name.lower(),
        "params": dict(trial.params),
        "value": trial.value,
        "uniform": bool(trial.user_attrs.get("uniform")),
        "metrics": trial.user_attrs.get("metrics", {}),
        "intermediate": {str(k): v for k, v in sorted(trial.intermediate_values.items())},
        "constraints": {k: v if math.isfinite(v) else None for k, v in trial.constraints.items()},
        "feasible": all(math.isfinite(v) and v <= 0 for v in trial.constraints.values()),
        "stage": trial.user_attrs.get("stage"),
        "seconds": trial.user_attrs.get("seconds"),
        "resumed": bool(trial.user_attrs.get(RESUMED)),
        "note": trial.user_attrs.get("note"),
    }


def _best(rows: list[dict[str, Any]], maximize: bool, uniform: bool) -> dict[str, Any] | None:
    """The best complete trial (of the grid only with ``uniform``): feasible ones first, then by
    objective, ties to the earlier trial."""
    pool = [r for r in rows if r["state"] == "complete" and (r["uniform"] or not uniform)]
    if not pool:
        return None
    sign = 1.0 if maximize else -1.0
    return min(pool, key=lambda r: (not r["feasible"], -sign * r["value"], r["number"]))


def _heldout(search: _Search, best: dict[str, Any], uniform: dict[str, Any]) -> dict[str, Any]:
    """Both winners on the held-out prompts, paired (uniform first, so differences read best − uniform)."""
    from chatvector.eval.compare import compare_results

    plan, out = search.plan, search.spec.out
    results = {}
    for label, row in (("uniform", uniform), ("best", best)):
        with search.evaluator.candidate(plan.recipe(row["params"]), f"heldout-{label}") as evaluate:
            results[label] = evaluate(search.splits.heldout, out / "heldout" / label)
    comparison = compare_results(
        ("uniform", results["uniform"]), ("best", results["best"]), seed=search.options.search_seed
    )
    held = {label: metric_value(r, plan.objective) for label, r in results.items()}
    optimism = {
        label: None if held[label] is None else row["value"] - held[label]
        for label, row in (("best", best), ("uniform", uniform))
    }
    return {
        "metrics": {label: {k: metric_value(r, k) for k in r.get("metrics", {})} for label, r in results.items()},
        "intervals": {label: _intervals(r) for label, r in results.items()},
        "n": {
            label: {k: (r["metrics"][k] or {}).get("n") for k in r.get("metrics", {})} for label, r in results.items()
        },
        "comparison": comparison.to_json(),
        "optimism": optimism,
    }


def _intervals(results: dict[str, Any]) -> dict[str, list[float | None]]:
    return {
        name: [entry.get("ci_low"), entry.get("ci_high")]
        for name, entry in (results.get("metrics") or {}).items()
        if isinstance(entry, dict)
    }


def write_recipe(recipe: Recipe, path: Path) -> None:
    """A recipe file ``chatvector merge --recipe`` reads back to the same recipe."""
    data = recipe.model_dump(mode="json", exclude_none=True, exclude_defaults=True)
    data["terms"] = [term.model_dump(mode="json", exclude_none=True) for term in recipe.terms]
    state.write_text(
        path,
        "# chatvector search: the best candidate; `chatvector merge --recipe` on this file makes it again.\n"
        + yaml.safe_dump(data, sort_keys=False, allow_unicode=True),
    )


def run_search(
    spec: SearchSpec, *, evaluator: CandidateEvaluator | None = None, on_trial: OnTrial | None = None
) -> dict[str, Any]:
    """Search, evaluate the result on held-out prompts, write the outputs; returns search.json's content.

    Args:
        evaluator: how candidates are evaluated (default: in place where a sweep would be, else merged
            into RAM or disk and loaded; see :func:`~chatvector.search.candidates.default_evaluator`).
        on_trial: called with each finished trial's row.

    Raises:
        InputError: a bad option (before any merge), or OUT holding a search with other settings.
    """
    plan = plan_search(spec)
    options = spec.options
    splits = prepare_splits(
        spec.inputs.data,
        spec.out.resolve() / "splits",
        seed=options.search_seed,
        heldout=options.heldout,
        stages=options.stages,
    )
    evaluator = evaluator or default_evaluator(spec.inputs)  # refuses --in-place, --serve-reload before OUT is made
    spec.out.mkdir(parents=True, exist_ok=True)
    _check_resumable(spec.out, _identity(plan, splits))
    splits.write()
    try:
        search = _Search(plan, splits, evaluator, on_trial)
        search.reference()
        search.run()
        rows = [_trial_row(t) for t in search.study.get_trials(deepcopy=False)]
        best, uniform = _best(rows, plan.maximize, False), _best(rows, plan.maximize, True)
        if best is None or uniform is None:
            raise InputError("no trial completed (every one was pruned or failed); see search.db, or raise --trials")
        heldout = _heldout(search, best, uniform)
    finally:
        evaluator.close()
    summary = _summary(plan, splits, rows, best, uniform, heldout, search.target)
    _write_outputs(plan, summary)
    return summary


def _summary(
    plan: SearchPlan,
    splits: Splits,
    rows: list[dict[str, Any]],
    best: dict[str, Any],
    uniform: dict[str, Any],
    heldout: dict[str, Any],
    target: dict[str, Any] | None,
) -> dict[str, Any]:
    spec = plan.spec
    return {
        "objective": plan.objective,
        "direction": "maximize" if plan.maximize else "minimize",
        "requires": [str(r) for r in plan.requires],
        "target_dev": None if target is None else {k: metric_value(target, k) for k in target.get("metrics", {})},
        "sampler": spec.options.sampler,
        "seed": spec.options.search_seed,
        "grid": list(spec.options.grid_values),
        "groups": plan.describe(),
        "splits": splits.to_json(),
        "trials": rows,
        "best": best,
        "best_uniform": uniform,
        "heldout": heldout,
        "lang": spec.inputs.data.lang,
    }


def _write_outputs(plan: SearchPlan, summary: dict[str, Any]) -> None:
    from chatvector.search.report import write_reports

    out = plan.spec.out
    best_recipe = plan.recipe(summary["best"]["params"])
    write_recipe(best_recipe, out / BEST_RECIPE)
    state.write_json(out / SEARCH_JSON, summary)
    write_reports(out, summary)
    if plan.spec.merge_out is not None:
        chatvector.merge(recipe=out / BEST_RECIPE, out=plan.spec.merge_out, run=plan.spec.inputs.merge_run)


def dev_data(splits: Splits) -> DataOptions:
    """The whole dev split as eval data (for tests and tools)."""
    return splits.dev
