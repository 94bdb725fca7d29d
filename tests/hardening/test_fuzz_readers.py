"""Fuzz the JSON and YAML readers, and the code that uses what they accept: only clean
ChatVectorErrors come out.

Like test_fuzz.py (derandomized, so CI sees the same cases every run). Documents are generated
around the keys chatvector reads, with values of every JSON type, then sometimes mutated byte by
byte. What a reader accepts must have the types its users rely on, and using it (deciding the stop
tokens, writing an output's files, planning a recipe) must not fail in any other way.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from chatvector.errors import ChatVectorError
from chatvector.io.files import ModelDir, read_json
from chatvector.io.schemas import (
    MAX_TOKEN_ID,
    ChatTemplateFile,
    GenerationConfig,
    ModelConfig,
    SpecialTokensMap,
    TokenizerConfig,
    TokenToId,
)
from chatvector.merge.assets import write_model_files
from chatvector.merge.recipe import PairTerm, VectorTerm, read_recipe_file
from chatvector.merge.vector import read_manifest
from chatvector.merge.vocab import load_vocabulary

CASES = settings(
    max_examples=1_500, deadline=None, derandomize=True, database=None, suppress_health_check=list(HealthCheck)
)

leaf = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(-(2**70), 2**70),
    st.floats(allow_nan=True),
    st.text(max_size=8),
    st.sampled_from(["</s>", "<s>", "<|end|>", "hello", "default", "32"]),
)
value = st.recursive(
    leaf,
    lambda inner: st.one_of(st.lists(inner, max_size=4), st.dictionaries(st.text(max_size=6), inner, max_size=4)),
    max_leaves=10,
)
token = st.one_of(
    st.sampled_from(["</s>", "<s>", "<pad>", "<|end|>", "nope"]),
    st.fixed_dictionaries({"content": st.one_of(st.sampled_from(["</s>", "<|end|>"]), value)}),
    value,
)
token_id = st.one_of(st.integers(-3, 45), st.integers(-(2**65), 2**65), value)
ids = st.one_of(token_id, st.lists(token_id, max_size=4), value)
template = st.one_of(
    st.text(max_size=20),
    st.lists(
        st.fixed_dictionaries(
            {
                "name": st.one_of(st.sampled_from(["default", "tool_use", "../x", ""]), value),
                "template": st.one_of(st.text(max_size=10), value),
            }
        ),
        max_size=3,
    ),
    value,
)

SHAPES = {
    "config.json": {
        "architectures": st.one_of(st.lists(st.sampled_from(["MistralForCausalLM", "X"]), max_size=2), value),
        "model_type": st.one_of(st.just("mistral"), value),
        "vocab_size": st.one_of(st.just(40), value),
        "hidden_size": st.one_of(st.just(32), value),
        "tie_word_embeddings": value,
        "eos_token_id": ids,
        "bos_token_id": ids,
        "pad_token_id": ids,
        "auto_map": value,
    },
    "generation_config.json": {"eos_token_id": ids, "bos_token_id": ids, "pad_token_id": ids, "temperature": value},
    "tokenizer_config.json": {
        "eos_token": token,
        "bos_token": token,
        "pad_token": token,
        "chat_template": template,
        "auto_map": value,
        "added_tokens_decoder": st.one_of(
            st.dictionaries(
                st.sampled_from(["0", "3", "99", "-1", "x"]),
                st.fixed_dictionaries({"content": st.one_of(st.text(max_size=5), value)}),
                max_size=3,
            ),
            value,
        ),
    },
    "special_tokens_map.json": {
        "eos_token": token,
        "pad_token": token,
        "additional_special_tokens": st.one_of(st.lists(token, max_size=3), value),
    },
    "chat_template.json": {"chat_template": template},
}
SCHEMAS = {
    "config.json": ModelConfig,
    "generation_config.json": GenerationConfig,
    "tokenizer_config.json": TokenizerConfig,
    "special_tokens_map.json": SpecialTokensMap,
    "chat_template.json": ChatTemplateFile,
}


@st.composite
def json_document(draw, name: str) -> bytes:
    kind = draw(st.sampled_from(["structured", "structured", "structured", "mutated", "raw", "any json"]))
    if kind == "raw":
        return draw(st.binary(max_size=200))
    if kind == "any json":
        return json.dumps(draw(value)).encode()
    keys = SHAPES[name]
    chosen = draw(st.lists(st.sampled_from(sorted(keys)), unique=True, max_size=len(keys)))
    text = json.dumps({key: draw(keys[key]) for key in chosen}, allow_nan=True).encode()
    if kind == "mutated" and text:
        position = draw(st.integers(0, len(text) - 1))
        text = text[:position] + bytes([draw(st.integers(0, 255))]) + text[position + 1 :]
    return text


def is_token_ids(found) -> bool:
    many = found if isinstance(found, list) else [found]
    return all(isinstance(i, int) and not isinstance(i, bool) and 0 <= i <= MAX_TOKEN_ID for i in many)


def check_accepted(name: str, data: dict) -> None:
    """What users of each file rely on, for a document the reader accepted."""
    if name in ("config.json", "generation_config.json"):
        for key in ("eos_token_id", "bos_token_id", "pad_token_id"):
            assert data.get(key) is None or is_token_ids(data[key])
    if name == "config.json":
        assert data.get("architectures") is None or all(isinstance(a, str) for a in data["architectures"])
        assert data.get("vocab_size") is None or (type(data["vocab_size"]) is int and data["vocab_size"] >= 0)
    if name in ("tokenizer_config.json", "chat_template.json"):
        entry = data.get("chat_template")
        assert (
            entry is None
            or isinstance(entry, str)
            or all(isinstance(t["name"], str) and isinstance(t["template"], str) for t in entry)
        )


@pytest.fixture(scope="module")
def scratch(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("fuzz-readers")


@pytest.mark.slow
@pytest.mark.parametrize("name", sorted(SHAPES))
def test_json_readers_fail_only_cleanly(name, scratch):
    path = scratch / name
    seen = []

    @settings(CASES, max_examples=1_200)
    @given(json_document(name))
    def check(content: bytes) -> None:
        seen.append(1)
        path.write_bytes(content)
        try:
            data = read_json(path, name, schema=SCHEMAS[name])
        except ChatVectorError:
            return
        check_accepted(name, data)

    check()
    assert len(seen) >= 1_200


@pytest.fixture(scope="module")
def models(trios, tmp_path_factory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("fuzz-models")
    return {role: shutil.copytree(getattr(trios["mistral"], role), root / role) for role in ("chat", "cp")}


@pytest.mark.slow
def test_writing_an_outputs_files_from_fuzzed_inputs_fails_only_cleanly(models, tmp_path_factory):
    """The chat model's configs, tokenizer config, special tokens map and templates are fuzzed
    together; deciding the stop tokens and writing every non-weight file of the output may refuse
    them, but only with a ChatVectorError, and what it writes names only ids of the vocabulary."""
    chat, cp = models["chat"], models["cp"]
    vocabulary = load_vocabulary(cp)
    originals = {name: (chat / name).read_bytes() if (chat / name).exists() else None for name in SHAPES}
    out = tmp_path_factory.mktemp("fuzz-out")
    seen = []

    @settings(CASES, max_examples=1_000)
    @given(st.fixed_dictionaries({name: st.one_of(st.none(), json_document(name)) for name in SHAPES}))
    def check(documents: dict[str, bytes | None]) -> None:
        seen.append(1)
        for name, content in documents.items():
            (chat / name).unlink(missing_ok=True)
            if content is not None:
                (chat / name).write_bytes(content)
        shutil.rmtree(out, ignore_errors=True)
        out.mkdir()
        try:
            chat_vocab = load_vocabulary(chat)
            stops = write_model_files(ModelDir(cp), ModelDir(chat), out, vocabulary, chat_vocab, 40, None, [])
        except ChatVectorError:
            return
        assert stops.ids and all(0 <= i < 40 for i in stops.ids)
        for name in ("config.json", "generation_config.json"):
            assert json.loads((out / name).read_text())["eos_token_id"] in (stops.ids, stops.ids[0])

    try:
        check()
    finally:
        for name, content in originals.items():
            (chat / name).unlink(missing_ok=True)
            if content is not None:
                (chat / name).write_bytes(content)
    assert len(seen) >= 1_000


recipe_leaf = st.one_of(
    leaf,
    st.sampled_from(
        [
            ".nan",
            ".inf",
            "1e-50",
            "1e39",
            "0",
            "-0.5",
            "2024-01-01",
            "~",
            "!!binary aGk=",
            "*a",
            "&a x",
            "!!python/name:os.system",
        ]
    ),
)
recipe_value = st.recursive(
    recipe_leaf,
    lambda inner: st.one_of(st.lists(inner, max_size=3), st.dictionaries(st.text(max_size=6), inner, max_size=3)),
    max_leaves=8,
)
term = st.one_of(
    st.fixed_dictionaries({"base": recipe_value, "chat": recipe_value}, optional={"ratio": recipe_value}),
    st.fixed_dictionaries({"vector": recipe_value}, optional={"ratio": recipe_value, "vector_path": recipe_value}),
    recipe_value,
)
recipe_data = st.fixed_dictionaries(
    {"terms": st.one_of(st.lists(term, max_size=3), recipe_value)},
    optional={
        "target": recipe_value,
        "kind": st.one_of(st.sampled_from(["merge", "extract"]), recipe_value),
        "options": st.one_of(
            st.fixed_dictionaries(
                {},
                optional={
                    "embeddings": st.one_of(st.sampled_from(["auto", "align", "add", "skip"]), recipe_value),
                    "exclude": st.one_of(
                        st.lists(st.sampled_from(["lm_head", "(", "[z-a]", "a{99999999999}"]), max_size=2), recipe_value
                    ),
                    "dtype": st.one_of(st.sampled_from(["bfloat16", "float64"]), recipe_value),
                },
            ),
            recipe_value,
        ),
    },
)


@st.composite
def recipe_text(draw) -> bytes:
    kind = draw(st.sampled_from(["recipe", "recipe", "recorded", "mutated", "raw"]))
    if kind == "raw":
        return draw(st.binary(max_size=200))
    data = draw(recipe_data)
    if kind == "recorded":
        data = {
            "recipe": data,
            "inputs": draw(st.one_of(st.lists(recipe_value, max_size=2), recipe_value)),
            "output": draw(st.one_of(st.fixed_dictionaries({"files": recipe_value}), recipe_value)),
        }
    text = yaml.safe_dump(data, allow_unicode=True).encode()
    # Let strings become YAML syntax again (tags, aliases, special floats), as a hand-written file would.
    text = text.replace(b"'", b"")
    if kind == "mutated" and text:
        position = draw(st.integers(0, len(text) - 1))
        text = text[:position] + bytes([draw(st.integers(0, 255))]) + text[position + 1 :]
    return text


@pytest.mark.slow
def test_recipe_reader_fails_only_cleanly(scratch):
    path = scratch / "recipe.yaml"
    seen = []

    @CASES
    @given(recipe_text())
    def check(content: bytes) -> None:
        seen.append(1)
        path.write_bytes(content)
        try:
            recipe, _ = read_recipe_file(path)
        except ChatVectorError:
            return
        assert recipe.terms
        for item in recipe.terms:
            assert isinstance(item, PairTerm | VectorTerm)
            assert isinstance(item.ratio, float) and abs(item.ratio) < 3.5e38
        assert all(isinstance(p, str) for p in recipe.options.exclude)

    check()
    assert len(seen) >= 1_500


manifest = st.fixed_dictionaries(
    {"format": st.just("chatvector-vector")},
    optional={
        "tensors": st.one_of(
            st.dictionaries(st.text(max_size=5), st.lists(st.integers(-2, 2**64), max_size=3), max_size=3), value
        ),
        "excluded": st.one_of(st.lists(st.text(max_size=5), max_size=3), value),
        "architecture": value,
        "format_version": value,
        "base": value,
        "chat": value,
        "dtype": value,
    },
)


@pytest.mark.slow
def test_vector_manifest_and_token_map_readers_fail_only_cleanly(scratch):
    folder = scratch / "vector"
    folder.mkdir()
    seen = []

    @CASES
    @given(st.one_of(manifest, value), st.one_of(st.dictionaries(st.text(max_size=4), token_id, max_size=4), value))
    def check(document, tokens) -> None:
        seen.append(1)
        (folder / "chatvector.json").write_text(json.dumps(document))
        (folder / "vocab.json").write_text(json.dumps(tokens))
        try:
            found = read_manifest(folder)
            if found is not None:
                assert all(isinstance(n, str) for n in found.excluded)
                assert all(0 <= d <= 2**40 for shape in found.tensors.values() for d in shape)
        except ChatVectorError:
            pass
        try:
            mapping = read_json(folder / "vocab.json", "vocab.json", schema=TokenToId)
        except ChatVectorError:
            return
        assert all(type(i) is int and 0 <= i <= MAX_TOKEN_ID for i in mapping.values())

    check()
    assert len(seen) >= 1_500
