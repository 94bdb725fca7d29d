"""Class 6: user text reaches the terminal as written, never as markup or control sequences.

Paths, model names and tensor names are printed literally (``[/]`` and ``[bold]`` are shown, not
interpreted) and control or bidi characters are escaped (``\\x1b``), in results, errors, log lines
and click's own usage errors.
"""

from __future__ import annotations

import ast
import json
from pathlib import Path

import pytest
import torch
from hardening_helpers import outcome
from helpers import merge_args, run_cli
from safetensors.torch import load_file, save_file

RAW = ("\x1b", "\x07", "\u202e", "\x9b")


def assert_clean(message: str) -> None:
    assert not any(c in message for c in RAW), repr(message)


@pytest.mark.parametrize("name", ["out[/]", "[bold]out[/bold]", "out[link=http://x]y", "[red]"])
def test_markup_in_an_out_path_is_printed_as_written(name, monkeypatch, capsys, fresh, tmp_path):
    code, message = run_cli(monkeypatch, capsys, *merge_args(fresh, tmp_path / name))
    assert code == 0, message
    assert f"Wrote merge to {tmp_path / name}" in message


@pytest.mark.parametrize("name", ["[bold]chat", "ch[/]at", "[/bold]"])
def test_markup_in_a_path_of_an_error_is_printed_as_written(name, monkeypatch, capsys, fresh, tmp_path):
    missing = tmp_path / name
    outcome(
        monkeypatch,
        capsys,
        fresh.values(),
        tmp_path,
        merge_args(fresh, tmp_path / "out", chat=missing),
        2,
        "InputError",
        f"--chat '{missing}'",
    )


@pytest.mark.parametrize("name", ["out\x1b[31mred", "out\u202etxt.exe", "out\x07bell", "out\x9b2J"])
def test_control_characters_in_an_out_path_are_escaped(name, monkeypatch, capsys, fresh, tmp_path):
    code, message = run_cli(monkeypatch, capsys, *merge_args(fresh, tmp_path / name))
    assert code == 0, message
    assert_clean(message)
    escaped = name.encode("unicode_escape").decode("ascii")
    assert escaped in message


EVIL = "model.evil\x1b[2J\x1b]0;owned\x07.weight"


def test_control_characters_in_tensor_names_are_escaped_in_errors(monkeypatch, capsys, fresh, tmp_path):
    weights = fresh["chat"] / "model.safetensors"
    state = load_file(weights)
    state[EVIL] = torch.zeros(2)
    save_file(state, weights, metadata={"format": "pt"})
    message = outcome(
        monkeypatch,
        capsys,
        fresh.values(),
        tmp_path,
        merge_args(fresh, tmp_path / "out"),
        2,
        "PreflightError",
        "model.evil\\x1b[2J\\x1b]0;owned\\x07.weight",
    )
    assert_clean(message)


def test_control_characters_in_tensor_names_are_escaped_by_verify(monkeypatch, capsys, fresh, tmp_path):
    code, message = run_cli(monkeypatch, capsys, *merge_args(fresh, tmp_path / "out"))
    assert code == 0, message
    weights = tmp_path / "out" / "model.safetensors"
    state = load_file(weights)
    state[EVIL] = torch.zeros(2)
    save_file(state, weights, metadata={"format": "pt"})
    message = outcome(
        monkeypatch,
        capsys,
        fresh.values(),
        tmp_path,
        ["verify", tmp_path / "out", "--recompute"],
        1,
        "model.evil\\x1b[2J",
        "FAILED",
    )
    assert_clean(message)


def test_control_characters_in_log_lines_are_escaped(monkeypatch, capsys, fresh, tmp_path):
    """The remote-code warning names the model's path; a path with an escape sequence is escaped."""
    target = fresh["cp"].rename(tmp_path / "cp\x1b[2J")
    config = json.loads((target / "config.json").read_text())
    config["auto_map"] = {"AutoModelForCausalLM": "modeling_x.X"}
    (target / "config.json").write_text(json.dumps(config))
    code, message = run_cli(monkeypatch, capsys, *merge_args({**fresh, "cp": target}, tmp_path / "out"))
    assert code == 0, message
    assert "asks for remote code" in message and "cp\\x1b[2J" in message
    assert_clean(message)


def test_click_usage_errors_are_escaped(monkeypatch, capsys, fresh, tmp_path):
    code, message = run_cli(monkeypatch, capsys, "merge", "--no-such\x1b[2J")
    assert code == 2 and "no-such\\x1b[2J" in message
    assert_clean(message)
    # A usage error whose message holds a path as typed (not quoted by click): inspect on a model.
    model = fresh["chat"].rename(tmp_path / "chat\x1b]0;owned\x07")
    code, message = run_cli(monkeypatch, capsys, "inspect", model)
    assert code == 2 and "is a model, not a vector" in message and "chat\\x1b]0;owned\\x07" in message
    assert_clean(message)


def test_inspect_prints_markup_in_names_literally(monkeypatch, capsys, fresh, tmp_path):
    vector = tmp_path / "[bold]v[red]"
    code, message = run_cli(
        monkeypatch, capsys, "extract", "--base", fresh["base"], "--chat", fresh["chat"], "-o", vector
    )
    assert code == 0, message
    code, message = run_cli(monkeypatch, capsys, "inspect", vector)
    assert code == 0 and "[bold]v[red]" in message, message


CLI = Path(__file__).resolve().parents[2] / "src" / "chatvector" / "cli"


def interpolates_text(node: ast.AST) -> bool:
    """An f-string with a value formatted as text (``{path}``; ``{ratio:g}`` is a number)."""
    return isinstance(node, ast.JoinedStr) and any(
        isinstance(v, ast.FormattedValue) and v.format_spec is None for v in node.values
    )


@pytest.mark.parametrize("path", sorted(CLI.glob("*.py")), ids=lambda p: p.name)
def test_no_command_prints_an_interpolated_string_as_markup(path):
    """Rich reads a plain string as markup: user text must go through say(), literal() or Text."""
    offenders = []
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if not isinstance(node, ast.Call):
            continue
        func = node.func
        printing = (
            isinstance(func, ast.Attribute)
            and func.attr == "print"
            and isinstance(func.value, ast.Name)
            and "console" in func.value.id
        )
        cells = isinstance(func, ast.Attribute) and func.attr in {"add_column", "add_row"}
        table = isinstance(func, ast.Name) and func.id == "Table"
        arguments = list(node.args) + [k.value for k in node.keywords if k.arg == "title"]
        if (printing or cells or table) and any(interpolates_text(a) for a in arguments):
            offenders.append(f"line {node.lineno}")
    assert not offenders, f"{path.name}: {offenders}"
