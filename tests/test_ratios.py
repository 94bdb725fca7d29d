"""Ratios per module and per layer, checked tensor by tensor against an independent float32 reference."""

from __future__ import annotations

import re

import pytest
import torch
import yaml
from helpers import run_cli, trio_merge
from test_merge_core import load_dir

import chatvector
from chatvector.errors import InputError
from chatvector.merge.ratios import RatioResolver, RatioRule, parse_rule, scale_ratio, summarize_ratios
from chatvector.merge.recipe import parse_recipe
from chatvector.sweep.run import SweepSpec

RULES = [{"match": "lm_head|embed_tokens", "ratio": 0}, {"match": "mlp", "ratio": 0.8}, {"ratio": 1.0}]


def expected_ratio(name: str) -> float:
    """The rules above, written out by hand."""
    if "lm_head" in name or "embed_tokens" in name:
        return 0.0
    return 0.8 if "mlp" in name else 1.0


def check_against_reference(out, trio, ratio_of):
    merged = load_dir(out)
    cp, chat, base = (load_dir(p) for p in (trio.cp, trio.chat, trio.base))
    assert sorted(merged) == sorted(cp)
    for name, value in merged.items():
        expected = cp[name].float() + ratio_of(name) * (chat[name].float() - base[name].float())
        assert torch.equal(value, expected.to(cp[name].dtype)), name
    return merged, cp


def recipe_for(trio, ratio):
    return parse_recipe(
        {"target": str(trio.cp), "terms": [{"base": str(trio.base), "chat": str(trio.chat), "ratio": ratio}]}, "test"
    )


def test_rules_give_each_tensor_its_ratio(trios, tmp_path):
    trio = trios["llama"]  # bfloat16, sharded
    report = chatvector.merge(recipe=recipe_for(trio, RULES), out=tmp_path / "o")
    merged, cp = check_against_reference(tmp_path / "o", trio, expected_ratio)
    for name in ("lm_head.weight", "model.embed_tokens.weight"):
        assert torch.equal(merged[name], cp[name])  # ratio 0: the target's bytes, untouched
    plain = chatvector.merge(base=trio.base, chat=trio.chat, target=trio.cp, out=tmp_path / "plain")
    heads = sum(cp[n].numel() * 2 * 2 for n in ("lm_head.weight", "model.embed_tokens.weight"))  # chat + base, bf16
    assert plain.bytes_read - report.bytes_read == heads  # a ratio-0 tensor's chat and base are not even read
    record = yaml.safe_load((tmp_path / "o" / "chatvector_recipe.yaml").read_text())
    resolved = record["resolved_ratios"]["chat"]
    assert resolved["lm_head"] == 0 and resolved["model.embed_tokens"] == 0
    assert resolved["layer 1 mlp.down_proj"] == 0.8 and resolved["layer 1 self_attn.q_proj"] == 1.0
    assert resolved["model.norm"] == 1.0


def test_layer_schedule_interpolates_over_layers(trios, tmp_path):
    trio = trios["mistral"]  # float32, 2 layers: layer 0 gets the first value, layer 1 the last
    chatvector.merge(recipe=recipe_for(trio, {"layers": [0.2, 1.4]}), out=tmp_path / "o")

    def by_position(name):
        layer = re.search(r"layers\.(\d+)\.", name)
        if layer:
            return 0.2 + 1.2 * int(layer.group(1))  # 2 layers: positions 0 and 1
        return 0.2 if "embed" in name else 1.4  # before the layers / after them

    check_against_reference(tmp_path / "o", trio, by_position)
    resolved = yaml.safe_load((tmp_path / "o" / "chatvector_recipe.yaml").read_text())["resolved_ratios"]["chat"]
    assert resolved["layer 0"] == pytest.approx(0.2) and resolved["layer 1"] == pytest.approx(1.4)


def test_schedule_values_between_anchors():
    resolver = RatioResolver.build(RatioRule(layers=(0.0, 1.0, 0.5)), (), layers=5)
    values = [resolver.resolve(f"model.layers.{i}.mlp.up_proj.weight") for i in range(5)]
    assert values == pytest.approx([0.0, 0.5, 1.0, 0.75, 0.5])
    assert resolver.resolve("model.embed_tokens.weight") == 0.0
    assert resolver.resolve("lm_head.weight") == 0.5
    gpt2 = RatioResolver.build(RatioRule(layers=(1.0, 3.0)), (), layers=3)
    assert gpt2.resolve("transformer.h.1.attn.c_attn.weight") == pytest.approx(2.0)


def test_command_line_rules_equal_the_recipe_rules(trios, tmp_path, monkeypatch, capsys):
    trio = trios["llama"]
    code, message = run_cli(
        monkeypatch,
        capsys,
        *trio_merge(
            trio,
            tmp_path / "cli",
            "--ratio",
            "1.0",
            "--ratio-rule",
            "lm_head|embed_tokens=0",
            "--ratio-rule",
            "mlp=0.8",
        ),
    )
    assert code == 0, message
    chatvector.merge(recipe=recipe_for(trio, RULES), out=tmp_path / "recipe")
    cli, recipe = load_dir(tmp_path / "cli"), load_dir(tmp_path / "recipe")
    assert all(torch.equal(cli[n], recipe[n]) for n in recipe)
    record = yaml.safe_load((tmp_path / "cli" / "chatvector_recipe.yaml").read_text())
    assert record["recipe"]["options"]["ratio_rule"] == ["lm_head|embed_tokens=0", "mlp=0.8"]
    assert record["resolved_ratios"]["chat"]["layer 0 mlp.up_proj"] == 0.8


def test_rules_keep_extract_plus_apply_equal_to_merge(trios, tmp_path):
    trio = trios["qwen2_tied"]
    options = chatvector.MergeOptions(ratio_rule=["mlp=0.3", r"layers\.0\.=-0.5"])
    chatvector.extract(base=trio.base, chat=trio.chat, out=tmp_path / "vec")
    chatvector.apply(target=trio.cp, vectors=[(tmp_path / "vec", 0.7)], out=tmp_path / "applied", options=options)
    chatvector.merge(
        base=trio.base, chat=trio.chat, target=trio.cp, ratio=0.7, out=tmp_path / "merged", options=options
    )
    applied, merged = load_dir(tmp_path / "applied"), load_dir(tmp_path / "merged")
    assert all(torch.equal(applied[n], merged[n]) for n in merged)

    def rule(name):
        return 0.3 if "mlp" in name else -0.5 if "layers.0." in name else 0.7

    check_against_reference(tmp_path / "merged", trio, rule)


def test_recorded_recipe_reproduces_and_verifies(trios, tmp_path):
    trio = trios["mistral"]
    chatvector.merge(
        recipe=recipe_for(trio, [{"match": "self_attn", "layers": [1.0, 0.0]}, {"ratio": 0.5}]), out=tmp_path / "o"
    )
    chatvector.merge(recipe=tmp_path / "o" / "chatvector_recipe.yaml", out=tmp_path / "again")
    first, again = load_dir(tmp_path / "o"), load_dir(tmp_path / "again")
    assert all(torch.equal(first[n], again[n]) for n in first)
    report = chatvector.verify(tmp_path / "o", recompute=True, full=True)
    assert report.ok, report.summary()
    card = (tmp_path / "o" / "README.md").read_text()
    assert "`self_attn`: layers 1→0; else 0.5" in card


@pytest.mark.parametrize(
    "ratio, words",
    [
        ([{"match": "mlp", "ratio": 0.5}], "needs no 'match'"),
        ([{"ratio": 1.0}, {"match": "mlp", "ratio": 0.5}], "put the rule without 'match' last"),
        ([{"match": "mlp", "ratio": 0.5, "layers": [1, 2]}, {"ratio": 1}], "exactly one"),
        ([{"match": "(", "ratio": 0.5}, {"ratio": 1}], "not a valid regular expression"),
        ({"layers": []}, "at least one value"),
        ({"layers": [1.0, float("inf")]}, "not a finite number"),
        ([{"mach": "mlp", "ratio": 0.5}, {"ratio": 1}], "did you mean 'match'"),
    ],
)
def test_bad_rules_are_input_errors(ratio, words):
    with pytest.raises(InputError, match=re.escape(words)):
        recipe = parse_recipe({"target": "t", "terms": [{"vector": "v", "ratio": ratio}]}, "r.yaml")
        assert recipe is None


@pytest.mark.parametrize("text, words", [("mlp", "REGEX=RATIO"), ("mlp=x", "not a number"), ("(=1", "regular")])
def test_bad_command_line_rules(text, words):
    with pytest.raises(ValueError, match=words):
        parse_rule(text)


def test_bad_ratio_rule_flag_names_the_flag(trios, tmp_path, monkeypatch, capsys):
    trio = trios["mistral"]
    code, message = run_cli(
        monkeypatch,
        capsys,
        *trio_merge(trio, tmp_path / "o", "--ratio-rule", "mlp"),
    )
    assert code != 0 and "--ratio-rule" in message and "REGEX=RATIO" in message
    assert not (tmp_path / "o").exists()


def test_unused_rule_is_noted(trios, tmp_path):
    trio = trios["mistral"]
    report = chatvector.merge(
        base=trio.base,
        chat=trio.chat,
        target=trio.cp,
        out=tmp_path / "o",
        options=chatvector.MergeOptions(ratio_rule=["mpl=0"]),
    )
    assert any("'mpl' matches no tensor" in note for note in report.notes)


def test_summary_groups_layers_and_modules():
    pairs = [
        ("model.layers.0.mlp.up_proj.weight", 0.5),
        ("model.layers.0.self_attn.q_proj.weight", 0.5),
        ("model.layers.1.mlp.up_proj.weight", 0.8),
        ("model.layers.1.self_attn.q_proj.weight", 1.0),
        ("model.layers.1.self_attn.q_proj.bias", 0.0),
        ("lm_head.weight", 0.0),
    ]
    assert summarize_ratios(pairs) == {
        "layer 0": 0.5,
        "layer 1 mlp.up_proj": 0.8,
        "model.layers.1.self_attn.q_proj.weight": 1.0,
        "model.layers.1.self_attn.q_proj.bias": 0.0,
        "lm_head": 0.0,
    }


def test_sweep_can_sweep_one_rule(tmp_path):
    recipe = tmp_path / "r.yaml"
    recipe.write_text(
        yaml.safe_dump(
            {
                "target": "cp",
                "terms": [
                    {
                        "base": "b",
                        "chat": "c",
                        "ratio": [{"match": "lm_head", "ratio": 0.0}, {"match": "mlp", "ratio": 0.8}, {"ratio": 1.0}],
                    }
                ],
            }
        )
    )
    spec = SweepSpec(out=tmp_path / "s", ratios=(0.5,), recipe=recipe, rule="lm_head")
    rules = spec.recipe_at(0.5).terms[0].ratio
    assert [r.ratio for r in rules] == [0.5, 0.8, 1.0]
    whole = SweepSpec(out=tmp_path / "s", ratios=(0.5,), recipe=recipe)
    assert [r.ratio for r in whole.recipe_at(0.5).terms[0].ratio] == [0.0, 0.4, 0.5]
    missing = SweepSpec(out=tmp_path / "s", ratios=(0.5,), recipe=recipe, rule="norm")
    with pytest.raises(InputError, match="no rule"):
        missing.recipe_at(0.5)
    # without a recipe: the command line's --ratio-rule is swept, the term's own ratio stays 1
    flags = SweepSpec(
        out=tmp_path / "s",
        ratios=(0.5,),
        target="cp",
        base="b",
        chat="c",
        rule="mlp",
        merge=chatvector.MergeOptions(ratio_rule=["lm_head=0", "mlp=0.8"]),
    )
    swept = flags.recipe_at(0.25)
    assert swept.options.ratio_rule == ("lm_head=0", "mlp=0.25") and swept.terms[0].ratio == 1.0


def test_scale_ratio_scales_every_number():
    assert scale_ratio(0.5, 2) == 1.0
    assert scale_ratio(RatioRule(layers=(0.5, 1.0)), 2).layers == (1.0, 2.0)


@pytest.mark.parametrize("point", [1e-20, float("nan"), float("inf"), 1e39])
def test_a_sweep_point_is_a_validated_ratio_too(point):
    """Scaling a recipe's ratios by a sweep point checks the products as every ratio is checked."""
    from chatvector.errors import InputError
    from chatvector.merge.recipe import swept_recipe

    recipe = parse_recipe({"target": "t", "terms": [{"vector": "v", "ratio": 1e-30}]}, "test")
    with pytest.raises(InputError) as error:
        swept_recipe(recipe, point)
    assert error.value.option == "--ratios" and "sweep point" in str(error.value)
    assert swept_recipe(recipe, 0.5).terms[0].ratio == 5e-31
