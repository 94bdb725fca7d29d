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
from chatvector.io.files import present, read_bytes, read_json, read_text
from chatvector.io.schemas import MAX_TOKEN_ID, SpecialTokensMap, TokenizerConfig, TokenToId, token_content

log = logging.getLogger(__name__)

# Embedding-like tensors: one row per token. Matched by name *and* by a first dimension equal to
# the vocabulary size, so a hidden-size tensor is never mistaken for one.
VOCAB_TENSOR_MARKERS = (
    "embed_tokens",
    "lm_head",
    "wte",
    "word_embeddings",
    "tok_embeddings",
    "embed_in",
    "embed_out",
    "output.weight",
    "shared.weight",
    "embeddings.weight",
)


@dataclass(frozen=True)
class Vocabulary:
    """Token string → id of one tokenizer (added tokens included)."""

    source: Path
    token_to_id: dict[str, int]

    def __len__(self) -> int:
        return len(self.token_to_id)


def load_vocabulary(model_dir: Path, root: Path | None = None) -> Vocabulary | None:
    """Read the vocabulary of the tokenizer stored in ``model_dir``, or None if there is none.

    ``tokenizer.json`` is read with the ``tokenizers`` library, ``tokenizer.model`` (Llama-1/2 and
    Chinese-LLaMA style) with ``sentencepiece``, ``vocab.json`` and ``vocab.txt`` as the plain maps
    they are; added tokens (``added_tokens.json``, ``tokenizer_config.json``) are included. No model
    code runs and transformers is not needed. Every file is read by :mod:`chatvector.io.files`' rule
    (a regular file inside ``root``, default the model directory).
    """
    root = root or Path(model_dir).resolve()
    tokenizer_json = model_dir / "tokenizer.json"
    if present(tokenizer_json):
        return Vocabulary(tokenizer_json, _read_tokenizer_json(tokenizer_json, root))
    for name, reader in (
        ("tokenizer.model", _read_sentencepiece),
        ("vocab.json", _read_vocab_json),
        ("vocab.txt", _read_vocab_txt),
    ):
        path = model_dir / name
        if present(path):
            tokens = reader(path, root)
            tokens.update(_added_tokens(model_dir, root))
            return Vocabulary(path, tokens)
    return None


def _read_tokenizer_json(path: Path, root: Path) -> dict[str, int]:
    from tokenizers import Tokenizer

    text = read_text(path, "tokenizer.json", root=root)
    try:
        tokenizer = Tokenizer.from_str(text)
    except BaseException as error:  # noqa: BLE001 - the Rust library raises bare Exceptions, or panics
        if not isinstance(error, Exception) and type(error).__name__ != "PanicException":
            raise
        raise CheckpointError(f"{path}: cannot be read as a tokenizer ({str(error)[:300]})", file=path) from None
    return dict(tokenizer.get_vocab(with_added_tokens=True))


def _read_sentencepiece(path: Path, root: Path) -> dict[str, int]:
    import sentencepiece

    processor = sentencepiece.SentencePieceProcessor()
    try:
        processor.LoadFromSerializedProto(read_bytes(path, "tokenizer.model", root=root))
    except (RuntimeError, OSError, ValueError, TypeError) as error:
        raise CheckpointError(
            f"{path}: cannot be read as a sentencepiece model ({str(error)[:300]}); add the "
            "model's tokenizer.json, or use --embeddings skip",
            file=path,
        ) from None
    return {processor.IdToPiece(i): i for i in range(processor.GetPieceSize())}


def _read_vocab_json(path: Path, root: Path) -> dict[str, int]:
    return dict(read_json(path, "vocab.json", schema=TokenToId, root=root))


def _read_vocab_txt(path: Path, root: Path) -> dict[str, int]:
    lines = read_text(path, "vocab.txt", root=root).splitlines()
    return {token: i for i, token in reversed(list(enumerate(lines)))}  # the first id wins on a repeat


def _added_tokens(model_dir: Path, root: Path) -> dict[str, int]:
    """Tokens added on top of a base vocabulary (``added_tokens.json``, ``added_tokens_decoder``)."""
    added: dict[str, int] = {}
    config = model_dir / "tokenizer_config.json"
    if present(config):
        decoder = (
            read_json(config, "tokenizer_config.json", schema=TokenizerConfig, root=root).get("added_tokens_decoder")
            or {}
        )
        for token_id, token in decoder.items():
            if token_id.isdigit() and int(token_id) <= MAX_TOKEN_ID:
                added[token["content"]] = int(token_id)
    extra = model_dir / "added_tokens.json"
    if present(extra):
        added.update(read_json(extra, "added_tokens.json", schema=TokenToId, root=root))
    return added


def is_vocab_tensor(name: str, shape: tuple[int, ...], vocab_rows: set[int]) -> bool:
    """Whether a tensor holds one row per token (embedding, output head, or its bias)."""
    return bool(shape) and shape[0] in vocab_rows and any(m in name for m in VOCAB_TENSOR_MARKERS)


def same_vocabulary(a: Vocabulary | None, b: Vocabulary | None) -> bool:
    return a is not None and b is not None and a.token_to_id == b.token_to_id


def align_rows(out_vocab: Vocabulary, source_vocab: Vocabulary, out_rows: int, source_rows: int) -> np.ndarray:
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


def special_token_strings(model_dir: Path, root: Path | None = None) -> dict[str, str]:
    """The eos / bos / pad / unk token strings a tokenizer names: ``tokenizer_config.json`` first,
    then ``special_tokens_map.json`` for the keys it lacks."""
    root = root or Path(model_dir).resolve()
    found: dict[str, str] = {}
    for name, schema in (("tokenizer_config.json", TokenizerConfig), ("special_tokens_map.json", SpecialTokensMap)):
        path = model_dir / name
        if not present(path):
            continue
        config = read_json(path, name, schema=schema, root=root)
        for key in ("eos_token", "bos_token", "pad_token", "unk_token"):
            value = token_content(config.get(key))
            if value is not None:
                found.setdefault(key, value)
    return found
