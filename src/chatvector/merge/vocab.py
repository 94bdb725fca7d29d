"""Vocabularies: which embedding row of one model is which row of another, by token string.

A CP model often extends its base's vocabulary (Chinese-LLaMA: 49,953 tokens against Llama-2's
32,000). The chat vector's embedding rows are then added to the target's rows of the *same token
string*; tokens new in the target keep their own rows.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from chatvector.errors import CheckpointError
from chatvector.io.files import read_json

log = logging.getLogger(__name__)

# Embedding-like tensors: one row per token. Matched by name *and* by a first dimension equal to
# the vocabulary size, so a hidden-size tensor is never mistaken for one.
VOCAB_TENSOR_MARKERS = (
    "embed_tokens", "lm_head", "wte", "word_embeddings", "tok_embeddings", "embed_in",
    "embed_out", "output.weight", "shared.weight", "embeddings.weight",
)


@dataclass(frozen=True)
class Vocabulary:
    """Token string → id of one tokenizer (added tokens included)."""

    source: Path
    token_to_id: dict[str, int]

    def __len__(self) -> int:
        return len(self.token_to_id)


def load_vocabulary(model_dir: Path) -> Vocabulary | None:
    """Read the vocabulary of the tokenizer stored in ``model_dir``, or None if there is none.

    ``tokenizer.json`` is read with the ``tokenizers`` library (fast, no model code). Older
    repositories with only ``tokenizer.model`` or ``vocab.json`` go through ``AutoTokenizer``
    without remote code.
    """
    tokenizer_json = model_dir / "tokenizer.json"
    if tokenizer_json.exists():
        from tokenizers import Tokenizer

        try:
            tokenizer = Tokenizer.from_file(str(tokenizer_json))
        except Exception as error:  # the tokenizers library raises bare Exceptions
            raise CheckpointError(f"{tokenizer_json}: cannot be read as a tokenizer ({error})") from None
        return Vocabulary(tokenizer_json, dict(tokenizer.get_vocab(with_added_tokens=True)))
    if not any((model_dir / n).exists() for n in ("tokenizer.model", "vocab.json", "tokenizer_config.json")):
        return None
    try:
        from transformers import AutoTokenizer

        tokenizer = AutoTokenizer.from_pretrained(str(model_dir), trust_remote_code=False)
    except Exception as error:  # transformers raises many types for unloadable tokenizers
        log.warning("could not load the tokenizer of %s (%s)", model_dir, error)
        return None
    return Vocabulary(model_dir, dict(tokenizer.get_vocab()))


def is_vocab_tensor(name: str, shape: tuple[int, ...], vocab_rows: set[int]) -> bool:
    """Whether a tensor holds one row per token (embedding, output head, or its bias)."""
    return bool(shape) and shape[0] in vocab_rows and any(m in name for m in VOCAB_TENSOR_MARKERS)


def same_vocabulary(a: Vocabulary | None, b: Vocabulary | None) -> bool:
    return a is not None and b is not None and a.token_to_id == b.token_to_id


def align_rows(out_vocab: Vocabulary, source_vocab: Vocabulary, out_rows: int,
               source_rows: int) -> np.ndarray:
    """For every output row, the source row of the same token string, or -1.

    Rows beyond a tokenizer's length (padding rows some models add) have no token and map to -1.
    """
    mapping = np.full(out_rows, -1, dtype=np.int64)
    for token, out_id in out_vocab.token_to_id.items():
        source_id = source_vocab.token_to_id.get(token)
        if source_id is not None and out_id < out_rows and source_id < source_rows:
            mapping[out_id] = source_id
    return mapping


def overlap(out_vocab: Vocabulary, source_vocab: Vocabulary) -> float:
    """Share of the source's tokens that the output vocabulary also has."""
    if not source_vocab.token_to_id:
        return 0.0
    shared = sum(1 for t in source_vocab.token_to_id if t in out_vocab.token_to_id)
    return shared / len(source_vocab.token_to_id)


def special_token_strings(model_dir: Path) -> dict[str, str]:
    """The eos / bos / pad token strings a tokenizer_config.json names (when it does)."""
    path = model_dir / "tokenizer_config.json"
    if not path.exists():
        return {}
    config = read_json(path, "tokenizer config")
    found = {}
    for key in ("eos_token", "bos_token", "pad_token", "unk_token"):
        value = config.get(key)
        if isinstance(value, dict):  # the AddedToken serialisation
            value = value.get("content")
        if isinstance(value, str):
            found[key] = value
    return found
