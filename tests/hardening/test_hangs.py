"""Class 7: nothing hangs, nothing grows faster than its input.

A FIFO where a weights file, an index, a recipe or an output's file should be is refused at once
(opening one for reading blocks until a writer comes, which never does). Preflight's work grows
linearly with the number of recipe terms: it is counted here in executed bytecode instructions,
which do not depend on the machine's speed, instead of timed.
"""

from __future__ import annotations

import importlib
import json
import os
import sys

import pytest
from hardening_helpers import outcome
from helpers import merge_args, run_cli

pytestmark = pytest.mark.timeout(120)  # a regression must fail, not hang CI


@pytest.mark.parametrize("where", ["single weights file", "shard named by the index", "pickle with --allow-pickle"])
def test_a_fifo_as_weights_is_refused(where, monkeypatch, capsys, fresh, tmp_path):
    chat = fresh["chat"]
    (chat / "model.safetensors").unlink()
    extra = []
    if where == "single weights file":
        fifo = chat / "model.safetensors"
    elif where == "shard named by the index":
        fifo = chat / "model-00001-of-00001.safetensors"
        (chat / "model.safetensors.index.json").write_text(json.dumps({"weight_map": {"x": fifo.name}}))
    else:
        fifo = chat / "pytorch_model.bin"
        extra = ["--allow-pickle"]
    os.mkfifo(fifo)
    outcome(
        monkeypatch,
        capsys,
        fresh.values(),
        tmp_path,
        [*merge_args(fresh, tmp_path / "out"), *extra],
        2,
        "CheckpointError",
        str(fifo),
        "FIFO",
    )


def test_a_fifo_as_recipe_is_refused(monkeypatch, capsys, fresh, tmp_path):
    recipe = tmp_path / "recipe.yaml"
    os.mkfifo(recipe)
    outcome(
        monkeypatch,
        capsys,
        fresh.values(),
        tmp_path,
        ["merge", "--recipe", recipe, "-o", tmp_path / "out"],
        2,
        "InputError",
        str(recipe),
        "FIFO",
    )


@pytest.mark.parametrize("name", ["model.safetensors", "config.json", "chatvector_recipe.yaml"])
def test_a_fifo_in_an_output_fails_verification(name, monkeypatch, capsys, fresh, tmp_path):
    code, message = run_cli(monkeypatch, capsys, *merge_args(fresh, tmp_path / "out"))
    assert code == 0, message
    (tmp_path / "out" / name).unlink()
    os.mkfifo(tmp_path / "out" / name)
    outcome(monkeypatch, capsys, fresh.values(), tmp_path, ["verify", tmp_path / "out"], 1, name, "FIFO", "FAILED")


def preflight_instructions(fresh, terms: int) -> int:
    """Bytecode instructions executed in merge/plan.py while planning a recipe of ``terms`` terms."""
    plan_module = importlib.import_module("chatvector.merge.plan")  # chatvector.merge is also a function
    from chatvector.merge.inputs import open_inputs
    from chatvector.merge.recipe import PairTerm, Recipe

    recipe = Recipe(
        target=str(fresh["cp"]),
        terms=tuple(PairTerm(base=str(fresh["base"]), chat=str(fresh["chat"]), ratio=0.001) for _ in range(terms)),
    )
    count = [0]

    def local(frame, event, arg):
        if event == "opcode":
            count[0] += 1
        return local

    def tracer(frame, event, arg):
        if frame.f_code.co_filename != plan_module.__file__:
            return None
        frame.f_trace_opcodes = True
        return local

    with open_inputs(recipe) as inputs:
        sys.settrace(tracer)
        try:
            inputs.plan()
        finally:
            sys.settrace(None)
    return count[0]


def test_preflight_grows_linearly_with_the_number_of_terms(fresh):
    """Three times the terms may cost at most about three times the work (a lookup that scans the
    inputs once per tensor and term made it nine times; 3,000 terms took 28 s)."""
    small, large = preflight_instructions(fresh, 40), preflight_instructions(fresh, 120)
    assert large / small < 3.6, (small, large)
