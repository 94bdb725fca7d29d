"""The Optuna study of a search: stored in ``OUT/search.db``, seeded so that a resumed search ends
as an uninterrupted one would.

Optuna does the optimisation (TPE or CMA-ES, the median pruner); this module only decides how
the study is stored and seeded:

- the study lives in SQLite (``optuna.storages.RDBStorage``), so a killed search finds its trials;
- a trial left running by a killed process is marked failed and ``interrupted`` when the search
  resumes, and does not count;
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

__all__ = ["open_study", "make_sampler", "settle_interrupted", "counted_trials", "make_pruner", "STUDY_NAME"]

STUDY_NAME = "chatvector-search"
INTERRUPTED = "interrupted"


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


def settle_interrupted(study: Any) -> int:
    """Mark trials a killed search left running (or queued) as failed and interrupted; how many."""
    import optuna

    stale = study.get_trials(deepcopy=False, states=(optuna.trial.TrialState.RUNNING, optuna.trial.TrialState.WAITING))
    for trial in stale:
        study._storage.set_trial_user_attr(trial._trial_id, INTERRUPTED, True)
        study._storage.set_trial_state_values(trial._trial_id, optuna.trial.TrialState.FAIL)
    return len(stale)


def counted_trials(study: Any) -> list[Any]:
    """The trials that count: finished, and not interrupted by a killed process."""
    return [t for t in study.get_trials(deepcopy=False) if t.state.is_finished() and not t.user_attrs.get(INTERRUPTED)]


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
