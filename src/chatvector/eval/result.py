"""What an evaluation produced, as results.json holds it (:class:`EvalResult`).

Its own module so that what reads and writes results (:mod:`chatvector.eval.report`) does not
import what produces them (:mod:`chatvector.eval.evaluation`).
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass, field
from typing import Any

from chatvector._version import __version__
from chatvector.eval.metrics import Metric

__all__ = ["EvalResult"]


@dataclass
class EvalResult:
    """Everything an evaluation produced; ``to_json`` is what results.json holds."""

    lang: str
    backend: dict[str, Any]
    suites: dict[str, dict[str, Any]] = field(default_factory=dict)
    metrics: dict[str, dict[str, Any]] = field(default_factory=dict)
    model: str | None = None
    recipe: dict[str, Any] | None = None
    judge: dict[str, Any] | None = None
    toxicity_scorer: str | None = None
    data: dict[str, dict[str, Any]] = field(default_factory=dict)
    seed: int = 0
    environment: dict[str, Any] = field(default_factory=dict)

    def metric(self, name: str) -> float | None:
        entry = self.metrics.get(name)
        return None if entry is None else entry["value"]

    def add(self, metric: Metric) -> None:
        """Record one aggregated metric."""
        self.metrics[metric.name] = metric.as_dict()

    def to_json(self) -> dict[str, Any]:
        return {
            "chatvector_version": __version__,
            "created": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
            "model": self.model,
            "recipe": self.recipe,
            "lang": self.lang,
            "backend": self.backend,
            "judge": self.judge,
            "toxicity_scorer": self.toxicity_scorer,
            "seed": self.seed,
            "data": self.data,
            "environment": self.environment,
            "metrics": self.metrics,
            "suites": self.suites,
        }
