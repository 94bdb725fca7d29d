"""How a candidate recipe is evaluated: one small seam, "this Recipe on these prompts → results".

:class:`CandidateEvaluator` is all the search needs: ``with evaluator.candidate(recipe, name) as
evaluate:`` prepares the model the recipe describes, and ``evaluate(data, out)`` runs a normal
evaluation of it on the prompts ``data`` names, into ``out``, returning results.json's content.
The model stays prepared while the block runs, so the dev stages of one trial (and the held-out
evaluation) share it.

:class:`MergedEvaluator`, the default, merges the recipe with the streaming merge into the folder
a sweep would use (RAM under ``/dev/shm`` for small models, else ``OUT/models``; see
:func:`chatvector.sweep.run.merge_root`) and evaluates it with :func:`chatvector.eval.job.run_eval`,
so every backend and eval option works as in ``sweep``. An evaluator that updates a loaded
model's parameters in place fits the same seam.
"""

from __future__ import annotations

import hashlib
import json
import shutil
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager, ExitStack, contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

import chatvector
from chatvector.eval.options import DataOptions
from chatvector.merge.recipe import Recipe
from chatvector.sweep import ram
from chatvector.sweep.run import SweepSpec, merge_root

__all__ = [
    "Evaluate",
    "CandidateEvaluator",
    "MergedEvaluator",
    "InPlaceEvaluator",
    "ReloadingEvaluator",
    "default_evaluator",
    "recipe_digest",
]

Evaluate = Callable[[DataOptions, Path], dict[str, Any]]


class CandidateEvaluator(Protocol):
    """Prepares a candidate model and evaluates it on given prompts (see the module docstring)."""

    def candidate(self, recipe: Recipe, name: str) -> AbstractContextManager[Evaluate]:
        """The candidate ``recipe`` ready to evaluate (``name``: a short, unique folder name)."""
        ...

    def close(self) -> None:
        """Release what the evaluator holds (temporary folders, a loaded model)."""
        ...


def recipe_digest(recipe: Recipe) -> str:
    """A short content name of a recipe (what names a temporary model in the replies cache)."""
    return hashlib.sha256(json.dumps(recipe.model_dump(mode="json"), sort_keys=True).encode()).hexdigest()[:16]


@dataclass
class MergedEvaluator:
    """Merge each candidate into RAM or ``OUT/models`` and evaluate it with the normal eval job.

    ``sweep`` carries the inputs and every merge and eval option (its ``keep`` keeps each merged
    candidate in ``OUT/models/NAME``).
    """

    sweep: SweepSpec
    _root: Path | None = field(default=None, init=False)
    _ram: ram.RamFolder | None = field(default=None, init=False)

    def _models(self) -> Path:
        if self._root is None:
            root = merge_root(self.sweep)
            if root == ram.RAM:  # a locked folder of this run's own, removed on close
                ram.remove_stale()
                self._ram = ram.RamFolder().__enter__()
                root = self._ram.path
            self._root = root
        return self._root

    @contextmanager
    def candidate(self, recipe: Recipe, name: str) -> Iterator[Evaluate]:
        model_dir = self._models() / name
        chatvector.merge(recipe=recipe, out=model_dir, run=self.sweep.merge_run.model_copy(update={"force": True}))
        model_id = f"merge:{recipe_digest(recipe)}"
        try:
            yield lambda data, out: self._evaluate(model_dir, model_id, data, out)
        finally:
            if not self.sweep.keep:
                shutil.rmtree(model_dir, ignore_errors=True)

    def _evaluate(
        self,
        model_dir: Path,
        model_id: str,
        data: DataOptions,
        out: Path,
        *,
        backend: Any = None,
        recipe: dict[str, Any] | None = None,
    ) -> dict[str, Any]:
        """The normal eval job on one candidate: on ``backend`` when one is open (in place, or a
        reloaded server), else on a backend the job opens for ``model_dir``."""
        from chatvector.eval.job import EvalJob, run_eval

        spec = self.sweep
        job = EvalJob(
            model=str(model_dir),
            out=out,
            backend=spec.backend,
            generation=spec.generation,
            judge=spec.judge,
            data=data,
            model_id=model_id,
            recipe=recipe,
        )
        return run_eval(job, backend=backend).result.to_json()

    def close(self) -> None:
        if self._ram is not None:
            self._ram.close()
            self._ram = None


@dataclass
class InPlaceEvaluator(MergedEvaluator):
    """Load the model once and merge each candidate straight into its parameters (``--in-place``).

    The first candidate is merged as ``merge`` merges it and loaded by the backend (which so gets
    the output's config, tokenizer and chat template); its files are removed once loaded unless
    ``keep``. Every candidate is then computed by the merge engine into the loaded parameters
    (:meth:`~chatvector.eval.backends.hf.HFBackend.merge_in_place`: bit for bit what loading its
    merged model gives) and evaluated by the normal evaluation on the open backend, so no model is
    written or loaded per candidate or per stage. ``keep`` still writes each candidate's model.
    """

    _stack: ExitStack = field(default_factory=ExitStack, init=False)
    _backend: Any = field(default=None, init=False)

    def _open(self, recipe: Recipe) -> Any:
        from chatvector.eval.backends import open_backend

        loaded = self._models() / "loaded"
        chatvector.merge(recipe=recipe, out=loaded, run=self.sweep.merge_run.model_copy(update={"force": True}))
        backend = self._stack.enter_context(open_backend(str(loaded), self.sweep.backend, self.sweep.generation))
        shutil.rmtree(loaded, ignore_errors=True)  # loaded: the files are no longer needed
        return backend

    @contextmanager
    def candidate(self, recipe: Recipe, name: str) -> Iterator[Evaluate]:
        if self._backend is None:
            self._backend = self._open(recipe)
        model_id = f"merge:{recipe_digest(recipe)}"
        report = self._backend.merge_in_place(recipe, self.sweep.merge_run, model_id=model_id)
        model_dir = self._models() / name  # written only with keep; else the model id names the weights
        if self.sweep.keep:
            chatvector.merge(recipe=recipe, out=model_dir, run=self.sweep.merge_run.model_copy(update={"force": True}))
        yield lambda data, out: self._evaluate(
            model_dir, model_id, data, out, backend=self._backend, recipe=report.recipe
        )

    def close(self) -> None:
        self._stack.close()
        self._backend = None
        super().close()


@dataclass
class ReloadingEvaluator(MergedEvaluator):
    """Start the ``--serve`` engine once and tell it to load each candidate (``--serve-reload``).

    The first candidate is merged and the server started on it (its log in ``OUT/server.log``);
    that directory stays until the server stops. Each later candidate is merged the same way, the
    running server loads it (the engine's documented reload, :mod:`chatvector.eval.serve_reload`),
    and its files are removed once loaded unless ``keep``. A candidate's stages share its weights;
    a failed reload is an error naming the engine, and the server is stopped on ``close``.
    """

    _stack: ExitStack = field(default_factory=ExitStack, init=False)
    _backend: Any = field(default=None, init=False)
    _launched: Path | None = field(default=None, init=False)

    @contextmanager
    def candidate(self, recipe: Recipe, name: str) -> Iterator[Evaluate]:
        from chatvector.eval.backends import open_backend
        from chatvector.eval.evaluation import load_recipe_of
        from chatvector.sweep.reload import merge_to

        spec = self.sweep
        model_dir = self._models() / name
        model_id = f"merge:{recipe_digest(recipe)}"
        try:
            merge_to(spec, recipe, model_dir)
            recorded = load_recipe_of(model_dir)
            if self._backend is None:
                opened = open_backend(
                    str(model_dir), spec.backend, spec.generation, log_dir=spec.out, model_id=model_id
                )
                self._backend = self._stack.enter_context(opened)
                self._launched = model_dir  # kept while the server runs (a server that failed to start: removed)
            else:
                self._backend.reload_weights(str(model_dir), model_id)
        finally:
            if model_dir != self._launched and not spec.keep:
                shutil.rmtree(model_dir, ignore_errors=True)  # loaded (or refused): the files are not needed

        yield lambda data, out: self._evaluate(model_dir, model_id, data, out, backend=self._backend, recipe=recorded)

    def close(self) -> None:
        self._stack.close()  # stops the server
        self._backend = None
        if self._launched is not None and not self.sweep.keep:
            shutil.rmtree(self._launched, ignore_errors=True)
        self._launched = None
        super().close()


def default_evaluator(sweep: SweepSpec) -> CandidateEvaluator:
    """In place when the sweep would run in place (``--in-place``, or by default where the backend
    can and the model fits); with ``--serve``, one server reloaded per candidate where the engine
    documents a reload (``--serve-reload``); else merged and loaded per candidate."""
    from chatvector.sweep.inplace import in_place_wanted
    from chatvector.sweep.reload import reload_wanted

    reloading = reload_wanted(sweep)  # first: --serve-reload without a server that can is refused
    if in_place_wanted(sweep):
        return InPlaceEvaluator(sweep)
    return ReloadingEvaluator(sweep) if reloading else MergedEvaluator(sweep)
