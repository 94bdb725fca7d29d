"""Typed schemas of the JSON files chatvector reads from a model directory.

Each schema lists only the keys chatvector uses, with the types transformers itself needs there
(strict: ``"32000"`` is not a vocabulary size, ``4096.0`` is not a hidden size); every other key is
allowed and passed on untouched. Integers are bounded, so a hostile number cannot reach numpy or
an allocation. :func:`chatvector.io.files.read_json` applies them and names the file and key of
any mismatch.
"""

from __future__ import annotations

import re
from typing import Annotated, Any

from pydantic import AfterValidator, BaseModel, ConfigDict, Field, RootModel

__all__ = [
    "ModelConfig",
    "GenerationConfig",
    "TokenizerConfig",
    "SpecialTokensMap",
    "ChatTemplateFile",
    "TokenizerJson",
    "SafetensorsIndex",
    "TokenIds",
    "AddedToken",
    "NamedTemplate",
    "TokenToId",
    "token_content",
    "MAX_TOKEN_ID",
    "AdapterConfigFile",
]

MAX_TOKEN_ID = 2**31 - 1  # token ids are int32 in every tokenizer library
Size = Annotated[int, Field(ge=0, le=2**40)]
TokenId = Annotated[int, Field(ge=0, le=MAX_TOKEN_ID)]
TokenIds = TokenId | list[TokenId]


class _Schema(BaseModel):
    model_config = ConfigDict(extra="allow", strict=True, frozen=True)


class AddedToken(_Schema):
    """The serialised ``AddedToken`` form of a special token (``{"content": "</s>", ...}``)."""

    content: str


Token = str | AddedToken


def token_content(value: Any) -> str | None:
    """The token string of a validated ``str`` or ``{"content": ...}`` value (None otherwise)."""
    if isinstance(value, dict):
        value = value.get("content")
    return value if isinstance(value, str) else None


class NamedTemplate(_Schema):
    """One entry of a list-form chat template (``[{"name": "default", "template": "..."}]``)."""

    name: str
    template: str


ChatTemplate = str | list[NamedTemplate]


class ModelConfig(_Schema):
    """``config.json``: the architecture keys preflight compares, vocabulary size, ties and ids."""

    architectures: list[str] | None = None
    model_type: str | None = None
    hidden_size: Size | list[Size] | None = None
    num_hidden_layers: Size | None = None
    num_attention_heads: Size | list[Size] | None = None
    num_key_value_heads: Size | list[Size] | None = None
    intermediate_size: Size | list[Size] | None = None
    head_dim: Size | None = None
    n_embd: Size | None = None
    n_layer: Size | None = None
    n_head: Size | None = None
    vocab_size: Size | None = None
    tie_word_embeddings: bool | None = None
    torch_dtype: str | None = None
    dtype: str | None = None
    eos_token_id: TokenIds | None = None
    bos_token_id: TokenIds | None = None
    pad_token_id: TokenIds | None = None
    auto_map: dict[str, Any] | None = None


class GenerationConfig(_Schema):
    """``generation_config.json``: the stop, start and padding ids chatvector translates."""

    eos_token_id: TokenIds | None = None
    bos_token_id: TokenIds | None = None
    pad_token_id: TokenIds | None = None


class SpecialTokensMap(_Schema):
    """``special_tokens_map.json``."""

    eos_token: Token | None = None
    bos_token: Token | None = None
    pad_token: Token | None = None
    unk_token: Token | None = None
    additional_special_tokens: list[Token] | None = None


class TokenizerConfig(SpecialTokensMap):
    """``tokenizer_config.json``: special tokens, the chat template, added tokens, remote code."""

    chat_template: ChatTemplate | None = None
    added_tokens_decoder: dict[str, AddedToken] | None = None
    # the old form is a list ["tokenization_x.X", null]
    auto_map: dict[str, Any] | list[str | None] | None = None


class ChatTemplateFile(_Schema):
    """``chat_template.json`` (how processors store their template)."""

    chat_template: ChatTemplate


class _TokenizerJsonAdded(_Schema):
    content: str
    special: bool = False
    id: TokenId | None = None


class TokenizerJson(_Schema):
    """``tokenizer.json``: only the added tokens are read here (the tokenizers library reads the rest)."""

    added_tokens: list[_TokenizerJsonAdded] | None = None


class SafetensorsIndex(_Schema):
    """``*.safetensors.index.json``: entries are checked one by one as paths (see io.checkpoint)."""

    weight_map: dict[str, Any] = Field(min_length=1)
    metadata: dict[str, Any] | None = None


class TokenToId(RootModel[dict[str, TokenId]]):
    """``vocab.json`` and ``added_tokens.json``: token string -> id."""

    model_config = ConfigDict(strict=True)


def _module_pattern(pattern: str) -> str:
    """A ``rank_pattern``/``alpha_pattern`` key: a regular expression PEFT matches against module
    names, so it must compile (``a{99999999999}`` overflows ``re``; refused here, not mid-merge)."""
    try:
        re.compile(pattern)
    except (re.error, OverflowError, RecursionError) as error:
        raise ValueError(f"{pattern[:80]!r} is not a valid regular expression: {error}") from None
    return pattern


LoraRank = Annotated[int, Field(ge=1, le=2**20)]
FiniteNumber = Annotated[float, Field(allow_inf_nan=False)]
ModulePattern = Annotated[str, AfterValidator(_module_pattern)]


class AdapterConfigFile(_Schema):
    """A PEFT adapter's ``adapter_config.json``: the keys that decide what merging the adapter adds
    (rank, alpha and their per-module patterns, rsLoRA) and those that make it something else
    (DoRA, transposed weights, whole modules), which chatvector must see to refuse them."""

    peft_type: str | None = None
    task_type: str | None = None
    base_model_name_or_path: str | None = None
    r: LoraRank
    lora_alpha: FiniteNumber | None = None
    rank_pattern: dict[ModulePattern, LoraRank] | None = None
    alpha_pattern: dict[ModulePattern, FiniteNumber] | None = None
    use_rslora: bool | None = None
    use_dora: bool | None = None
    fan_in_fan_out: bool | None = None
    lora_bias: bool | None = None
    bias: str | None = None
    target_modules: list[str] | str | None = None
    modules_to_save: list[str] | None = None
