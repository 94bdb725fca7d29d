"""The contract every registered merge method keeps (parametrized over the registry, so a new
method is covered by existing): the streaming engine's output equals the method's whole-tensor
reference tensor by tensor, bit for bit, whatever the thread count, chunk and block size; the
plain merge is unchanged; the recipe an output carries reproduces it."""

from __future__ import annotations

import numpy as np
import pytest
from method_models import RATIOS, SHAPES, build_models, load, recipe_of

import chatvector
from chatvector.merge import engine
from chatvector.merge.methods import method_class, parse_method, registered
from chatvector.merge.methods.base import MergeMethod
from chatvector.merge.recipe import parse_recipe


@pytest.fixture(scope="module")
def models(tmp_path_factory):
    return build_models(tmp_path_factory.mktemp("contract"))


def expected_outputs(models, method: MergeMethod):
    """The method's whole-tensor reference on deltas formed here, in float32."""
    base, chat, cp = (load(models[r]) for r in ("base", "chat", "cp"))
    return {
        name: method.reference(cp[name], [chat[name] - base[name], cp[name] - base[name]], list(RATIOS), [0, 1], name)
        for name in SHAPES
    }


@pytest.mark.parametrize("name", registered())
def test_streaming_equals_the_whole_tensor_reference_for_any_chunking(name, models, tmp_path, monkeypatch):
    method = parse_method(method_class(name).example)
    expected = expected_outputs(models, method)
    cp = load(models["cp"])
    assert any(not np.array_equal(expected[n], cp[n]) for n in SHAPES)  # the method changes something
    for chunk, block, threads in ((1 << 20, 1 << 17, 2), (1000, 77, 1), (4099, 333, 3), (64, 16, 2)):
        monkeypatch.setattr(engine, "CHUNK_ELEMENTS", chunk)
        monkeypatch.setattr(engine, "BLOCK_ELEMENTS", block)
        out = tmp_path / f"{chunk}-{threads}"
        chatvector.merge(recipe=recipe_of(models, method.text()), out=out, run=chatvector.RunOptions(threads=threads))
        output = load(out)
        for tensor in SHAPES:
            assert output[tensor].dtype == np.float32
            assert np.array_equal(output[tensor], expected[tensor]), (tensor, chunk, block, threads)


@pytest.mark.parametrize("name", registered())
def test_recipe_round_trip_reproduces_the_output(name, models, tmp_path):
    text = parse_method(method_class(name).example).text()
    assert parse_method(text).text() == text  # the canonical form reads back as itself
    chatvector.merge(recipe=recipe_of(models, text), out=tmp_path / "first")
    recorded = (tmp_path / "first" / "chatvector_recipe.yaml").read_text()
    assert f"method: {text}" in recorded
    chatvector.merge(recipe=tmp_path / "first" / "chatvector_recipe.yaml", out=tmp_path / "again")
    first, again = load(tmp_path / "first"), load(tmp_path / "again")
    assert all(np.array_equal(first[n], again[n]) for n in SHAPES)
    report = chatvector.verify(tmp_path / "first", recompute=True, full=True)
    assert report.ok, report.summary()


def test_plain_merge_is_unchanged_bit_for_bit(models, tmp_path, monkeypatch):
    """No method, ``task_arithmetic`` on the fast path and its combine through the method path
    all give ``cp + Σ rᵢ·(chatᵢ − base)`` in float32, bit for bit."""
    base, chat, cp = (load(models[r]) for r in ("base", "chat", "cp"))
    plain = recipe_of(models, "task_arithmetic").model_dump()
    plain["options"]["method"] = None
    chatvector.merge(recipe=parse_recipe(plain, "test"), out=tmp_path / "default")
    chatvector.merge(recipe=recipe_of(models, "task_arithmetic"), out=tmp_path / "fast")
    monkeypatch.setattr(method_class("task_arithmetic"), "plain", False)
    chatvector.merge(recipe=recipe_of(models, "task_arithmetic"), out=tmp_path / "combine")
    for name in SHAPES:
        expected = cp[name] + np.float32(RATIOS[0]) * (chat[name] - base[name])
        expected = expected + np.float32(RATIOS[1]) * (cp[name] - base[name])
        for variant in ("default", "fast", "combine"):
            assert np.array_equal(load(tmp_path / variant)[name], expected), (variant, name)


def test_the_worked_example_in_the_docs_is_the_real_file():
    """docs/extending.md shows breadcrumbs.py as it is, so the example cannot drift from the code."""
    from pathlib import Path

    root = Path(__file__).resolve().parents[1]
    source = (root / "src" / "chatvector" / "merge" / "methods" / "breadcrumbs.py").read_text()
    assert f"```python\n{source}```" in (root / "docs" / "extending.md").read_text()
