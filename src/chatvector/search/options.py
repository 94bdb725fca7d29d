"""The options of ``chatvector search``, each defined once: the command's flags are generated from
:class:`SearchOptions` (``chatvector.cli.options``), and the library takes the same model."""

from __future__ import annotations

import math
from typing import Annotated, Literal

from pydantic import AfterValidator, BaseModel, ConfigDict, Field

from chatvector.sweep.options import parse_ratios

__all__ = ["SearchOptions"]


def _grid(text: str) -> str:
    parse_ratios(text)
    return text


def _share(value: float) -> float:
    if not (math.isfinite(value) and 0.0 < value < 1.0):
        raise ValueError("give a share between 0 and 1 (both sides need prompts), e.g. 0.5")
    return value


class SearchOptions(BaseModel):
    """What ``chatvector search`` optimises, over which groups, and how (beside the merge's and eval's options)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    objective: str | None = Field(
        None,
        description="The metric to optimise on the dev prompts, e.g. verifiable.pass_rate (required).",
        json_schema_extra={"metavar": "METRIC"},
    )
    require: tuple[str, ...] = Field(
        (),
        description="A constraint on the dev prompts: METRIC>=VALUE, METRIC<=VALUE, or METRIC>=target (the "
        "target's own value, every ratio 0). Repeatable.",
        json_schema_extra={"metavar": "METRIC>=VALUE"},
    )
    group: tuple[str, ...] = Field(
        (),
        description="A group of tensors with its own ratio: NAME=REGEX, searched in tensor names, first match "
        "wins (repeatable). Default: embeddings and head, norms, and --bands bands of layers.",
        json_schema_extra={"metavar": "NAME=REGEX"},
    )
    bands: int = Field(
        3, ge=1, description="Bands of consecutive layers in the default groups (3: early, middle, late)."
    )
    bounds: tuple[str, ...] = Field(
        (),
        description="The range of a group's ratio, NAME=LO:HI (default 0:2; repeatable).",
        json_schema_extra={"metavar": "NAME=LO:HI"},
    )
    grid: Annotated[str, AfterValidator(_grid)] = Field(
        "0.5,1.0,1.5",
        description="Uniform ratios (every group alike) evaluated first, as baseline trials.",
        json_schema_extra={"metavar": "R,R,..."},
    )
    trials: int = Field(30, ge=1, description="Trials in all, the grid's included.")
    timeout: float | None = Field(
        None,
        gt=0,
        description="Start no new trial after this many seconds (one runs at least).",
        json_schema_extra={"metavar": "SECONDS"},
    )
    sampler: Literal["tpe", "cmaes"] = Field("tpe", description="Optuna's sampler: TPE or CMA-ES.")
    search_seed: int = Field(0, description="Seed of the sampler and of the dev/held-out split.")
    heldout: Annotated[float, AfterValidator(_share)] = Field(
        0.5, description="Share of each suite's prompts held out from the search."
    )
    stages: int = Field(
        2,
        ge=1,
        description="Growing parts of the dev prompts a trial is scored on; after each but the last, "
        "Optuna's median pruner may stop a trial below the median.",
    )
    no_prune: bool = Field(False, description="Score every trial on all dev prompts (no pruning).")
    merge: str | None = Field(
        None, description="Write the best model here (through the normal merge).", json_schema_extra={"metavar": "OUT"}
    )

    @property
    def grid_values(self) -> tuple[float, ...]:
        return parse_ratios(self.grid)
