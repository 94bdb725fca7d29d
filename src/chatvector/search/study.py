"""The Optuna study of a search: stored in ``OUT/search.db``, seeded so that a resumed search ends
as an uninterrupted one would.

Optuna does the optimisation (TPE or CMA-ES, the median pruner); this module only decides how
the study is stored and seeded:

- the study lives in SQLite (``optuna.storages.RDBStorage``), so a killed search finds its trials;
- a trial left running by a killed process (or stopped by Ctrl-C or an evaluation error) stays
  ``RUNNING`` in the study; the resumed search evaluates that same trial (same number, same
  parameters, the sampler's own records intact) before asking for a new one, so the study ends
  as if nothing had happened;
- before each new trial the sampler is made afresh with a seed drawn from (seed, number of trials
  that count). The sampler's choice then depends on the seed and the finished trials only, never
  on how many processes the search took, so a resumed search asks for the same candidates;
- the uniform grid is enqueued one point at a time (``study.enqueue_trial``), the k-th point as the
  k-th trial, for the same reason.
"""

from __future__ import annotations

import hashlib
import warnings
from pathlib import Path
from typing import Any

from chatvector.extras import require

__all__ = [
    "open_study",
    "make_sampler",
    "unfinished",
    "waiting",
    "counted_trials",
    "make_pruner",
    "STUDY_NAME",
    "RESUMED",
]

STUDY_NAME = "chatvector-search"
RESUMED = "resumed"


def open_study(path: Path, maximize: bool) -> Any:
    """The study stored in ``path`` (SQLite), created when new."""
    require("search", "optuna")
    import optuna

    storage = optuna.storages.RDBStorage(f"sqlite:///{path.resolve()}")
    return optuna.create_study(
        storage=storage,
        study_name=STUDY_NAME,
        direction="maximize" if maximize else "minimize",
        load_if_exists=True,
    )


def unfinished(study: Any) -> Any | None:
    """The trial a stopped search left running, as a :class:`optuna.trial.Trial` to finish, or None."""
    import optuna

    running = study.get_trials(deepcopy=False, states=(optuna.trial.TrialState.RUNNING,))
    if not running:
        return None
    first = min(running, key=lambda t: t.number)
    study._storage.set_trial_user_attr(first._trial_id, RESUMED, True)
    return optuna.trial.Trial(study, first._trial_id)


def waiting(study: Any) -> bool:
    """Whether a trial is queued (a grid point enqueued just before a search stopped)."""
    import optuna

    return bool(study.get_trials(deepcopy=False, states=(optuna.trial.TrialState.WAITING,)))


def counted_trials(study: Any) -> list[Any]:
    """The finished trials."""
    return [t for t in study.get_trials(deepcopy=False) if t.state.is_finished()]


def _seed(seed: int, position: int) -> int:
    return int.from_bytes(hashlib.sha256(f"{seed}:{position}".encode()).digest()[:4], "little")


def make_sampler(kind: str, seed: int, position: int) -> Any:
    """A fresh ``kind`` sampler (``tpe`` or ``cmaes``) for the trial at ``position``.

    TPE takes the constraints each trial records (``Trial.set_constraint``) into its model; CMA-ES
    does not read them, so with it the constraints only decide which trial is best.
    """
    import optuna

    trial_seed = _seed(seed, position)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
        if kind == "cmaes":
            require("CMA-ES search", "cmaes")
            return optuna.samplers.CmaEsSampler(seed=trial_seed, warn_independent_sampling=False)
        return optuna.samplers.TPESampler(seed=trial_seed)


def make_pruner(enabled: bool, startup: int) -> Any:
    """The median pruner (a trial below the median of earlier ones at the same stage stops), or none."""
    import optuna

    if not enabled:
        return optuna.pruners.NopPruner()
    return optuna.pruners.MedianPruner(n_startup_trials=startup, n_warmup_steps=0)
