"""Merge options, each defined once: name, type, default and help.

:class:`MergeOptions` holds the policies that change a merge's result; they are part of every
recipe and recorded with every output. :class:`RunOptions` holds how a run goes (threads, shard
size, what to allow); none of them changes a single output byte's value. The command line's flags,
the recipe's validation and the Python API are all generated from these two models (see
``chatvector.cli.options``), so a default or a help text cannot drift between them.
"""

from __future__ import annotations

import math
import re
from typing import Annotated, Any, Literal

from pydantic import BaseModel, BeforeValidator, ConfigDict, Field, field_validator, model_validator

from chatvector.merge.methods import method_class, parse_method, registered
from chatvector.merge.patterns import user_pattern

__all__ = ["MergeOptions", "RunOptions", "EmbeddingPolicy", "OutputDtype", "parse_size", "DEFAULT_SHARD_SIZE"]

EmbeddingPolicy = Literal["auto", "align", "add", "skip"]
TemplateSource = Literal["auto", "chat", "target"]
TEMPLATE_SOURCES = ("auto", "chat", "target")  # any other --chat-template value is a file
OutputDtype = Literal["float32", "bfloat16", "float16"]
OutputFormat = Literal["safetensors", "gguf"]
GGUFType = Literal["f32", "f16", "bf16", "q8_0"]
DEFAULT_SHARD_SIZE = 5 * 10**9

_UNITS = {
    "": 1,
    "b": 1,
    "kb": 10**3,
    "mb": 10**6,
    "gb": 10**9,
    "tb": 10**12,
    "kib": 2**10,
    "mib": 2**20,
    "gib": 2**30,
    "tib": 2**40,
}


def parse_size(value: Any) -> int:
    """A byte size from ``5GB``, ``500MB``, ``1GiB``, ``123456`` or an int.

    Raises:
        ValueError: for anything else (negative, zero, NaN, unknown unit), with an example.
    """
    if isinstance(value, int) and not isinstance(value, bool):
        number, unit = float(value), ""
    else:
        cleaned = str(value).strip().lower().replace(" ", "")
        found = re.fullmatch(r"(\d+(?:\.\d+)?|\.\d+)([kmgt]?i?b?)", cleaned)
        if found is None:
            raise ValueError(f"{value!r} is not a size; write it like 5GB, 500MB or 2GiB")
        number, unit = float(found.group(1)), found.group(2)
    if unit not in _UNITS or not math.isfinite(number) or number * _UNITS[unit] < 1:
        raise ValueError(f"{value!r} is not a size; write it like 5GB, 500MB or 2GiB")
    return int(number * _UNITS[unit])


def _method_help(name: str) -> str:
    """``ties (density): summary``, for ``--method``'s help."""
    method = method_class(name)
    keys = ", ".join(
        k if info.is_required() else f"{k}={info.default!r}".replace("True", "true").replace("False", "false")
        for k, info in method.Params.model_fields.items()
    )
    return f"{name}" + (f" ({keys})" if keys else "") + f": {method.summary}"


class _Options(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class MergeOptions(_Options):
    """Policies that change the result; all recorded in the output's recipe and model card."""

    embeddings: EmbeddingPolicy = Field(
        "auto",
        description="How embedding and output-head rows combine when vocabularies differ: align (add the "
        "delta to rows of tokens both vocabularies have, matched by token string), add (equal "
        "shapes only), skip (keep the target's), or auto (add for identical vocabularies, else "
        "align).",
    )
    exclude: tuple[str, ...] = Field(
        (),
        description="Keep tensors whose name matches this regular expression as in the target (repeatable).",
        json_schema_extra={
            "metavar": "REGEX",
            "help_for": {
                "extract": "Leave tensors whose name matches this regular expression out of the vector (repeatable)."
            },
        },
    )
    dtype: OutputDtype | None = Field(
        None,
        description="Output dtype (default: each tensor keeps the target's dtype).",
        json_schema_extra={"help_for": {"extract": "Dtype of the vector's tensors."}},
    )
    ratio_rule: tuple[str, ...] = Field(
        (),
        description="Give tensors whose name matches REGEX the ratio R instead of the term's "
        "(repeatable; first match wins), e.g. 'lm_head|embed_tokens=0'.",
        json_schema_extra={"metavar": "REGEX=R"},
    )
    method: str | None = Field(
        None,
        description="Merge method and its parameters, NAME:key=value,... (default: task_arithmetic, "
        "every entry of every delta). " + "; ".join(_method_help(n) for n in registered()) + ".",
        json_schema_extra={"metavar": "NAME[:key=value,...]"},
    )
    sparsify: str | None = Field(
        None,
        description="The older spelling of --method for TIES and DARE: ties:density=D or dare:density=D,seed=S.",
        json_schema_extra={"metavar": "METHOD:density=D[,seed=S]"},
    )
    map: tuple[str, ...] = Field(
        (),
        description="Tensor-name mapping from the chat side to the target, as name prefixes "
        "(repeatable), e.g. 'model.=model.language_model.'; found from the checkpoints "
        "when not given.",
        json_schema_extra={"metavar": "FROM=TO"},
    )
    strict_lineage: bool = Field(
        False, description="Fail (instead of warning) when the target does not look like a descendant of the base."
    )
    chat_template: str = Field(
        "auto",
        description="Chat template and generation stop ids of the output: chat (the chat model's), "
        "target (the target's), auto (chat, but the target's for a multimodal target), or a FILE "
        "holding a Jinja chat template (stop ids as for auto).",
        json_schema_extra={"metavar": "auto|chat|target|FILE"},
    )

    @field_validator("ratio_rule")
    @classmethod
    def _valid_rules(cls, rules: tuple[str, ...]) -> tuple[str, ...]:
        from chatvector.merge.ratios import parse_rule  # numpy: loaded when a rule is given, not for --help

        for rule in rules:
            parse_rule(rule)
        return rules

    @field_validator("sparsify")
    @classmethod
    def _valid_sparsify(cls, text: str | None) -> str | None:
        from chatvector.merge.sparsify import parse_sparsify

        return None if text is None else parse_sparsify(text).text()

    @field_validator("method")
    @classmethod
    def _valid_method(cls, text: str | None) -> str | None:
        return None if text is None else parse_method(text).text()

    @model_validator(mode="after")
    def _one_method(self) -> MergeOptions:
        if self.method is not None and self.sparsify is not None:
            raise ValueError("give --method or --sparsify (its older spelling), not both")
        return self

    @field_validator("chat_template")
    @classmethod
    def _valid_template(cls, value: str) -> str:
        if value.strip() in TEMPLATE_SOURCES:
            return value.strip()
        if not value.strip():
            raise ValueError("give auto, chat, target, or the path of a chat template file")
        return value  # a file, read (by the model-file rule) before the merge starts

    @field_validator("map")
    @classmethod
    def _valid_map(cls, pairs: tuple[str, ...]) -> tuple[str, ...]:
        for pair in pairs:
            source, sep, _ = pair.partition("=")
            if not sep:
                raise ValueError(f"{pair!r} is not FROM=TO (name prefixes), e.g. 'model.=model.language_model.'")
        return pairs

    @field_validator("exclude")
    @classmethod
    def _valid_regexes(cls, patterns: tuple[str, ...]) -> tuple[str, ...]:
        for pattern in patterns:
            user_pattern(pattern)  # raises ValueError naming the pattern
        return patterns


class RunOptions(_Options):
    """How a merge runs; none of these changes a value of the result."""

    force: bool = Field(False, description="Replace an existing non-empty OUT.")
    allow_pickle: bool = Field(
        False, description="Read pickled .bin checkpoints (with torch.load(weights_only=True); needs torch)."
    )
    allow_nonfinite: bool = Field(False, description="Proceed when an input or result tensor holds NaN or Inf.")
    shard_size: Annotated[int, BeforeValidator(parse_size)] = Field(
        DEFAULT_SHARD_SIZE,
        description="Largest output shard (e.g. 2GB, 500MB).",
        json_schema_extra={"metavar": "SIZE", "cli_default": "5GB"},
    )
    dry_run: bool = Field(
        False,
        description="Check everything and print the plan (each tensor's policy, ratios and method, bytes to "
        "read and write, the output's files) without writing anything.",
    )
    threads: int = Field(
        2,
        ge=1,
        le=64,
        description="Worker threads streaming chunks (each overlaps its I/O with the other's arithmetic).",
    )
    # The output's file format (a GGUF's tensor type rounds values, as --dtype does).
    format: OutputFormat = Field(
        "safetensors",
        description="Output format: safetensors (a model directory) or gguf (one file for llama.cpp, "
        "Ollama, LM Studio; Llama, Mistral and Qwen2).",
    )
    gguf_type: GGUFType = Field("f16", description="Tensor type of a --format gguf file (norms and biases stay f32).")
