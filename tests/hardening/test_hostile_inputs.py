"""Hostile and broken checkpoints: each refused with a clear error before anything is written.

Every test goes through the CLI with private copies of a tiny trio (the ``fresh`` fixture) and
checks, through ``check_failure``, the error text, a non-zero exit, no output or staging directory
left behind, and inputs byte-for-byte untouched.
"""

from __future__ import annotations

import json
import os
import struct
import tracemalloc

import pytest
import torch
from helpers import check_failure, merge_args, no_leftovers, run_cli, snapshot
from safetensors.torch import load_file, save_file

from chatvector.errors import CheckpointError
from chatvector.io.safetensors_header import read_header


def raw_safetensors(header: bytes | dict, data: bytes = b"", claimed_length: int | None = None) -> bytes:
    text = header if isinstance(header, bytes) else json.dumps(header).encode()
    length = len(text) if claimed_length is None else claimed_length
    return struct.pack("<Q", length) + text + data


def f32(offsets, shape=(2,)):
    return {"dtype": "F32", "shape": list(shape), "data_offsets": list(offsets)}


HOSTILE_HEADERS = {
    "absurd length": (raw_safetensors(b"{}", claimed_length=2**63 - 1), "header claims 9223372036854775807 bytes"),
    "length past the end": (raw_safetensors(b"{}", b"", claimed_length=4096), "header claims 4096 bytes"),
    "overlapping tensors": (raw_safetensors({"a": f32([0, 8]), "b": f32([4, 12])}, bytes(12)), "overlap on disk"),
    "span past the end": (raw_safetensors({"a": f32([0, 4096], (1024,))}, bytes(8)), "spans bytes [0, 4096)"),
    "negative offset": (raw_safetensors({"a": f32([-8, 0])}, bytes(8)), "spans bytes [-8, 0)"),
    "dtype and shape do not fit the span": (
        raw_safetensors({"a": f32([0, 8], (4, 4))}, bytes(8)),
        "need 64 bytes but its span holds 8",
    ),
    "unknown dtype": (
        raw_safetensors({"a": {"dtype": "F128", "shape": [1], "data_offsets": [0, 16]}}, bytes(16)),
        "unknown dtype 'F128'",
    ),
    "float in shape": (
        raw_safetensors({"a": {"dtype": "F32", "shape": [2.0], "data_offsets": [0, 8]}}, bytes(8)),
        "non-integer number '2.0'",
    ),
    # Numbers are bounded at the parser: a 5,000-digit one would otherwise reach int(), which Python
    # refuses above 4,300 digits with a ValueError; NaN and Infinity are JSON extensions no header uses.
    "5,000-digit dimension": (
        raw_safetensors(b'{"a": {"dtype": "F32", "shape": [' + b"9" * 5000 + b'], "data_offsets": [0, 8]}}', bytes(8)),
        "a number of 5000 digits",
    ),
    "5,000-digit offset": (
        raw_safetensors(b'{"a": {"dtype": "F32", "shape": [2], "data_offsets": [0, -' + b"1" * 5000 + b"]}}", bytes(8)),
        "a number of 5000 digits",
    ),
    "NaN offset": (
        raw_safetensors(b'{"a": {"dtype": "F32", "shape": [2], "data_offsets": [0, NaN]}}', bytes(8)),
        "non-integer number 'NaN'",
    ),
    # The tensors must tile the data area exactly, as the reference implementation demands.
    "16 bytes after the last tensor": (
        raw_safetensors({"a": f32([0, 8])}, bytes(8 + 16)),
        "16 bytes after the last tensor belong to no tensor",
    ),
    "a gap between tensors": (
        raw_safetensors({"a": f32([0, 8]), "b": f32([16, 24])}, bytes(24)),
        "8 bytes before tensor 'b' belong to no tensor",
    ),
    "a gap before the first tensor": (
        raw_safetensors({"a": f32([8, 16])}, bytes(16)),
        "8 bytes before tensor 'a' belong to no tensor",
    ),
    "data but no tensors": (raw_safetensors({"__metadata__": {}}, bytes(8)), "8 bytes after the last tensor"),
    "duplicate names": (
        raw_safetensors(
            b'{"a":' + json.dumps(f32([0, 8])).encode() + b',"a":' + json.dumps(f32([0, 8])).encode() + b"}", bytes(8)
        ),
        "duplicate tensor name 'a'",
    ),
    "non-UTF-8 header": (raw_safetensors(b'{"\xff\xfe": 1}', bytes(8)), "not valid UTF-8 JSON"),
    "non-JSON header": (raw_safetensors(b'{"a": [0, ', bytes(8)), "not valid UTF-8 JSON"),
    "header is a list": (raw_safetensors(b"[1, 2, 3]", bytes(8)), "not a JSON object"),
    "deeply nested header": (raw_safetensors(b"[" * 100_000 + b"]" * 100_000), "nested too deeply"),
    "metadata not strings": (raw_safetensors({"__metadata__": {"format": 1}}), "__metadata__ must map strings"),
    "shorter than its length prefix": (b"\x10\x00\x00", "too short to be safetensors"),
}


@pytest.mark.parametrize("case", sorted(HOSTILE_HEADERS))
def test_hostile_safetensors_header_is_refused(case, monkeypatch, capsys, fresh, tmp_path):
    content, expected = HOSTILE_HEADERS[case]
    weights = fresh["chat"] / "model.safetensors"
    weights.write_bytes(content)
    check_failure(
        monkeypatch,
        capsys,
        fresh,
        tmp_path,
        merge_args(fresh, tmp_path / "out"),
        "CheckpointError",
        str(weights),
        expected,
    )


def test_trailing_bytes_on_a_real_input_fail_merge_and_verify(monkeypatch, capsys, fresh, tmp_path):
    """16 bytes appended to a real checkpoint: refused by merge's preflight; and an output merged
    before the change fails `verify --recompute` with the same message, no traceback."""
    code, message = run_cli(monkeypatch, capsys, *merge_args(fresh, tmp_path / "before"))
    assert code == 0, message
    weights = fresh["chat"] / "model.safetensors"
    with weights.open("ab") as handle:
        handle.write(bytes(16))
    expected = "16 bytes after the last tensor belong to no tensor"
    check_failure(monkeypatch, capsys, fresh, tmp_path, merge_args(fresh, tmp_path / "out"), str(weights), expected)
    code, message = run_cli(monkeypatch, capsys, "verify", tmp_path / "before", "--recompute")
    assert code == 1 and "FAILED" in message and expected in message and "Traceback" not in message, message


def test_absurd_header_length_allocates_nothing(tmp_path):
    path = tmp_path / "huge.safetensors"
    path.write_bytes(raw_safetensors(b"{}", bytes(64), claimed_length=99_000_000))
    tracemalloc.start()
    with pytest.raises(CheckpointError, match="header claims 99000000 bytes"):
        read_header(path)
    peak = tracemalloc.get_traced_memory()[1]
    tracemalloc.stop()
    assert peak < 1_000_000, f"parsing a lying header allocated {peak} bytes"


def shard_cp_with_index(fresh, filename: str) -> None:
    """Turn the CP model into an 'indexed' checkpoint whose weight map names ``filename``."""
    cp = fresh["cp"]
    names = sorted(load_file(cp / "model.safetensors"))
    (cp / "model.safetensors").rename(cp / "model-00001-of-00001.safetensors")
    weight_map = {name: filename for name in names}
    (cp / "model.safetensors.index.json").write_text(json.dumps({"metadata": {}, "weight_map": weight_map}))


@pytest.mark.parametrize("where", ["parent", "absolute", "nested", "not a string"])
def test_index_pointing_outside_the_model_is_refused(where, monkeypatch, capsys, fresh, tmp_path):
    outside = tmp_path / "outside.safetensors"
    save_file({"w": torch.zeros(2)}, outside)
    filename = {
        "parent": "../../outside.safetensors",
        "absolute": str(outside),
        "nested": "sub/../x.safetensors",
        "not a string": 7,
    }[where]
    shard_cp_with_index(fresh, filename)
    check_failure(
        monkeypatch,
        capsys,
        fresh,
        tmp_path,
        merge_args(fresh, tmp_path / "out"),
        "CheckpointError",
        "model.safetensors.index.json",
        "refusing to read outside",
    )


def test_shard_symlink_leading_outside_is_refused(monkeypatch, capsys, fresh, tmp_path):
    shard_cp_with_index(fresh, "model-00001-of-00001.safetensors")
    shard = fresh["cp"] / "model-00001-of-00001.safetensors"
    stash = tmp_path / "elsewhere" / "weights.safetensors"
    stash.parent.mkdir()
    shard.rename(stash)
    shard.symlink_to(stash)
    check_failure(
        monkeypatch,
        capsys,
        fresh,
        tmp_path,
        merge_args(fresh, tmp_path / "out"),
        "CheckpointError",
        "is a link leading outside",
        "refusing it",
    )


def test_single_file_symlink_leading_outside_is_refused(monkeypatch, capsys, fresh, tmp_path):
    weights = fresh["base"] / "model.safetensors"
    stash = tmp_path / "stash.safetensors"
    weights.rename(stash)
    weights.symlink_to(stash)
    check_failure(
        monkeypatch,
        capsys,
        fresh,
        tmp_path,
        merge_args(fresh, tmp_path / "out"),
        "CheckpointError",
        "is a link leading outside",
    )


@pytest.mark.parametrize(
    ("role", "file", "expected"),
    [
        ("cp", "config.json", "is not valid JSON"),
        ("chat", "config.json", "is not valid JSON"),
        ("cp", "tokenizer.json", "cannot be read as a tokenizer"),
        ("chat", "tokenizer_config.json", "is not valid JSON"),
    ],
)
def test_unreadable_json_files_are_named(role, file, expected, monkeypatch, capsys, fresh, tmp_path):
    (fresh[role] / file).write_text('{"model_type": "mistral", ')
    check_failure(
        monkeypatch, capsys, fresh, tmp_path, merge_args(fresh, tmp_path / "out"), str(fresh[role] / file), expected
    )


EVIL_MODULE = """
import pathlib
pathlib.Path({marker!r}).write_text("remote code ran")
"""


def plant_remote_code(folder, marker) -> None:
    """A config and tokenizer config that ask transformers to import code shipped with the model."""
    for module in ("modeling_evil", "configuration_evil", "tokenization_evil"):
        (folder / f"{module}.py").write_text(EVIL_MODULE.format(marker=str(marker)))
    config = json.loads((folder / "config.json").read_text())
    config["auto_map"] = {
        "AutoConfig": "configuration_evil.EvilConfig",
        "AutoModelForCausalLM": "modeling_evil.EvilModel",
    }
    (folder / "config.json").write_text(json.dumps(config))
    tokenizer_config = json.loads((folder / "tokenizer_config.json").read_text())
    tokenizer_config["auto_map"] = {"AutoTokenizer": ["tokenization_evil.EvilTokenizer", None]}
    (folder / "tokenizer_config.json").write_text(json.dumps(tokenizer_config))


def test_remote_code_in_configs_is_never_executed(monkeypatch, capsys, fresh, tmp_path):
    marker = tmp_path / "remote-code-ran"
    for folder in fresh.values():
        plant_remote_code(folder, marker)
    (fresh["cp"] / "tokenizer.json").unlink()  # force the AutoTokenizer path for the target's vocabulary
    before = snapshot(*fresh.values())
    commands = [
        merge_args(fresh, tmp_path / "merged"),
        ["extract", "--base", fresh["base"], "--chat", fresh["chat"], "-o", tmp_path / "vector"],
        ["apply", "--target", fresh["cp"], "--vector", f"{tmp_path / 'vector'}:0.5", "-o", tmp_path / "applied"],
        ["verify", tmp_path / "merged", "--recompute"],
        ["inspect", tmp_path / "vector", fresh["cp"], "--base", fresh["base"], "--plot", tmp_path / "map.png"],
    ]
    for command in commands:
        code, message = run_cli(monkeypatch, capsys, *command)
        assert code == 0, (command[0], message)
        assert not marker.exists(), f"{command[0]} ran code shipped with a checkpoint"
    assert snapshot(*fresh.values()) == before
    # The target's code goes with the output, so that trust_remote_code can load it, as bytes only.
    for output in ("merged", "applied"):
        copied = sorted(path.name for path in (tmp_path / output).glob("*.py"))
        assert copied == ["configuration_evil.py", "modeling_evil.py", "tokenization_evil.py"], output
        assert all((tmp_path / output / name).read_bytes() == (fresh["cp"] / name).read_bytes() for name in copied)
        assert "copied unexecuted" in (tmp_path / output / "README.md").read_text()
    assert not list((tmp_path / "vector").glob("*.py")), "a vector is not a model: no code"


def test_model_code_linked_from_outside_is_refused(monkeypatch, capsys, fresh, tmp_path):
    """Like every file chatvector reads or copies (tests/hardening/test_outside_files.py), a code file
    linked from outside the model is refused, naming it, before any tensor is computed."""
    plant_remote_code(fresh["cp"], tmp_path / "remote-code-ran")
    outside = tmp_path / "elsewhere.py"
    outside.write_text("SECRET = 1\n")
    (fresh["cp"] / "modeling_evil.py").unlink()
    (fresh["cp"] / "modeling_evil.py").symlink_to(outside)
    message = check_failure(
        monkeypatch,
        capsys,
        fresh,
        tmp_path,
        merge_args(fresh, tmp_path / "out"),
        "CheckpointError",
        "modeling_evil.py",
        "link leading outside",
    )
    assert "SECRET" not in message


class RunsCodeWhenUnpickled:
    def __init__(self, marker):
        self.marker = marker

    def __reduce__(self):
        return (os.system, (f"touch {self.marker}",))


@pytest.mark.parametrize("opt_in", [False, True])
def test_pickle_that_runs_code_is_never_unpickled_unsafely(opt_in, monkeypatch, capsys, fresh, tmp_path):
    marker = tmp_path / "pickle-code-ran"
    weights = fresh["chat"] / "model.safetensors"
    state = load_file(weights)
    state["model.norm.weight"] = RunsCodeWhenUnpickled(marker)
    torch.save(state, fresh["chat"] / "pytorch_model.bin")
    weights.unlink()
    args = merge_args(fresh, tmp_path / "out") + (["--allow-pickle"] if opt_in else [])
    expected = ("weights_only", "pytorch_model.bin") if opt_in else ("--allow-pickle", "pytorch_model.bin")
    check_failure(monkeypatch, capsys, fresh, tmp_path, args, "CheckpointError", *expected)
    assert not marker.exists()


@pytest.mark.parametrize(("role", "value"), [("chat", float("nan")), ("cp", float("inf")), ("base", float("-inf"))])
def test_nonfinite_input_is_named_and_can_be_allowed(role, value, monkeypatch, capsys, fresh, tmp_path):
    weights = fresh[role] / "model.safetensors"
    state = load_file(weights)
    name = "model.layers.0.mlp.up_proj.weight"
    state[name][1, 2] = value
    save_file(state, weights, metadata={"format": "pt"})
    args = merge_args(fresh, tmp_path / "out")
    check_failure(
        monkeypatch,
        capsys,
        fresh,
        tmp_path,
        args,
        "NonFiniteError",
        name,
        str(fresh[role]),
        "model.safetensors",
        "--allow-nonfinite",
    )
    code, message = run_cli(monkeypatch, capsys, *args, "--allow-nonfinite")
    assert code == 0, message
    merged = load_file(tmp_path / "out" / "model.safetensors")
    assert not torch.isfinite(merged[name][1, 2])
    assert torch.isfinite(merged[name]).sum() == merged[name].numel() - 1
    assert no_leftovers(tmp_path, "out") is False  # the allowed merge did write OUT
