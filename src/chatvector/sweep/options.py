"""The sweep's own options, defined once: the CLI's flags are generated from :class:`SweepOptions`
(``chatvector.cli.options.flags``), and the ratio checks here are the ones :func:`run_sweep
<chatvector.sweep.run.run_sweep>` applies to a :class:`~chatvector.sweep.run.SweepSpec` made in
Python.
"""

from __future__ import annotations

import math
from typing import Annotated, Any

from pydantic import AfterValidator, BaseModel, BeforeValidator, ConfigDict, Field

from chatvector.options import parse_size

__all__ = ["SweepOptions", "DEFAULT_RATIOS", "parse_ratios", "check_ratios", "ratio_name"]

DEFAULT_RATIOS = "0,0.25,0.5,0.75,1.0"


def ratio_name(ratio: float) -> str:
    """``r=0.5``: the ratio's folder under ``OUT/ratios`` and its label in reports (6 significant digits)."""
    return f"r={ratio + 0.0:g}"  # + 0.0: -0 is 0


def check_ratios(ratios: tuple[float, ...]) -> tuple[float, ...]:
    """Refuse an empty list, a ratio that is not finite or vanishes in float32, and two ratios
    that print alike (they would share a folder and a label: ``0.5`` and ``0.5000001``).

    Raises:
        ValueError: naming the ratio and what to give instead.
    """
    from chatvector.merge.ratios import check_ratio  # numpy: imported when checking, not for --help

    if not ratios:
        raise ValueError("give at least one ratio, comma-separated, e.g. 0,0.5,1.0")
    names: dict[str, float] = {}
    for ratio in ratios:
        try:
            check_ratio(ratio)
        except ValueError as error:
            raise ValueError(f"{ratio}: {error}") from None
        name = ratio_name(ratio)
        if name in names:
            same = "a ratio is listed twice" if names[name] == ratio else f"{names[name]!r} and {ratio!r}"
            raise ValueError(
                f"{same}: both would be {name} (one folder, one label); give ratios that differ within 6 "
                "significant digits"
            )
        names[name] = ratio
    return ratios


def parse_ratios(text: str) -> tuple[float, ...]:
    """``0,0.5,1.0`` as checked ratios (see :func:`check_ratios`).

    Raises:
        ValueError: text that is not comma-separated numbers, or ratios :func:`check_ratios` refuses.
    """
    try:
        ratios = tuple(float(part) for part in text.split(",") if part.strip())
    except ValueError:
        raise ValueError(f"{text!r}: give comma-separated numbers, e.g. 0,0.5,1.0") from None
    return check_ratios(ratios)


def _checked_ratios(text: str) -> str:
    parse_ratios(text)
    return text


def _ram_limit(value: Any) -> int:
    if isinstance(value, str) and value.strip() == "0" or value == 0:
        return 0
    return parse_size(value)


def _share(value: float) -> float:
    if not (math.isfinite(value) and 0.0 <= value <= 1.0):
        raise ValueError("give a share between 0 and 1")
    return value


class SweepOptions(BaseModel):
    """What ``chatvector sweep`` sweeps and how (beside the merge's and eval's own option groups)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    target: str | None = Field(None, description="CP model (optional with --recipe).")
    base: str | None = Field(None, description="Base model.")
    chat: str | None = Field(None, description="Chat model tuned from the base.")
    vector: str | None = Field(None, description="A vector directory instead of --base/--chat.")
    recipe: str | None = Field(
        None,
        description="A recipe; each ratio scales all its terms.",
        json_schema_extra={
            "metavar": "PATH",
            "help_for": {"search": "A recipe whose terms have plain ratios; each group's ratio scales them."},
        },
    )
    rule: str | None = Field(
        None,
        description="Sweep only the ratio of the rule whose match (or --ratio-rule regex) is exactly REGEX; the "
        "other ratios stay fixed.",
        json_schema_extra={"metavar": "REGEX"},
    )
    ratios: Annotated[str, AfterValidator(_checked_ratios)] = Field(
        DEFAULT_RATIOS,
        description="The ratios to merge and evaluate, comma-separated. r = 0 (the target alone) is always "
        "evaluated: it is the baseline every ratio is tested against.",
        json_schema_extra={"metavar": "R,R,..."},
    )
    keep: bool = Field(
        False,
        description="Keep each merged model in OUT/models (default: removed after its evaluation).",
        json_schema_extra={"help_for": {"search": "Keep each candidate's merged model in OUT/models/trial-NNNN."}},
    )
    in_place: bool | None = Field(
        None,
        description="Load the model once and merge each ratio into its weights (bit for bit the merged "
        "model; nothing written unless --keep). Default: in place when the backend can (hf, one process, "
        "one device) and the target fits in memory; served engines restart per ratio.",
        json_schema_extra={
            "help_for": {
                "search": "Load the model once and merge each candidate into its weights (bit for bit the merged "
                "model; nothing written unless --keep). Default: in place when the backend can (hf, one process, "
                "one device) and the target fits in memory; otherwise each candidate is merged and loaded per stage."
            }
        },
    )
    serve_reload: bool | None = Field(
        None,
        description="With --serve: start the server once and tell it to load each ratio's merged model, for "
        "engines that document a weight reload (sglang). Default: where the engine can; --no-serve-reload "
        "restarts the server per ratio (always so for vllm, transformers, llama.cpp).",
        json_schema_extra={
            "help_for": {
                "search": "With --serve: start the server once and tell it to load each candidate's merged model, "
                "for engines that document a weight reload (sglang). Default: where the engine can; "
                "--no-serve-reload restarts the server per candidate."
            }
        },
    )
    ram_limit: Annotated[int, BeforeValidator(_ram_limit)] = Field(
        2 * 10**9,
        description="Merge targets up to this size in RAM (/dev/shm) instead of on disk; 0 = always on disk.",
        json_schema_extra={"metavar": "SIZE", "cli_default": "2GB"},
    )
    threshold: Annotated[float, AfterValidator(_share)] = Field(
        0.95, description="Minimum target-language share to recommend."
    )
    rank_by: str | None = Field(
        None,
        description="Rank the eligible ratios by this metric instead of the instruction-following ones (e.g. "
        "lm_eval.tmmluplus.acc).",
        json_schema_extra={"metavar": "METRIC"},
    )
    workers: int = Field(
        1, ge=1, description="Ratios evaluated at once in local processes (the CPU threads are split between them)."
    )
    ray: str | None = Field(
        None,
        description="Run each ratio as a Ray task: auto joins the running cluster (or starts a local one), "
        "ADDRESS joins that one.",
        json_schema_extra={"metavar": "auto|ADDRESS"},
    )
    gpus_per_ratio: float = Field(0.0, ge=0.0, description="GPUs each Ray task reserves.")
    shared_dir: str | None = Field(
        None,
        description="With --ray: a folder every node sees, where merged models are written.",
        json_schema_extra={"metavar": "DIR"},
    )

    @property
    def ratio_values(self) -> tuple[float, ...]:
        """``ratios`` as numbers."""
        return parse_ratios(self.ratios)
