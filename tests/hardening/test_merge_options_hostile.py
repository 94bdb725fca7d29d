"""Hostile merge options and recipe values (issue 23, merge side), each refused at its root with a
one-line error naming the option, no traceback, no numpy warning, nothing written:

- every user regular expression goes through one bounded compile (merge/patterns.py);
- a method's parameters are given once each, and every share is a usable probability
  (merge/methods/base.py ``check_density``, used by every method);
- a ratio is checked by one validator (merge/ratios.py ``check_ratio``) wherever it enters.
"""

from __future__ import annotations

import pytest
from hardening_helpers import outcome
from helpers import merge_args

HUGE_REPEAT = "a{99999999999}"


def check(monkeypatch, capsys, fresh, tmp_path, args, *words) -> str:
    message = outcome(monkeypatch, capsys, fresh.values(), tmp_path, args, 2, *words)
    assert "Warning" not in message, message  # numpy's RuntimeWarnings would show on stderr
    return message


OPTIONS = [
    ("--ratio-rule", f"{HUGE_REPEAT}=0.5", "--ratio-rule", "not a valid regular expression"),
    ("--ratio-rule", "((((((((((((((((((((((((((((((x=0.5", "--ratio-rule", "not a valid regular expression"),
    ("--ratio-rule", "x" * 2000 + "=0.5", "--ratio-rule", "at most 1000"),
    ("--exclude", HUGE_REPEAT, "--exclude", "not a valid regular expression"),
    ("--exclude", "y" * 2000, "--exclude", "at most 1000"),
    ("--sparsify", "ties:density=0.2,density=0.3", "--sparsify", "density is given twice"),
    ("--method", "dare:density=0.2,seed=1,seed=2", "--method", "seed is given twice"),
    ("--sparsify", "dare:density=1e-50", "--sparsify", "below 2^-32"),
    ("--method", "dare:density=1e-300", "--method", "below 2^-32"),
    ("--method", "dare:density=4.9e-324", "--method", "below 2^-32"),
    ("--method", "ties:density=nan", "--method", "not in (0, 1]"),
    ("--method", "della:density=0.5,epsilon=inf", "--method", "epsilon"),
    ("--method", "tie:density=0.5", "--method", "did you mean ties"),
    ("--method", "ties:density=0.5", "--sparsify", "not both"),
    ("--ratio-rule", "mlp=1e-50", "--ratio-rule", "rounds to 0"),
    ("--ratio-rule", "mlp=nan", "--ratio-rule", "not a finite number"),
]


@pytest.mark.parametrize(("flag", "value", "named", "words"), OPTIONS, ids=[f"{f} {v[:30]}" for f, v, _, _ in OPTIONS])
def test_merge_options_that_cannot_be_used(flag, value, named, words, monkeypatch, capsys, fresh, tmp_path):
    extra = ["--sparsify", "ties:density=0.2"] if words == "not both" else []
    args = [*merge_args(fresh, tmp_path / "out"), flag, value, *extra]
    check(monkeypatch, capsys, fresh, tmp_path, args, named, words)


RECIPES = {
    "a rule match repeating too often": (
        f"terms: [{{vector: v, ratio: [{{match: '{HUGE_REPEAT}', ratio: 0}}, {{ratio: 1}}]}}]",
        "not a valid regular expression",
    ),
    "an option rule repeating too often": (
        f"terms: [{{vector: v}}]\noptions: {{ratio_rule: ['{HUGE_REPEAT}=0.5']}}",
        "not a valid regular expression",
    ),
    "a method with a repeated key": (
        "terms: [{vector: v}]\noptions: {method: 'ties:density=0.1,density=0.2'}",
        "density is given twice",
    ),
    "a density that underflows": ("terms: [{vector: v}]\noptions: {method: 'dare:density=1e-50'}", "below 2^-32"),
    "an unknown method": ("terms: [{vector: v}]\noptions: {method: 'slerp'}", "not a merge method"),
    "a schedule value that is 0 in float32": ("terms: [{vector: v, ratio: {layers: [1e-46, 1]}}]", "rounds to 0"),
}


@pytest.mark.parametrize("case", sorted(RECIPES))
def test_recipe_values_that_cannot_be_used(case, monkeypatch, capsys, fresh, tmp_path):
    body, expected = RECIPES[case]
    recipe = tmp_path / "recipe.yaml"
    recipe.write_text(f"target: t\n{body}\n")
    outcome(
        monkeypatch,
        capsys,
        [*fresh.values(), recipe],
        tmp_path,
        ["merge", "--recipe", recipe, "-o", tmp_path / "out"],
        2,
        "InputError",
        str(recipe),
        expected,
    )


def set_values(folder, name, dtype, edit) -> None:
    """Rewrite one tensor of a model (as ``dtype``), with ``edit`` applied to its values."""
    from safetensors.numpy import load_file, save_file

    path = folder / "model.safetensors"
    state = load_file(str(path))
    values = state[name].astype(dtype)
    edit(values)
    state[name] = values
    save_file(state, str(path), metadata={"format": "pt"})


def test_a_float64_value_beyond_float32_is_blamed_on_the_float32_arithmetic(monkeypatch, capsys, fresh, tmp_path):
    """1e300 is finite in F64: the cause is that chatvector computes in float32, not the output's F64."""
    import numpy as np

    name = "model.norm.weight"
    for role in ("base", "chat", "cp"):
        set_values(fresh[role], name, np.float64, lambda v: None)
    set_values(fresh["cp"], name, np.float64, lambda v: v.__setitem__(3, 1e300))
    message = check(
        monkeypatch,
        capsys,
        fresh,
        tmp_path,
        merge_args(fresh, tmp_path / "out"),
        "NonFiniteError",
        name,
        "1e+300",
        "beyond float32's range",
        "the format chatvector computes in",
        "target model",
        f"--exclude '^{name.replace('.', chr(92) + '.')}$'",
    )
    assert "use a wider" not in message and "overflow F64" not in message


def test_a_float32_sum_that_overflows_names_the_float32_arithmetic(monkeypatch, capsys, fresh, tmp_path):
    import numpy as np

    name = "model.norm.weight"
    set_values(fresh["cp"], name, np.float32, lambda v: v.__setitem__(0, 3e38))
    set_values(fresh["chat"], name, np.float32, lambda v: v.__setitem__(0, 3e38))
    set_values(fresh["base"], name, np.float32, lambda v: v.__setitem__(0, 0))
    message = check(
        monkeypatch,
        capsys,
        fresh,
        tmp_path,
        merge_args(fresh, tmp_path / "out"),
        "NonFiniteError",
        name,
        "overflow float32, the format chatvector computes in",
    )
    assert "use a wider" not in message
