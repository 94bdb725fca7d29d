"""Ratio sweeps: merge at each ratio, evaluate, and recommend a ratio by a documented rule.

Each ratio's evaluation lands in ``OUT/ratios/r=R/results.json``; a sweep that is interrupted
resumes from the ratios already there. Merged models go to RAM (``/dev/shm``) when they are small,
else to ``OUT/models/r=R``, and are removed after their evaluation unless ``keep`` is set (then
they stay in ``OUT/models``; a 7B model is 14 GB per ratio).

The recommendation rule is in :mod:`chatvector.sweep.recommend`.
"""

from __future__ import annotations

import json
import logging
import os
import shutil
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import chatvector
from chatvector.errors import InputError
from chatvector.merge.recipe import PairTerm, Recipe, VectorTerm, load_recipe
from chatvector.options import RunOptions
from chatvector.sweep.recommend import recommend, row_from_results
from chatvector.sweep.report import write_reports

log = logging.getLogger(__name__)



@dataclass(frozen=True)
class SweepSpec:
    """What to sweep. Give base+chat+target, or vector+target, or a recipe (r scales every term)."""

    out: Path
    ratios: tuple[float, ...]
    lang: str
    suites: tuple[str, ...]
    target: str | None = None
    base: str | None = None
    chat: str | None = None
    vector: str | None = None
    recipe: Path | None = None
    keep: bool = False
    in_memory_limit: int = 2 * 10**9  # merge targets up to this many bytes in RAM (0: always on disk)
    threshold: float = 0.95
    toxicity: str = "lexicon"
    generation: dict[str, Any] = field(default_factory=dict)

    def recipe_at(self, ratio: float) -> Recipe:
        if self.recipe is not None:
            loaded = load_recipe(self.recipe)
            terms = tuple(t.model_copy(update={"ratio": t.ratio * ratio}) for t in loaded.terms)
            return loaded.model_copy(update={"terms": terms, **({"target": self.target} if self.target else {})})
        if not self.target:
            raise InputError("sweep needs --target (or a --recipe with a target)")
        if self.vector:
            return Recipe(target=self.target, terms=(VectorTerm(vector=self.vector, ratio=ratio),))
        if not (self.base and self.chat):
            raise InputError("sweep needs --base and --chat, or --vector, or --recipe")
        return Recipe(target=self.target, terms=(PairTerm(base=self.base, chat=self.chat, ratio=ratio),))


def ratio_name(ratio: float) -> str:
    return f"r={ratio:g}"


def _models_root(spec: SweepSpec) -> Path:
    """Where merged models go: RAM for small models that are not kept, else ``OUT/models``.

    A small model (target weights up to ``in_memory_limit`` bytes) is merged into a RAM-backed
    directory (``/dev/shm``) when it has room for it twice over, so a sweep of small models never
    touches the disk; it is still the same streaming merge, so results do not depend on where it ran.
    """
    disk = spec.out / "models"
    ram = Path("/dev/shm")
    if spec.keep or spec.in_memory_limit <= 0 or not ram.is_dir():
        return disk
    from chatvector.io.checkpoint import Checkpoint
    from chatvector.io.hub import resolve_model

    with Checkpoint.open(resolve_model(spec.recipe_at(1.0).target, "target")) as target:
        size = sum(info.nbytes for info in target.tensors.values())
    if size > spec.in_memory_limit or shutil.disk_usage(ram).free < 2 * size:
        return disk
    return ram / f"chatvector-sweep-{os.getpid()}"


def _evaluate_ratio(spec: SweepSpec, ratio: float, models_root: Path,
                    on_suite: Callable[[str, int], None] | None) -> dict:
    from chatvector.eval.backends import GenerationSettings, HFBackend
    from chatvector.eval.report import write_results
    from chatvector.eval.runner import evaluate, load_recipe_of

    model_dir = models_root / ratio_name(ratio)
    chatvector.merge(recipe=spec.recipe_at(ratio), out=model_dir, run=RunOptions(force=True))
    try:
        backend = HFBackend(model_dir, GenerationSettings(**spec.generation))
        result = evaluate(backend, list(spec.suites), spec.lang, toxicity=spec.toxicity, model=str(model_dir),
                          recipe=load_recipe_of(model_dir), on_suite=on_suite)
        write_results(result, spec.out / "ratios" / ratio_name(ratio))
    finally:
        if not spec.keep:
            shutil.rmtree(model_dir, ignore_errors=True)
    return result.to_json()


def _identity(spec: SweepSpec) -> dict[str, Any]:
    """What makes results comparable across ratios: a resumed sweep must not mix two setups."""
    recipe = spec.recipe_at(1.0).model_dump(mode="json")
    return {"recipe_at_1": recipe, "lang": spec.lang, "suites": sorted(spec.suites),
            "toxicity": spec.toxicity, "generation": dict(sorted(spec.generation.items()))}


def _check_resumable(spec: SweepSpec) -> None:
    marker = spec.out / "sweep-spec.json"
    identity = _identity(spec)
    if marker.exists():
        previous = json.loads(marker.read_text(encoding="utf-8"))
        if previous != identity:
            changed = sorted(k for k in identity.keys() | previous.keys() if identity.get(k) != previous.get(k))
            raise InputError(f"{spec.out} holds a sweep with different settings ({', '.join(changed)}); "
                             "resume with the same settings, or give a new -o directory")
    else:
        marker.write_text(json.dumps(identity, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")


def run_sweep(spec: SweepSpec, *, on_ratio: Callable[[float, bool], None] | None = None,
              on_suite: Callable[[str, int], None] | None = None) -> dict[str, Any]:
    """Merge and evaluate every ratio (skipping those already done); write sweep.json and reports."""
    if len(set(spec.ratios)) != len(spec.ratios):
        raise InputError(f"--ratios lists a ratio twice: {', '.join(f'{r:g}' for r in spec.ratios)}")
    spec.out.mkdir(parents=True, exist_ok=True)
    _check_resumable(spec)
    rows = []
    models_root: Path | None = None  # decided at the first ratio that needs a merge
    try:
        for ratio in spec.ratios:
            done = spec.out / "ratios" / ratio_name(ratio) / "results.json"
            if on_ratio is not None:
                on_ratio(ratio, done.exists())
            if done.exists():
                results = json.loads(done.read_text(encoding="utf-8"))
            else:
                models_root = models_root or _models_root(spec)
                results = _evaluate_ratio(spec, ratio, models_root, on_suite)
            rows.append(row_from_results(ratio, results))
    finally:
        if models_root is not None and models_root != spec.out / "models":
            shutil.rmtree(models_root, ignore_errors=True)  # this sweep's RAM directory
    summary = {
        "lang": spec.lang, "suites": list(spec.suites), "threshold": spec.threshold,
        "inputs": {k: getattr(spec, k) for k in ("target", "base", "chat", "vector")} | {
            "recipe": str(spec.recipe) if spec.recipe else None},
        "rows": rows, "recommendation": recommend(rows, spec.threshold),
    }
    (spec.out / "sweep.json").write_text(json.dumps(summary, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")
    write_reports(spec.out, summary)
    return summary
