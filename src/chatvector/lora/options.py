"""The options of ``chatvector lora``, each defined once: the command's flags are generated from
:class:`LoraOptions` (``chatvector.cli.options``) and :func:`~chatvector.lora.extract.extract_lora`
and :func:`~chatvector.lora.extract.scale_adapter` check their arguments with it."""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from chatvector.errors import InputError

__all__ = ["LoraOptions", "lora_options"]


class LoraOptions(BaseModel):
    """What the adapter holds and which model it is meant for."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    rank: int | None = Field(
        None, ge=1, le=2**20, description="LoRA rank r of every linear layer's truncated SVD (needed to extract)."
    )
    ratio: float | None = Field(
        None,
        description="Fold this ratio into lora_B (default 1); alone with an ADAPTER as SOURCE: a rescaled copy.",
    )
    target: str | None = Field(
        None,
        description="The model the adapter is meant for (default: the vector's base model): recorded as "
        "base_model_name_or_path, and the adapter is planned against its tensors and vocabulary.",
    )
    keep_whole: bool = Field(
        False,
        description="Store tensors a LoRA cannot hold (norms, embeddings) whole as modules_to_save (they then "
        "replace the target's); needs --base/--chat.",
    )

    @field_validator("ratio")
    @classmethod
    def _finite_ratio(cls, ratio: float | None) -> float | None:
        from chatvector.merge.ratios import check_ratio  # numpy: when a ratio is given, not for --help

        return None if ratio is None else check_ratio(ratio)


def lora_options(**values: Any) -> LoraOptions:
    """:class:`LoraOptions` from keyword arguments; a refused value is an InputError naming its flag."""
    try:
        return LoraOptions.model_validate(values)
    except ValidationError as error:
        first = error.errors()[0]
        flag = "--" + str(first["loc"][0]).replace("_", "-") if first["loc"] else "--ratio"
        raise InputError(
            f"{flag} {values.get(str(first['loc'][0])) if first['loc'] else ''}: "
            f"{first['msg'].removeprefix('Value error, ')}",
            option=flag,
        ) from None
