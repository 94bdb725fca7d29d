"""Class 1: nothing from outside a model directory gets into an output.

Every file chatvector reads or copies from a model (tokenizer files, configs, templates, the index,
a vector's manifest) must be a regular file inside its model directory once links are followed,
and smaller than a bound. A link to a secret elsewhere, a FIFO, a directory, a link loop or a huge
file in its place is refused before any tensor is computed, naming the file; the merge writes
nothing and the inputs are untouched.
"""

from __future__ import annotations

import os
import shutil

import pytest
from hardening_helpers import outcome
from helpers import merge_args, run_cli

SECRET = '{"api_key": "hunter2-do-not-publish"}\n'

# (model, file) pairs: every kind of small file the merge reads or copies.
FILES = [
    ("cp", "config.json"),
    ("cp", "generation_config.json"),
    ("cp", "tokenizer.json"),
    ("cp", "tokenizer_config.json"),
    ("cp", "special_tokens_map.json"),
    ("cp", "merges.txt"),
    ("cp", "vocab.json"),
    ("cp", "tokenizer.model"),
    ("cp", "added_tokens.json"),
    ("cp", "vocab.txt"),
    ("cp", "model.safetensors.index.json"),
    ("chat", "chat_template.jinja"),
    ("chat", "generation_config.json"),
    ("chat", "tokenizer_config.json"),
    ("chat", "config.json"),
    ("chat", "tokenizer.json"),
    ("chat", "chat_template.json"),
    ("chat", "additional_chat_templates/tool_use.jinja"),
    ("base", "config.json"),
    ("base", "tokenizer.json"),
]


def plant(fresh, tmp_path, role: str, name: str, kind: str) -> None:
    """Put something other than a regular file of the model at ``role``/``name``."""
    path = fresh[role] / name
    path.parent.mkdir(exist_ok=True)
    if name == "chat_template.json":  # read only where no chat_template.jinja takes priority
        (fresh[role] / "chat_template.jinja").unlink()
    original = path.read_bytes() if path.is_file() else SECRET.encode()
    if path.exists():
        path.unlink()
    if kind == "link":  # a link to a file outside the model, valid for its kind: it would be copied
        outside = tmp_path / "elsewhere" / name.replace("/", "_")
        outside.parent.mkdir(exist_ok=True)
        outside.write_bytes(original if name != "merges.txt" else SECRET.encode())
        path.symlink_to(outside)
    elif kind == "link to a parent's file":  # relative, through ..
        (tmp_path / "credentials.json").write_text(SECRET)
        path.symlink_to(os.path.relpath(tmp_path / "credentials.json", path.parent))
    elif kind == "fifo":
        os.mkfifo(path)
    elif kind == "directory":
        path.mkdir()
    elif kind == "oversized":  # sparse: 300 MB claimed, nothing on disk
        with open(path, "wb") as handle:
            handle.truncate(300 * 2**20)
    elif kind == "link loop":
        path.symlink_to(path.name)


EXPECTED = {
    "link": "link leading outside",
    "link to a parent's file": "link leading outside",
    "fifo": "FIFO, not a regular file",
    "directory": "directory",
    "oversized": "bytes, more than",
    "link loop": "link leading outside",
}


def check_refused(monkeypatch, capsys, fresh, tmp_path, role, name, kind, args=None) -> str:
    message = outcome(
        monkeypatch,
        capsys,
        fresh.values(),
        tmp_path,
        args or merge_args(fresh, tmp_path / "out"),
        2,
        "CheckpointError",
        str(fresh[role] / name),
        EXPECTED[kind],
    )
    assert "hunter2" not in message
    return message


@pytest.mark.parametrize(("role", "name"), FILES, ids=[f"{r}/{n}" for r, n in FILES])
def test_a_file_linked_from_outside_the_model_is_refused(role, name, monkeypatch, capsys, fresh, tmp_path):
    plant(fresh, tmp_path, role, name, "link")
    check_refused(monkeypatch, capsys, fresh, tmp_path, role, name, "link")


SPECIAL = [
    ("cp", "config.json"),
    ("cp", "tokenizer.json"),
    ("cp", "merges.txt"),
    ("chat", "chat_template.jinja"),
    ("chat", "generation_config.json"),
    ("base", "tokenizer.json"),
]


@pytest.mark.timeout(120)  # a FIFO that is opened blocks forever: fail instead of hanging CI
@pytest.mark.parametrize("kind", ["fifo", "directory", "oversized", "link loop", "link to a parent's file"])
@pytest.mark.parametrize(("role", "name"), SPECIAL, ids=[f"{r}/{n}" for r, n in SPECIAL])
def test_a_file_that_is_not_a_regular_file_of_the_model_is_refused(
    role, name, kind, monkeypatch, capsys, fresh, tmp_path
):
    plant(fresh, tmp_path, role, name, kind)
    check_refused(monkeypatch, capsys, fresh, tmp_path, role, name, kind)


def test_a_template_folder_linked_from_outside_is_refused(monkeypatch, capsys, fresh, tmp_path):
    outside = tmp_path / "templates"
    outside.mkdir()
    (outside / "tool_use.jinja").write_text("{{ messages }}")
    (fresh["chat"] / "additional_chat_templates").symlink_to(outside)
    outcome(
        monkeypatch,
        capsys,
        fresh.values(),
        tmp_path,
        merge_args(fresh, tmp_path / "out"),
        2,
        "CheckpointError",
        "additional_chat_templates",
        "not a directory inside",
    )


@pytest.fixture
def vector(monkeypatch, capsys, fresh, tmp_path):
    folder = tmp_path / "vector"
    code, message = run_cli(
        monkeypatch, capsys, "extract", "--base", fresh["base"], "--chat", fresh["chat"], "-o", folder
    )
    assert code == 0, message
    return folder


@pytest.mark.parametrize(
    "name", ["chatvector.json", "tokenizer.json", "chat_template.jinja", "generation_config.json", "config.json"]
)
def test_a_vector_file_linked_from_outside_is_refused_by_apply(name, monkeypatch, capsys, fresh, vector, tmp_path):
    path = vector / name
    outside = tmp_path / f"outside-{name}"
    shutil.move(path, outside)
    path.symlink_to(outside)
    args = ["apply", "--target", fresh["cp"], "--vector", f"{vector}:0.5", "-o", tmp_path / "out"]
    outcome(
        monkeypatch,
        capsys,
        [*fresh.values(), vector],
        tmp_path,
        args,
        2,
        "CheckpointError",
        str(path),
        "link leading outside",
    )


def test_files_linked_inside_the_model_are_fine(monkeypatch, capsys, fresh, tmp_path):
    """The rule is about where a link leads, not about links: one inside the model is read."""
    cp = fresh["cp"]
    (cp / "shared").mkdir()
    shutil.move(cp / "tokenizer.json", cp / "shared" / "tokenizer.json")
    (cp / "tokenizer.json").symlink_to("shared/tokenizer.json")
    code, message = run_cli(monkeypatch, capsys, *merge_args(fresh, tmp_path / "out"))
    assert code == 0, message
    assert (tmp_path / "out" / "tokenizer.json").read_bytes() == (cp / "shared" / "tokenizer.json").read_bytes()
    assert not (tmp_path / "out" / "tokenizer.json").is_symlink()
