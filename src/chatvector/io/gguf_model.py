"""What a Hugging Face model directory becomes in a GGUF file, apart from the tensor data.

Reads ``config.json`` and the tokenizer files of a (merged or existing) model directory and
decides, before any tensor is computed: the llama.cpp architecture and its hyper-parameters,
each tensor's GGUF name, which rows llama.cpp wants permuted, and the tokenizer (vocabulary,
scores, token types, merges, special ids, chat template, stop ids). Anything llama.cpp would
read differently from transformers is refused here, naming the reason.

Only ``json`` and the ``gguf`` package (numpy) are used: no torch, no transformers.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from chatvector.errors import InputError, MissingExtraError

__all__ = ["GGUFModel", "SUPPORTED", "describe_model", "load_gguf"]

# transformers architecture -> llama.cpp architecture name; Mistral is the Llama graph
SUPPORTED = {
    "LlamaForCausalLM": "llama",
    "MistralForCausalLM": "llama",
    "Qwen2ForCausalLM": "qwen2",
}

# The pre-tokenizer regular expressions llama.cpp knows by name (its ``tokenizer.ggml.pre``).
LLAMA3_SPLIT = (
    r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}| ?[^\s\p{L}\p{N}]+[\r\n]*"
    r"|\s*[\r\n]+|\s+(?!\S)|\s+"
)
QWEN2_SPLIT = (
    r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}| ?[^\s\p{L}\p{N}]+[\r\n]*"
    r"|\s*[\r\n]+|\s+(?!\S)|\s+"
)
PRE_TOKENIZERS = {LLAMA3_SPLIT: "llama-bpe", QWEN2_SPLIT: "qwen2"}


def load_gguf() -> Any:
    """The ``gguf`` package, or a clear error naming the extra that brings it."""
    try:
        import gguf
    except ImportError:
        raise MissingExtraError("GGUF output", "gguf", "gguf") from None
    return gguf


@dataclass
class GGUFModel:
    """Everything a GGUF file of one model holds besides the tensor data."""

    arch: str  # llama.cpp's name: "llama" or "qwen2"
    config: dict[str, Any]
    directory: Path
    head_count: int
    head_count_kv: int
    block_count: int
    vocab_size: int  # rows of the embedding matrix
    tokenizer_kind: str = ""  # "spm" or "bpe"
    notes: list[str] = field(default_factory=list)

    def tensor_name(self, hf_name: str) -> str | None:
        """The GGUF name of a transformers tensor, or None when llama.cpp has no use for it."""
        gguf = load_gguf()
        arch = gguf.MODEL_ARCH.LLAMA if self.arch == "llama" else gguf.MODEL_ARCH.QWEN2
        mapping = _name_map(arch, self.block_count)
        if hf_name.endswith("rotary_emb.inv_freq"):
            return None
        return mapping.get_name(hf_name, try_suffixes=(".weight", ".bias"))

    def row_permutation(self, hf_name: str) -> Callable[[int], int] | None:
        """Where llama.cpp wants row ``r`` of this tensor, when it wants rows moved.

        llama.cpp's Llama graph applies rotary embeddings to interleaved pairs, transformers' to
        the two halves of each head: the HF->GGUF conversion moves row ``h*D + s*D/2 + j`` of
        the Q and K projections (weights and biases) to ``h*D + 2j + s`` (D the head size).
        """
        if self.arch != "llama":
            return None
        if ".self_attn.q_proj." not in hf_name and ".self_attn.k_proj." not in hf_name:
            return None
        size = self.head_dim
        half = size // 2

        def move(row: int) -> int:
            head, within = divmod(row, size)
            side, pair = divmod(within, half)
            return head * size + 2 * pair + side

        return move

    @property
    def head_dim(self) -> int:
        return int(self.config.get("head_dim") or self.config["hidden_size"] // self.head_count)

    def write_metadata(self, writer: Any, file_type: int) -> None:
        """Add the architecture's hyper-parameters and the tokenizer to a ``gguf.GGUFWriter``."""
        _hyper_parameters(self, writer, file_type)
        _tokenizer(self, writer)


_NAME_MAPS: dict[tuple[Any, int], Any] = {}


def _name_map(arch: Any, blocks: int) -> Any:
    key = (arch, blocks)
    if key not in _NAME_MAPS:
        _NAME_MAPS[key] = load_gguf().TensorNameMap(arch, blocks)
    return _NAME_MAPS[key]


def _read_json(path: Path) -> dict[str, Any]:
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        return {}
    except (OSError, ValueError) as error:
        raise InputError(f"{path}: cannot read it as JSON ({error})", file=path) from None
    return data if isinstance(data, dict) else {}


def _rope_theta(config: dict[str, Any]) -> float:
    parameters = config.get("rope_parameters") or {}
    return float(config.get("rope_theta") or parameters.get("rope_theta") or 10000.0)


def _rope_scaling(config: dict[str, Any]) -> dict[str, Any] | None:
    scaling = config.get("rope_scaling") or config.get("rope_parameters") or None
    if not isinstance(scaling, dict):
        return None
    kind = scaling.get("rope_type") or scaling.get("type") or "default"
    return None if kind == "default" else scaling


def describe_model(directory: Path, config: dict[str, Any] | None = None) -> GGUFModel:
    """Read a model directory's config and refuse what the GGUF writer does not support.

    Raises:
        InputError: an architecture other than Llama/Mistral/Qwen2, a rope scaling llama.cpp
            would compute differently, or a tokenizer it cannot represent.
    """
    directory = Path(directory)
    config = config if config is not None else _read_json(directory / "config.json")
    architectures = config.get("architectures") or [config.get("model_type", "unknown")]
    name = str(architectures[0])
    if name not in SUPPORTED:
        raise InputError(
            f"--format gguf: the architecture {name} is not supported (supported: "
            f"{', '.join(sorted(SUPPORTED))}); write safetensors and convert with llama.cpp's converter",
            option="--format",
        )
    scaling = _rope_scaling(config)
    if scaling is not None and (scaling.get("rope_type") or scaling.get("type")) != "linear":
        raise InputError(
            f"--format gguf: rope scaling {scaling.get('rope_type') or scaling.get('type')!r} of "
            f"{directory / 'config.json'} is not supported yet (only linear); write safetensors instead",
            option="--format",
        )
    heads = int(config["num_attention_heads"])
    model = GGUFModel(
        arch=SUPPORTED[name],
        config=config,
        directory=directory,
        head_count=heads,
        head_count_kv=int(config.get("num_key_value_heads") or heads),
        block_count=int(config["num_hidden_layers"]),
        vocab_size=int(config["vocab_size"]),
    )
    model.tokenizer_kind = _tokenizer_kind(directory)
    return model


def _hyper_parameters(model: GGUFModel, writer: Any, file_type: int) -> None:
    gguf = load_gguf()
    config = model.config
    writer.add_context_length(int(config.get("max_position_embeddings") or 4096))
    writer.add_embedding_length(int(config["hidden_size"]))
    writer.add_block_count(model.block_count)
    writer.add_feed_forward_length(int(config["intermediate_size"]))
    writer.add_head_count(model.head_count)
    writer.add_head_count_kv(model.head_count_kv)
    writer.add_rope_freq_base(_rope_theta(config))
    writer.add_layer_norm_rms_eps(float(config.get("rms_norm_eps") or 1e-6))
    writer.add_vocab_size(model.vocab_size)
    writer.add_rope_dimension_count(model.head_dim)
    if model.arch == "llama" or model.head_dim != int(config["hidden_size"]) // model.head_count:
        # llama.cpp's converter writes them for every Llama; elsewhere only a head size other
        # than hidden/heads (llama.cpp's default) needs saying
        writer.add_key_length(model.head_dim)
        writer.add_value_length(model.head_dim)
    scaling = _rope_scaling(config)
    if scaling is not None:  # linear (describe_model refused the others)
        writer.add_rope_scaling_type(gguf.RopeScalingType.LINEAR)
        writer.add_rope_scaling_factor(float(scaling["factor"]))
    writer.add_file_type(file_type)


# --- the tokenizer -----------------------------------------------------------------------------


def _tokenizer_kind(directory: Path) -> str:
    """``spm`` (SentencePiece, or its byte-fallback BPE form in tokenizer.json) or ``bpe``
    (byte-level BPE); anything else is refused."""
    if (directory / "tokenizer.model").is_file():
        return "spm"
    data = _read_json(directory / "tokenizer.json")
    core = data.get("model") or {}
    if core.get("type") == "BPE" and core.get("byte_fallback"):
        return "spm"
    if core.get("type") == "BPE" and _byte_level(data):
        _pre_tokenizer_name(data, directory)  # refuse an unknown pre-tokenizer now
        if not core.get("merges"):
            # llama.cpp refuses a BPE vocabulary without merges, and GGUF has no empty array
            raise InputError(
                f"--format gguf: the byte-level BPE tokenizer {directory / 'tokenizer.json'} has no merges, which "
                "llama.cpp requires; give it at least one merge (tokenizers' BpeTrainer learns them)",
                file=directory / "tokenizer.json",
            )
        return "bpe"
    kind = core.get("type") or "missing"
    raise InputError(
        f"--format gguf: the tokenizer of {directory} ({kind} model in tokenizer.json) has no "
        "llama.cpp form; only SentencePiece and byte-level BPE tokenizers are supported",
        file=directory / "tokenizer.json",
    )


def _parts(node: dict[str, Any] | None) -> list[dict[str, Any]]:
    if not node:
        return []
    if node.get("type") == "Sequence":
        return [p for key in ("pretokenizers", "normalizers") for p in node.get(key) or []]
    return [node]


def _byte_level(data: dict[str, Any]) -> bool:
    return any(p.get("type") == "ByteLevel" for p in _parts(data.get("pre_tokenizer")))


def _pre_tokenizer_name(data: dict[str, Any], directory: Path) -> str:
    """llama.cpp's name for the byte-level pre-tokenizer of tokenizer.json."""
    parts = _parts(data.get("pre_tokenizer"))
    regexes = [p.get("pattern", {}).get("Regex") for p in parts if p.get("type") == "Split"]
    if len(regexes) == 1 and regexes[0] in PRE_TOKENIZERS:
        return PRE_TOKENIZERS[regexes[0]]
    if not regexes and all(p.get("type") == "ByteLevel" and p.get("use_regex", True) for p in parts):
        return "gpt2"
    raise InputError(
        f"--format gguf: the pre-tokenizer of {directory / 'tokenizer.json'} is none that llama.cpp "
        "knows (Llama-3, Qwen2 or GPT-2 splitting); tokenization would differ, so it is refused",
        file=directory / "tokenizer.json",
    )


@dataclass
class _Vocab:
    tokens: list[bytes]
    scores: list[float]
    types: list[int]


def _tokenizer(model: GGUFModel, writer: Any) -> None:
    gguf = load_gguf()
    directory = model.directory
    if model.tokenizer_kind == "spm":
        vocab = _spm_vocab(directory)
        writer.add_tokenizer_model("llama")
        writer.add_tokenizer_pre("default")
        writer.add_add_space_prefix(_adds_space_prefix(_read_json(directory / "tokenizer.json")))
    else:
        vocab = _bpe_vocab(directory)
        writer.add_tokenizer_model("gpt2")
        writer.add_tokenizer_pre(_pre_tokenizer_name(_read_json(directory / "tokenizer.json"), directory))
    _pad_vocab(vocab, model.vocab_size, gguf)
    writer.add_token_list(vocab.tokens)
    writer.add_token_types(vocab.types)
    if model.tokenizer_kind == "spm":
        writer.add_token_scores(vocab.scores)
    special = gguf.SpecialVocab(directory, load_merges=model.tokenizer_kind == "bpe", n_vocab=len(vocab.tokens))
    special.add_to_gguf(writer, quiet=True)
    for side in ("bos", "eos"):
        if side not in special.add_special_token:
            # transformers adds BOS/EOS only where tokenizer.json's post-processor says so;
            # llama.cpp's default for a missing flag differs by vocabulary type, so say it
            getattr(writer, f"add_add_{side}_token")(False)
    stops = _stop_ids(directory, special.special_token_ids.get("eos"))
    if stops:
        writer.add_eot_token_id(stops[0])


def _pad_vocab(vocab: _Vocab, rows: int, gguf: Any) -> None:
    """Embedding rows beyond the tokenizer (padded vocabularies) get unused placeholder tokens."""
    if len(vocab.tokens) > rows:
        raise InputError(
            f"--format gguf: the tokenizer has {len(vocab.tokens)} tokens but the embeddings only {rows} rows"
        )
    for index in range(len(vocab.tokens), rows):
        vocab.tokens.append(f"[PAD{index}]".encode())
        vocab.scores.append(-1000.0)
        vocab.types.append(int(gguf.TokenType.UNUSED))


def _stop_ids(directory: Path, eos: int | None) -> list[int]:
    """The stop ids the merge carries (generation_config.json) besides EOS: llama.cpp's EOT."""
    wanted = _read_json(directory / "generation_config.json").get("eos_token_id")
    ids = wanted if isinstance(wanted, list) else [wanted] if isinstance(wanted, int) else []
    return [int(i) for i in ids if isinstance(i, int) and i != eos]


def _added(data: dict[str, Any]) -> dict[int, dict[str, Any]]:
    return {int(t["id"]): t for t in data.get("added_tokens") or []}


def _tokens_in_id_order(data: dict[str, Any]) -> list[tuple[str, bool]]:
    """Every id of a tokenizer.json from 0 to the largest, as (text, whether the id is used):
    the model's vocabulary, then added tokens; an id neither names is a ``[PADn]`` filler."""
    by_id = {int(i): t for t, i in data["model"]["vocab"].items()}
    added = _added(data)
    size = max([*by_id, *added], default=-1) + 1
    return [
        (by_id.get(i) or added.get(i, {}).get("content") or f"[PAD{i}]", i in by_id or i in added) for i in range(size)
    ]


def _spm_vocab(directory: Path) -> _Vocab:
    gguf = load_gguf()
    if (directory / "tokenizer.model").is_file():
        source = gguf.SentencePieceVocab(directory)
        tokens, scores, types = [], [], []
        for text, score, kind in source.all_tokens():
            tokens.append(text)
            scores.append(float(score))
            types.append(int(kind))
        vocab = _Vocab(tokens, scores, types)
        _mark_added(vocab, _read_json(directory / "tokenizer.json"), gguf)
        return vocab
    return _spm_from_json(directory, gguf)


def _spm_from_json(directory: Path, gguf: Any) -> _Vocab:
    """A byte-fallback BPE tokenizer.json (how transformers stores Llama-2's SentencePiece model)
    as llama.cpp's SentencePiece vocabulary: a token made by a merge scores minus that merge's
    rank, so llama.cpp (which merges the best-scoring pair first) merges in the same order."""
    data = _read_json(directory / "tokenizer.json")
    core = data["model"]
    ranks: dict[str, int] = {}
    for rank, merge in enumerate(core.get("merges") or []):
        left, right = merge if isinstance(merge, list) else merge.split(" ", 1)
        ranks.setdefault(left + right, rank)
    vocab = _Vocab([], [], [])
    for text, _ in _tokens_in_id_order(data):
        vocab.tokens.append(text.encode("utf-8"))
        vocab.scores.append(-float(ranks[text]) if text in ranks else 0.0)
        if re.fullmatch(r"<0x[0-9A-Fa-f]{2}>", text):
            kind = gguf.TokenType.BYTE
        elif text == core.get("unk_token"):
            kind = gguf.TokenType.UNKNOWN
        else:
            kind = gguf.TokenType.NORMAL
        vocab.types.append(int(kind))
    _mark_added(vocab, data, gguf)
    return vocab


def _mark_added(vocab: _Vocab, data: dict[str, Any], gguf: Any) -> None:
    """Added tokens: special ones are CONTROL, the others (an extended vocabulary's words)
    USER_DEFINED, which llama.cpp, like transformers, matches whole before splitting."""
    for index, token in _added(data).items():
        if index >= len(vocab.tokens) or vocab.types[index] == gguf.TokenType.BYTE:
            continue
        vocab.tokens[index] = token["content"].encode("utf-8")
        special = token.get("special")
        vocab.types[index] = int(gguf.TokenType.CONTROL if special else gguf.TokenType.USER_DEFINED)
        if special and token["content"] == (data.get("model") or {}).get("unk_token"):
            vocab.types[index] = int(gguf.TokenType.UNKNOWN)


def _adds_space_prefix(data: dict[str, Any]) -> bool:
    for part in _parts(data.get("normalizer")) + _parts(data.get("pre_tokenizer")):
        if part.get("type") == "Prepend" and part.get("prepend") == "\u2581":
            return True
        if part.get("type") == "Metaspace":
            return part.get("prepend_scheme", "always") != "never"
    return False


def _bpe_vocab(directory: Path) -> _Vocab:
    gguf = load_gguf()
    data = _read_json(directory / "tokenizer.json")
    vocab = _Vocab([], [], [])
    for text, used in _tokens_in_id_order(data):
        vocab.tokens.append(text.encode("utf-8"))
        vocab.scores.append(0.0)
        vocab.types.append(int(gguf.TokenType.NORMAL if used else gguf.TokenType.UNUSED))
    _mark_added(vocab, data, gguf)
    for index, token in _added(data).items():
        if not token.get("special") and index < len(vocab.tokens):
            # llama.cpp expects user-defined tokens of a byte-level vocabulary in plain UTF-8,
            # which is how transformers stores added tokens: nothing to re-encode
            vocab.tokens[index] = token["content"].encode("utf-8")
    return vocab
