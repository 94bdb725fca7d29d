"""Round 3, "adapters are not read like models": a PEFT adapter is read by the rules a model is.

One reader (``io/adapter.py: read_adapter``) serves ``apply --vector ADAPTER:r`` and ``lora ADAPTER
--ratio R``: every adapter file must be a regular file inside the adapter (a link elsewhere is
refused, never merged from nor copied), ``adapter_config.json`` is checked against a typed schema
(``io/schemas.py: AdapterConfigFile``; a wrong type names the file and the key),
``adapter_model.safetensors`` goes through the validating header parser (a truncated file is named)
and its factors must pair up (2-D float ``lora_A`` (rank × in) and ``lora_B`` (out × rank) with the
config's rank). Ratios are checked where they enter and the scaled factors must stay finite in
their dtype, before anything is written. ``lora`` and ``apply`` share the check that a vector holds
every tensor its manifest lists (``merge/vector.py: check_vector_tensors``).

Every refusal goes through ``hardening_helpers.outcome``: exit code 2, the message naming the file
and key or tensor, no traceback, nothing left beside OUT, every input byte-for-byte unchanged.
"""

from __future__ import annotations

import json
import os
import shutil

import numpy as np
import pytest
from hardening_helpers import outcome
from helpers import run_cli
from safetensors.numpy import load_file, save_file

MODULE = "model.layers.0.self_attn.q_proj"
A_KEY, B_KEY = f"base_model.model.{MODULE}.lora_A.weight", f"base_model.model.{MODULE}.lora_B.weight"


@pytest.fixture
def vector(monkeypatch, capsys, fresh, tmp_path):
    folder = tmp_path / "vector"
    code, message = run_cli(
        monkeypatch, capsys, "extract", "--base", fresh["base"], "--chat", fresh["chat"], "-o", folder
    )
    assert code == 0, message
    return folder


@pytest.fixture
def adapter(monkeypatch, capsys, vector, tmp_path):
    folder = tmp_path / "adapter"
    code, message = run_cli(monkeypatch, capsys, "lora", vector, "--rank", "2", "-o", folder)
    assert code == 0, message
    return folder


def apply_args(fresh, adapter, tmp_path):
    return ["apply", "--target", fresh["cp"], "--vector", f"{adapter}:0.5", "-o", tmp_path / "out"]


def scale_args(adapter, tmp_path, ratio="0.5"):
    return ["lora", adapter, "--ratio", ratio, "-o", tmp_path / "out"]


COMMANDS = {"apply": apply_args, "lora --ratio": lambda fresh, adapter, tmp_path: scale_args(adapter, tmp_path)}


def refused(monkeypatch, capsys, fresh, adapter, tmp_path, command, *words):
    args = COMMANDS[command](fresh, adapter, tmp_path)
    return outcome(monkeypatch, capsys, [*fresh.values(), adapter], tmp_path, args, 2, *words)


# -- files from outside the adapter -------------------------------------------------------------

# Every file an extracted adapter holds, and the command that reads it (apply reads the config,
# the weights and the tokenizer it aligns with; lora --ratio copies every file).
ADAPTER_FILES = [
    ("adapter_config.json", "apply"),
    ("adapter_model.safetensors", "apply"),
    ("tokenizer.json", "apply"),
    ("adapter_config.json", "lora --ratio"),
    ("adapter_model.safetensors", "lora --ratio"),
    ("tokenizer.json", "lora --ratio"),
    ("tokenizer_config.json", "lora --ratio"),
    ("chatvector_lora.json", "lora --ratio"),
]


def test_the_list_of_adapter_files_is_every_file_an_adapter_holds(adapter):
    assert sorted(p.name for p in adapter.iterdir()) == sorted({name for name, _ in ADAPTER_FILES})


@pytest.mark.parametrize(("name", "command"), ADAPTER_FILES, ids=[f"{c}:{n}" for n, c in ADAPTER_FILES])
def test_an_adapter_file_linked_from_outside_is_refused(name, command, monkeypatch, capsys, fresh, adapter, tmp_path):
    path = adapter / name
    outside = tmp_path / f"outside-{name}"
    shutil.move(path, outside)  # a valid file of its kind: it would be merged from or copied
    path.symlink_to(outside)
    refused(monkeypatch, capsys, fresh, adapter, tmp_path, command, str(path), "link leading outside")
    assert not (tmp_path / "out").exists()


@pytest.mark.timeout(120)  # an opened FIFO blocks forever: fail instead of hanging
@pytest.mark.parametrize("kind", ["fifo", "directory"])
@pytest.mark.parametrize("name", ["adapter_config.json", "adapter_model.safetensors"])
@pytest.mark.parametrize("command", sorted(COMMANDS))
def test_an_adapter_file_that_is_not_a_regular_file_is_refused(
    command, name, kind, monkeypatch, capsys, fresh, adapter, tmp_path
):
    path = adapter / name
    path.unlink()
    os.mkfifo(path) if kind == "fifo" else path.mkdir()
    refused(
        monkeypatch, capsys, fresh, adapter, tmp_path, command, str(path), "FIFO" if kind == "fifo" else "directory"
    )


# -- the weights file ---------------------------------------------------------------------------


@pytest.mark.parametrize("keep", [0, 4, 8, 20, "header", "half the data", "one byte short"])
@pytest.mark.parametrize("command", sorted(COMMANDS))
def test_a_truncated_adapter_file_is_named(keep, command, monkeypatch, capsys, fresh, adapter, tmp_path):
    path = adapter / "adapter_model.safetensors"
    data = path.read_bytes()
    header_end = 8 + int.from_bytes(data[:8], "little")
    size = {"header": header_end, "half the data": (header_end + len(data)) // 2, "one byte short": len(data) - 1}
    path.write_bytes(data[: size.get(keep, keep)])  # type: ignore[call-overload]
    message = refused(monkeypatch, capsys, fresh, adapter, tmp_path, command, "CheckpointError", str(path))
    assert any(w in message for w in ("truncated", "too short")), message


def rewrite(adapter, change):
    path = adapter / "adapter_model.safetensors"
    tensors = load_file(path)
    change(tensors)
    save_file(tensors, path, metadata={"format": "pt"})


FACTOR_CASES = {
    "lora_A of another rank": (lambda t: t.update({A_KEY: t[A_KEY][:1]}), "rank 2"),
    "lora_B of another rank": (lambda t: t.update({B_KEY: np.concatenate([t[B_KEY]] * 2, axis=1)}), "rank 2"),
    "both of another rank": (lambda t: t.update({A_KEY: t[A_KEY][:1], B_KEY: t[B_KEY][:, :1]}), "rank 2"),
    "lora_A transposed": (lambda t: t.update({A_KEY: np.ascontiguousarray(t[A_KEY].T)}), "rank 2"),
    "lora_B transposed": (lambda t: t.update({B_KEY: np.ascontiguousarray(t[B_KEY].T)}), "rank 2"),
    "lora_A one-dimensional": (lambda t: t.update({A_KEY: t[A_KEY].reshape(-1)}), "2-D float matrix"),
    "lora_B three-dimensional": (lambda t: t.update({B_KEY: t[B_KEY][None]}), "2-D float matrix"),
    "lora_B of integers": (lambda t: t.update({B_KEY: t[B_KEY].astype(np.int32)}), "2-D float matrix"),
    "lora_B missing": (lambda t: t.pop(B_KEY), "no lora_B"),
    "lora_A missing": (lambda t: t.pop(A_KEY), "no lora_A"),
    "a key that is no LoRA factor": (
        lambda t: t.update({f"base_model.model.{MODULE}.lora_embedding_A": t[A_KEY]}),
        "not a lora_A/lora_B weight",
    ),
    "no factors at all": (lambda t: [t.pop(k) for k in list(t)] and t.update({"x": np.zeros(1)}), "not a lora_A"),
}


@pytest.mark.parametrize("case", sorted(FACTOR_CASES))
@pytest.mark.parametrize("command", sorted(COMMANDS))
def test_factors_that_do_not_pair_up_are_named(case, command, monkeypatch, capsys, fresh, adapter, tmp_path):
    change, words = FACTOR_CASES[case]
    rewrite(adapter, change)
    path = adapter / "adapter_model.safetensors"
    refused(monkeypatch, capsys, fresh, adapter, tmp_path, command, "CheckpointError", str(path), words)


def test_every_factor_of_the_wrong_shape_is_named(monkeypatch, capsys, fresh, adapter, tmp_path):
    """The shape check covers every key of the file, not the one module tried above."""
    keys = sorted(load_file(adapter / "adapter_model.safetensors"))
    assert len(keys) > 10
    original = (adapter / "adapter_model.safetensors").read_bytes()
    for key in keys:
        (adapter / "adapter_model.safetensors").write_bytes(original)
        rewrite(
            adapter, lambda t, k=key: t.update({k: np.ascontiguousarray(t[k][:1] if ".lora_A." in k else t[k][:, :1])})
        )
        message = refused(monkeypatch, capsys, fresh, adapter, tmp_path, "lora --ratio", "CheckpointError")
        assert key.removeprefix("base_model.model.").rsplit(".lora_", 1)[0] in message, (key, message)


# -- adapter_config.json ------------------------------------------------------------------------

# For every key the schema reads: values of the wrong type (and out of range).
CONFIG_CASES = {
    "r": ["8", 0, -1, 2.5, True, None, 2**70, [4]],
    "lora_alpha": ["abc", True, [16], {"a": 1}, "NaN", "Infinity"],
    "rank_pattern": [[], "q_proj", {"q_proj": "4"}, {"q_proj": 0}, {"a{99999999999}": 4}, {"(": 4}],
    "alpha_pattern": [[], {"q_proj": "abc"}, {"q_proj": "NaN"}, {"[": 2}],
    "use_rslora": ["yes", 1],
    "use_dora": ["no", 0],
    "fan_in_fan_out": ["false", 1],
    "lora_bias": ["x", 0],
    "modules_to_save": ["lm_head", [1], {"a": 1}],
    "target_modules": [5, [1], {"a": 1}],
    "peft_type": [5, ["LORA"]],
    "task_type": [5, ["CAUSAL_LM"]],
    "base_model_name_or_path": [5, ["x"], {"path": "x"}],
    "bias": [5, ["none"]],
}
CONFIG_PARAMS = [(key, value) for key, values in CONFIG_CASES.items() for value in values]


def test_the_config_cases_cover_every_key_of_the_schema():
    from chatvector.io.schemas import AdapterConfigFile

    assert set(CONFIG_CASES) == set(AdapterConfigFile.model_fields)


def write_config_value(path, key, value):
    text = path.read_text()
    config = json.loads(text)
    if value in ("NaN", "Infinity") or (isinstance(value, dict) and "NaN" in value.values()):
        # JSON's non-standard literals, which Python's json module reads as floats
        config[key] = "@@"
        text = json.dumps(config).replace('"@@"', json.dumps(value).replace('"NaN"', "NaN").strip('"'))
    elif value is None:
        config.pop(key)
        text = json.dumps(config)
    else:
        config[key] = value
        text = json.dumps(config)
    path.write_text(text)


@pytest.mark.parametrize(("key", "value"), CONFIG_PARAMS, ids=[f"{k}={v!r}" for k, v in CONFIG_PARAMS])
@pytest.mark.parametrize("command", sorted(COMMANDS))
def test_a_wrongly_typed_config_field_names_file_and_key(
    key, value, command, monkeypatch, capsys, fresh, adapter, tmp_path
):
    path = adapter / "adapter_config.json"
    write_config_value(path, key, value)
    refused(monkeypatch, capsys, fresh, adapter, tmp_path, command, "InputError", str(path), f"'{key}")


@pytest.mark.parametrize(
    ("key", "value", "words"),
    [
        ("peft_type", "IA3", "only LORA"),
        ("use_dora", True, "plain LoRA only"),
        ("fan_in_fan_out", True, "plain LoRA only"),
        ("lora_bias", True, "plain LoRA only"),
    ],
)
@pytest.mark.parametrize("command", sorted(COMMANDS))
def test_a_config_of_another_kind_of_adapter_is_refused(
    key, value, words, command, monkeypatch, capsys, fresh, adapter, tmp_path
):
    path = adapter / "adapter_config.json"
    write_config_value(path, key, value)
    refused(monkeypatch, capsys, fresh, adapter, tmp_path, command, "InputError", str(path), f"'{key}'", words)


@pytest.mark.parametrize("text", ["{", "[1, 2]", "\xff", '{"r": ' + "9" * 5000 + "}"])
@pytest.mark.parametrize("command", sorted(COMMANDS))
def test_a_config_that_is_not_a_json_object_is_named(text, command, monkeypatch, capsys, fresh, adapter, tmp_path):
    path = adapter / "adapter_config.json"
    path.write_bytes(text.encode("latin-1"))
    refused(monkeypatch, capsys, fresh, adapter, tmp_path, command, "InputError", str(path))


def test_a_wrongly_typed_lora_manifest_is_named_before_a_scaled_copy(monkeypatch, capsys, fresh, adapter, tmp_path):
    path = adapter / "chatvector_lora.json"
    write_config_value(path, "ratio", "abc")
    refused(monkeypatch, capsys, fresh, adapter, tmp_path, "lora --ratio", str(path), "'ratio'")


# -- ratios -------------------------------------------------------------------------------------

BAD_RATIOS = ["nan", "inf", "-inf", "1e39", "-1e39", "1e-50"]
RATIO_WORDS = ("not a finite number", "does not fit in float32", "rounds to 0")


@pytest.mark.parametrize("ratio", BAD_RATIOS)
def test_a_ratio_that_cannot_be_used_is_refused_before_writing_a_scaled_copy(
    ratio, monkeypatch, capsys, fresh, adapter, tmp_path
):
    args = scale_args(adapter, tmp_path, ratio)
    message = outcome(monkeypatch, capsys, [*fresh.values(), adapter], tmp_path, args, 2, "InputError: --ratio")
    assert any(words in message for words in RATIO_WORDS), message


@pytest.mark.parametrize("ratio", BAD_RATIOS)
def test_a_ratio_that_cannot_be_used_is_refused_before_extracting(ratio, monkeypatch, capsys, fresh, vector, tmp_path):
    args = ["lora", vector, "--rank", "2", "--ratio", ratio, "-o", tmp_path / "out"]
    message = outcome(monkeypatch, capsys, [*fresh.values(), vector], tmp_path, args, 2, "InputError: --ratio")
    assert any(words in message for words in RATIO_WORDS), message


@pytest.mark.parametrize("dtype", [np.float32, np.float16])
def test_a_ratio_whose_scaled_factors_overflow_their_dtype_is_refused(
    dtype, monkeypatch, capsys, fresh, adapter, tmp_path
):
    def big(tensors):
        for key in tensors:
            tensors[key] = tensors[key].astype(dtype)
        tensors[B_KEY][0, 0] = 10.0

    rewrite(adapter, big)
    ratio = "1e38" if dtype == np.float32 else "1e4"  # 10 x 1e4 is past float16's 65504
    args = scale_args(adapter, tmp_path, ratio)
    outcome(monkeypatch, capsys, [*fresh.values(), adapter], tmp_path, args, 2, "--ratio", "overflows", MODULE)


def test_a_ratio_that_overflows_the_extracted_factors_is_refused(monkeypatch, capsys, fresh, vector, tmp_path):
    path = vector / "vector.safetensors"
    tensors = load_file(path)
    tensors[f"{MODULE}.weight"] *= np.float32(1e6)  # singular values ~1e5: lora_B entries far above 1
    save_file(tensors, path, metadata={"format": "pt"})
    args = ["lora", vector, "--rank", "2", "--ratio", "3e38", "-o", tmp_path / "out"]
    outcome(monkeypatch, capsys, [*fresh.values(), vector], tmp_path, args, 2, "--ratio", "overflows")


def test_a_scaled_copy_of_a_float16_adapter_keeps_its_dtype_and_scales_exactly(monkeypatch, capsys, adapter, tmp_path):
    rewrite(adapter, lambda t: t.update({k: v.astype(np.float16) for k, v in t.items()}))
    code, message = run_cli(monkeypatch, capsys, *scale_args(adapter, tmp_path, "0.5"))
    assert code == 0, message
    before, after = (
        load_file(adapter / "adapter_model.safetensors"),
        load_file(tmp_path / "out" / "adapter_model.safetensors"),
    )
    assert before.keys() == after.keys()
    for key, value in before.items():
        assert after[key].dtype == np.float16
        expected = value * np.float16(0.5) if ".lora_B." in key else value
        assert np.array_equal(after[key], expected), key


# -- a vector that lost a tensor ------------------------------------------------------------------


def test_a_vector_missing_a_listed_tensor_is_refused_by_lora_and_apply_alike(
    monkeypatch, capsys, fresh, vector, tmp_path
):
    path = vector / "vector.safetensors"
    original = path.read_bytes()
    names = sorted(load_file(path))
    assert names == sorted(json.loads((vector / "chatvector.json").read_text())["tensors"])
    for name in names:  # every tensor the manifest lists, dropped and then reshaped
        for change in ("drop", "reshape"):
            path.write_bytes(original)
            tensors = load_file(path)
            if change == "drop":
                tensors.pop(name)
            else:
                tensors[name] = np.ascontiguousarray(
                    tensors[name].reshape(-1)[:-1] if tensors[name].size > 1 else np.zeros(2, np.float32)
                )
            save_file(tensors, path, metadata={"format": "pt"})
            messages = []
            for args in (
                ["lora", vector, "--rank", "2", "-o", tmp_path / "out"],
                ["apply", "--target", fresh["cp"], "--vector", f"{vector}:0.5", "-o", tmp_path / "out"],
            ):
                message = outcome(
                    monkeypatch, capsys, [*fresh.values(), vector], tmp_path, args, 2, "CheckpointError", name
                )
                messages.append(message)
            assert "listed in chatvector.json" in messages[0] and messages[0] == messages[1], messages


# -- the config reader, fuzzed --------------------------------------------------------------------


def test_the_adapter_config_reader_fails_only_cleanly(tmp_path):
    """Documents around the keys the schema reads, values of every JSON type, some mutated byte by
    byte: only ChatVectorErrors, and what is accepted gives every module a finite scaling."""
    import math

    from hypothesis import HealthCheck, given, settings
    from hypothesis import strategies as st

    from chatvector.errors import ChatVectorError
    from chatvector.io.adapter import read_adapter_config

    leaf = st.one_of(
        st.none(),
        st.booleans(),
        st.integers(-(2**70), 2**70),
        st.floats(allow_nan=True),
        st.text(max_size=6),
        st.sampled_from(["LORA", "q_proj", "a{99999999999}", "(", "CAUSAL_LM"]),
    )
    value = st.recursive(
        leaf,
        lambda inner: st.one_of(st.lists(inner, max_size=3), st.dictionaries(st.text(max_size=5), inner, max_size=3)),
    )
    number = st.one_of(st.integers(-1, 9), st.floats(allow_nan=True, allow_infinity=True), value)
    pattern = st.dictionaries(st.sampled_from(["q_proj", "layers.0.q_proj", "(", "a{99999999999}", ".*"]), number)
    keys = {
        "r": st.one_of(st.integers(-2, 16), value),
        "lora_alpha": st.one_of(st.floats(allow_nan=True, allow_infinity=True), st.integers(-(2**70), 2**70), value),
        "rank_pattern": st.one_of(pattern, value),
        "alpha_pattern": st.one_of(pattern, value),
        "use_rslora": value,
        "use_dora": value,
        "peft_type": st.one_of(st.sampled_from(["LORA", "IA3"]), value),
        "modules_to_save": value,
        "target_modules": value,
        "base_model_name_or_path": value,
    }

    @st.composite
    def document(draw):
        chosen = draw(st.lists(st.sampled_from(sorted(keys)), unique=True, max_size=len(keys)))
        text = json.dumps({key: draw(keys[key]) for key in chosen}, allow_nan=True).encode()
        if draw(st.booleans()) and text:
            position = draw(st.integers(0, len(text) - 1))
            text = text[:position] + bytes([draw(st.integers(0, 255))]) + text[position + 1 :]
        return text

    folder = tmp_path / "adapter"
    folder.mkdir()

    @settings(max_examples=800, deadline=None, derandomize=True, database=None, suppress_health_check=list(HealthCheck))
    @given(document())
    def check(data):
        (folder / "adapter_config.json").write_bytes(data)
        try:
            config = read_adapter_config(folder)
        except ChatVectorError:
            return
        assert isinstance(config.r, int) and config.r >= 1
        for module in ("model.layers.0.self_attn.q_proj", "lm_head"):
            assert isinstance(config.rank(module), int) and config.rank(module) >= 1
            assert math.isfinite(config.scaling(module))

    check()
