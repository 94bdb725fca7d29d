"""Class 3: every malformed value gets a clean error naming its file and key (or option), never a
traceback.

Each JSON file chatvector reads is checked against a typed schema (io/schemas.py), the recipe
and a vector's manifest likewise; options are validated when parsed; file-system failures while
writing become an OutputError naming the path and the system's reason.
"""

from __future__ import annotations

import errno
import json
import os
import resource
import signal
import subprocess
import sys
from pathlib import Path

import pytest
from hardening_helpers import listing, outcome
from helpers import merge_args, run_cli

HUGE = 10**4999  # 5,000 digits: more than Python's int() accepts from text by default
CONFIG_VALUES = {
    "architectures": [5, "x", [["X"]], {"a": 1}],
    "model_type": [7, ["mistral"]],
    "vocab_size": [HUGE, "37", 37.0, -1, True, 2**60],
    "hidden_size": ["32", 32.5, "thirty-two"],
    "num_hidden_layers": [[2], -2],
    "tie_word_embeddings": ["yes", 1],
    "eos_token_id": [[[3]], "</s>", -3, 2**40, 3.0],
    "auto_map": [["x"], "modeling_x.X"],
}
CONFIG_CASES = [(key, value) for key, values in CONFIG_VALUES.items() for value in values]


def label(value) -> str:
    return "5000 digits" if value is HUGE else str(value)[:12]


def set_key(path: Path, key: str, value) -> None:
    """Write ``key: value`` into a JSON file (a 5,000-digit integer written literally)."""
    data = json.loads(path.read_text()) if path.exists() else {}
    data[key] = "@HUGE@" if value is HUGE else value
    path.write_text(json.dumps(data).replace('"@HUGE@"', "9" * 5000))


def check(monkeypatch, capsys, fresh, tmp_path, args, *words) -> str:
    return outcome(monkeypatch, capsys, fresh.values(), tmp_path, args, 2, *words)


@pytest.mark.parametrize("role", ["cp", "chat", "base"])
@pytest.mark.parametrize(("key", "value"), CONFIG_CASES, ids=[f"{k}={label(v)}" for k, v in CONFIG_CASES])
def test_config_values_of_the_wrong_type(key, value, role, monkeypatch, capsys, fresh, tmp_path):
    set_key(fresh[role] / "config.json", key, value)
    expected = ("number too long",) if value is HUGE else ("InputError", f"key '{key}")
    check(
        monkeypatch,
        capsys,
        fresh,
        tmp_path,
        merge_args(fresh, tmp_path / "out"),
        str(fresh[role] / "config.json"),
        *expected,
    )


GENERATION_CASES = [
    ("eos_token_id", [[6], [3]]),
    ("eos_token_id", [6, [3]]),
    ("eos_token_id", "<|end|>"),
    ("eos_token_id", -1),
    ("pad_token_id", {"id": 1}),
    ("bos_token_id", 2.5),
    ("eos_token_id", HUGE),
]


@pytest.mark.parametrize("role", ["chat", "cp"])
@pytest.mark.parametrize(("key", "value"), GENERATION_CASES, ids=[f"{k}={label(v)}" for k, v in GENERATION_CASES])
def test_generation_config_values_of_the_wrong_type(key, value, role, monkeypatch, capsys, fresh, tmp_path):
    set_key(fresh[role] / "generation_config.json", key, value)
    expected = ("number too long",) if value is HUGE else ("InputError", f"key '{key}")
    check(
        monkeypatch,
        capsys,
        fresh,
        tmp_path,
        merge_args(fresh, tmp_path / "out"),
        str(fresh[role] / "generation_config.json"),
        *expected,
    )


TOKENIZER_CASES = [
    ("chat", "tokenizer_config.json", "chat_template", 5),
    ("chat", "tokenizer_config.json", "chat_template", [5]),
    ("chat", "tokenizer_config.json", "chat_template", [{"name": "default"}]),
    ("chat", "tokenizer_config.json", "eos_token", 3),
    ("chat", "tokenizer_config.json", "eos_token", {"id": 3}),
    ("cp", "tokenizer_config.json", "eos_token", ["</s>"]),
    ("cp", "tokenizer_config.json", "auto_map", 5),
    ("cp", "special_tokens_map.json", "eos_token", 3),
    ("chat", "special_tokens_map.json", "pad_token", [1]),
    ("cp", "special_tokens_map.json", "additional_special_tokens", "<x>"),
    ("chat", "tokenizer.json", "added_tokens", [{"content": 5}]),
    ("chat", "tokenizer.json", "added_tokens", "none"),
]


@pytest.mark.parametrize(
    ("role", "name", "key", "value"),
    TOKENIZER_CASES,
    ids=[f"{r}/{n}:{k}={str(v)[:10]}" for r, n, k, v in TOKENIZER_CASES],
)
def test_tokenizer_files_with_values_of_the_wrong_type(role, name, key, value, monkeypatch, capsys, fresh, tmp_path):
    set_key(fresh[role] / name, key, value)
    words = (
        ("CheckpointError", "cannot be read as a tokenizer")
        if name == "tokenizer.json" and role == "cp"
        else (f"key '{key}",)
        if name != "tokenizer.json"
        else ()
    )
    check(monkeypatch, capsys, fresh, tmp_path, merge_args(fresh, tmp_path / "out"), str(fresh[role] / name), *words)


@pytest.mark.parametrize("value", [5, [{"name": "default", "template": 5}], None])
def test_chat_template_json_of_the_wrong_type(value, monkeypatch, capsys, fresh, tmp_path):
    (fresh["chat"] / "chat_template.jinja").unlink()
    (fresh["chat"] / "chat_template.json").write_text(json.dumps({"chat_template": value}))
    check(
        monkeypatch,
        capsys,
        fresh,
        tmp_path,
        merge_args(fresh, tmp_path / "out"),
        str(fresh["chat"] / "chat_template.json"),
        "key 'chat_template",
    )


@pytest.mark.parametrize("name", ["vocab.json", "added_tokens.json"])
@pytest.mark.parametrize("content", [{"hello": "one"}, {"hello": -4}, {"hello": [1]}, [1, 2]])
def test_token_maps_of_the_wrong_type(name, content, monkeypatch, capsys, fresh, tmp_path):
    """A target whose vocabulary comes from vocab.json (no tokenizer.json)."""
    cp = fresh["cp"]
    vocab = json.loads((cp / "tokenizer.json").read_text())["model"]["vocab"]
    (cp / "tokenizer.json").unlink()
    (cp / "vocab.json").write_text(json.dumps(vocab))
    (cp / name).write_text(json.dumps(content))
    check(monkeypatch, capsys, fresh, tmp_path, merge_args(fresh, tmp_path / "out"), str(cp / name))


INDEX_CASES = {
    "weight_map a list": {"weight_map": ["model.safetensors"]},
    "weight_map empty": {"weight_map": {}},
    "no weight_map": {"metadata": {}},
    "metadata a number": {"metadata": 5, "weight_map": {"x": "model.safetensors"}},
    "a list": [1],
}


@pytest.mark.parametrize("case", sorted(INDEX_CASES))
def test_index_files_of_the_wrong_shape(case, monkeypatch, capsys, fresh, tmp_path):
    index = fresh["chat"] / "model.safetensors.index.json"
    index.write_text(json.dumps(INDEX_CASES[case]))
    check(monkeypatch, capsys, fresh, tmp_path, merge_args(fresh, tmp_path / "out"), str(index))


@pytest.fixture
def vector(monkeypatch, capsys, fresh, tmp_path):
    code, message = run_cli(
        monkeypatch, capsys, "extract", "--base", fresh["base"], "--chat", fresh["chat"], "-o", tmp_path / "vector"
    )
    assert code == 0, message
    return tmp_path / "vector"


@pytest.mark.parametrize(
    ("key", "value"),
    [
        ("tensors", {"x": [2**50]}),
        ("tensors", {"x": "2x2"}),
        ("excluded", 5),
        ("architecture", []),
        ("format_version", "one"),
        ("base", "model"),
    ],
)
def test_vector_manifests_of_the_wrong_type(key, value, monkeypatch, capsys, fresh, vector, tmp_path):
    set_key(vector / "chatvector.json", key, value)
    outcome(
        monkeypatch,
        capsys,
        [*fresh.values(), vector],
        tmp_path,
        ["apply", "--target", fresh["cp"], "--vector", f"{vector}:0.5", "-o", tmp_path / "out"],
        2,
        str(vector / "chatvector.json"),
        f"key '{key}",
        "extract it again",
    )


RECIPES = {
    "a directory": (None, "directory"),
    "not UTF-8": (b"target: \xff\n", "not UTF-8"),
    "not YAML": (b"terms: [\n", "not valid YAML"),
    "a list": (b"[1, 2]\n", "invalid recipe"),
    "a string": (b"just words\n", "invalid recipe"),
    "terms a number": (b"target: t\nterms: 5\n", "terms"),
    "a term without a model": (b"target: t\nterms: [{ratio: 1}]\n", "terms.0"),
    "a 5,000-digit ratio": (b"target: t\nterms: [{vector: v, ratio: " + b"9" * 5000 + b"}]\n", "cannot be read"),
    "an infinite ratio": (b"target: t\nterms: [{vector: v, ratio: .inf}]\n", "not a finite number"),
    "a ratio that is 0 in float32": (b"target: t\nterms: [{vector: v, ratio: 1e-50}]\n", "rounds to 0"),
    "a ratio beyond float32": (b"target: t\nterms: [{vector: v, ratio: 1e39}]\n", "does not fit in float32"),
    "an invalid --exclude regex": (
        b"target: t\nterms: [{vector: v}]\noptions: {exclude: ['(']}\n",
        "not a valid regular expression",
    ),
    "an --exclude regex repeating too often": (
        b"target: t\nterms: [{vector: v}]\noptions: {exclude: ['a{9999999999}']}\n",
        "not a valid regular expression",
    ),
    "a date for a path": (b"target: 2024-01-01\nterms: [{vector: v}]\n", "target"),
    "aliases": (b"x: &x {vector: v}\ntarget: t\nterms: [*x, *x]\n", "aliases"),
    "a python tag": (b"target: !!python/name:os.system\nterms: [{vector: v}]\n", "not valid YAML"),
    "empty": (b"", "invalid recipe"),
}


@pytest.mark.parametrize("case", sorted(RECIPES))
def test_recipes_that_cannot_be_used(case, monkeypatch, capsys, fresh, tmp_path):
    content, expected = RECIPES[case]
    recipe = tmp_path / "recipe.yaml"
    if content is None:
        recipe.mkdir()
    else:
        recipe.write_bytes(content)
    check(
        monkeypatch,
        capsys,
        fresh,
        tmp_path,
        ["merge", "--recipe", recipe, "-o", tmp_path / "out"],
        "InputError",
        str(recipe),
        expected,
    )


OPTIONS = [
    ("--shard-size", "nan", "--shard-size"),
    ("--shard-size", "-5GB", "--shard-size"),
    ("--shard-size", "0", "--shard-size"),
    ("--shard-size", "5 parsecs", "--shard-size"),
    ("--shard-size", "inf", "--shard-size"),
    ("--exclude", "(", "--exclude"),
    ("--exclude", "[z-a]", "--exclude"),
    ("--exclude", "a{99999999999}", "--exclude"),
    ("--threads", "0", "--threads"),
    ("--threads", "100000", "--threads"),
]


@pytest.mark.parametrize(("flag", "value", "named"), OPTIONS, ids=[f"{f} {v}" for f, v, _ in OPTIONS])
def test_option_values_that_cannot_be_used(flag, value, named, monkeypatch, capsys, fresh, tmp_path):
    check(monkeypatch, capsys, fresh, tmp_path, [*merge_args(fresh, tmp_path / "out"), flag, value], named)


@pytest.mark.parametrize("shape", [[0, 2**70], [2**40, 2**40, 0, 2**40], [2**62, 4], [1] * 17, [2**41]])
def test_shapes_whose_product_overflows(shape, monkeypatch, capsys, fresh, tmp_path):
    import struct

    header = json.dumps({"big": {"dtype": "F32", "shape": shape, "data_offsets": [0, 0]}}).encode()
    path = fresh["chat"] / "model.safetensors"
    path.write_bytes(struct.pack("<Q", len(header)) + header)
    check(
        monkeypatch, capsys, fresh, tmp_path, merge_args(fresh, tmp_path / "out"), "CheckpointError", str(path), "'big'"
    )


def test_an_out_whose_parent_is_a_file(monkeypatch, capsys, fresh, tmp_path):
    (tmp_path / "file").write_text("not a directory")
    for out in (tmp_path / "file" / "out", tmp_path / "file" / "deeper" / "out"):
        check(
            monkeypatch,
            capsys,
            fresh,
            tmp_path,
            merge_args(fresh, out),
            "OutputError",
            str(tmp_path / "file"),
            "is a file",
        )


@pytest.mark.parametrize("length", [240, 255])
def test_an_out_name_near_the_name_limit_works_and_leaves_only_out(length, monkeypatch, capsys, fresh, tmp_path):
    """The lock and staging names are longer than OUT's; near NAME_MAX they are shortened."""
    parent = tmp_path / "outputs"
    parent.mkdir()
    out = parent / ("m" * length)
    code, message = run_cli(monkeypatch, capsys, *merge_args(fresh, out))
    assert code == 0, message
    assert listing(parent) == [out.name]
    code, message = run_cli(monkeypatch, capsys, *merge_args(fresh, out), "--force")
    assert code == 0 and listing(parent) == [out.name], message


@pytest.mark.parametrize("name", ["m" * 256, "深" * 86])  # 256 and 258 bytes
def test_an_out_name_beyond_the_name_limit(name, monkeypatch, capsys, fresh, tmp_path):
    check(
        monkeypatch, capsys, fresh, tmp_path, merge_args(fresh, tmp_path / name), "OutputError", "longer than the 255"
    )


@pytest.mark.parametrize(
    ("where", "error"),
    [
        ("mkdir", errno.EROFS),
        ("open", errno.EROFS),
        ("mkdir", errno.EACCES),
        ("rename", errno.EXDEV),
        ("open", errno.EIO),
    ],
)
def test_file_system_refusals_are_clean_errors(where, error, monkeypatch, capsys, fresh, tmp_path):
    """A read-only file system, no permission (we may be root, who has every permission), a rename
    across devices, an I/O error: each is an OutputError naming the path and the system's reason."""
    real = {"mkdir": os.mkdir, "open": os.open, "rename": os.rename}[where]
    parent = tmp_path / "outputs"
    parent.mkdir()

    def refuse(path, *args, **kwargs):
        if str(path).startswith(str(parent)) and (where != "open" or "chatvector-lock" in str(path)):
            raise OSError(error, os.strerror(error), str(path))
        return real(path, *args, **kwargs)

    monkeypatch.setattr(os, where, refuse)
    outcome(
        monkeypatch,
        capsys,
        fresh.values(),
        parent,
        merge_args(fresh, parent / "out"),
        2,
        "OutputError",
        str(parent),
        os.strerror(error),
    )


def limit_file_size(limit: int):
    def apply() -> None:
        signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
        resource.setrlimit(resource.RLIMIT_FSIZE, (limit, limit))

    return apply


@pytest.mark.slow
@pytest.mark.parametrize("name", ["merges.txt", "tokenizer.json"])
def test_a_full_disk_while_copying_a_tokenizer_file(name, fresh, tmp_path):
    """Each output file is capped at 8 MiB (RLIMIT_FSIZE); the shard is tiny but the tokenizer file
    is 12 MB, so the disk "fills" while copying it, not while writing tensors."""
    path = fresh["cp"] / name
    if name == "merges.txt":
        path.write_bytes(b"a b\n" * (3 * 2**20))
    else:
        data = json.loads(path.read_text())
        data["added_tokens"][0]["content"] += " " * (12 * 2**20)  # a long token: still a valid tokenizer
        path.write_text(json.dumps(data))
    exe = Path(sys.executable).parent / "chatvector"
    args = [str(exe), *map(str, merge_args(fresh, tmp_path / "out"))]
    from hardening_helpers import fingerprint

    before, beside = fingerprint(*fresh.values()), listing(tmp_path)
    done = subprocess.run(args, capture_output=True, text=True, preexec_fn=limit_file_size(8 * 2**20), timeout=300)
    message = " ".join(done.stderr.split())
    assert done.returncode == 2, message
    assert "OutputError: no space left writing" in message and name in message and "Traceback" not in message
    assert listing(tmp_path) == beside and fingerprint(*fresh.values()) == before


def test_a_read_error_mid_merge_names_the_file(monkeypatch, capsys, fresh, tmp_path):
    """A failing disk (EIO) while streaming a tensor: a CheckpointError naming the file and tensor."""
    real = os.preadv
    chat_weights = str(fresh["chat"] / "model.safetensors")

    def failing(fd, buffers, offset):
        if os.readlink(f"/proc/self/fd/{fd}") == chat_weights:
            raise OSError(errno.EIO, os.strerror(errno.EIO))
        return real(fd, buffers, offset)

    monkeypatch.setattr(os, "preadv", failing)
    outcome(
        monkeypatch,
        capsys,
        fresh.values(),
        tmp_path,
        merge_args(fresh, tmp_path / "out"),
        2,
        "CheckpointError",
        chat_weights,
        "Input/output error",
        "cannot read tensor",
    )


@pytest.mark.parametrize(
    ("error", "filename"), [(errno.EACCES, "/data/models/x"), (errno.EROFS, None), (errno.ENAMETOOLONG, "/x" * 3)]
)
def test_an_unforeseen_os_error_is_one_clean_line(error, filename, monkeypatch, capsys, fresh, tmp_path):
    """The top-level handler: an OSError no code path anticipated prints the path and the reason."""
    import chatvector.api

    def fail(*args, **kwargs):
        raise OSError(error, os.strerror(error), filename)

    monkeypatch.setattr(chatvector.api, "merge", fail)
    words = ["OSError", os.strerror(error)] + ([filename] if filename else [])
    outcome(monkeypatch, capsys, fresh.values(), tmp_path, merge_args(fresh, tmp_path / "out"), 2, *words)
