"""``merge --mergekit CONFIG.yaml``: mergekit configurations of the methods chatvector has, mapped
onto recipes (checked against the recipe they should equal), and clear refusals naming the key
of everything else."""

from __future__ import annotations

import numpy as np
import pytest
import yaml
from hardening_helpers import outcome
from helpers import run_cli
from method_models import load

import chatvector
from chatvector.merge.mergekit import recipe_from_mergekit
from chatvector.merge.recipe import load_recipe, parse_recipe


def write_config(tmp_path, trio, method, models, **top):
    config = {"merge_method": method, "base_model": str(trio["base"]), "models": models, **top}
    path = tmp_path / "config.yaml"
    path.write_text(yaml.safe_dump(config))
    return path


def model(path, **parameters):
    return {"model": str(path), "parameters": parameters}


def test_ties_config_runs_as_the_equivalent_recipe(monkeypatch, capsys, fresh, tmp_path):
    models = [model(fresh["chat"], weight=1.0, density=0.5), model(fresh["cp"], weight=1.0, density=0.5)]
    config = write_config(tmp_path, fresh, "ties", [{"model": str(fresh["base"])}, *models], dtype="float32")
    code, message = run_cli(monkeypatch, capsys, "merge", "--mergekit", config, "-o", tmp_path / "out")
    assert code == 0, message
    recorded = load_recipe(tmp_path / "out" / "chatvector_recipe.yaml")
    assert recorded.options.method == "ties:density=0.5" and recorded.options.dtype == "float32"
    assert [t.ratio for t in recorded.terms] == [1.0, 1.0]
    direct = {
        "target": str(fresh["base"]),
        "options": {"method": "ties:density=0.5"},
        "terms": [{"base": str(fresh["base"]), "chat": str(fresh[r]), "ratio": 1.0} for r in ("chat", "cp")],
    }
    chatvector.merge(recipe=parse_recipe(direct, "test"), out=tmp_path / "direct")
    out, same = load(tmp_path / "out"), load(tmp_path / "direct")
    assert out.keys() == same.keys() and all(np.array_equal(out[n], same[n]) for n in out)


def test_weights_lambda_gradients_and_dtypes_map(fresh, tmp_path):
    config = write_config(
        tmp_path,
        fresh,
        "task_arithmetic",
        [model(fresh["chat"], weight=[0.0, 1.0])],
        parameters={"lambda": 0.5},
        out_dtype="bfloat16",
    )
    recipe = recipe_from_mergekit(config)
    assert recipe.terms[0].ratio.layers == (0.0, 0.5) and recipe.options.dtype == "bfloat16"
    assert recipe.options.method is None  # the plain merge
    config = write_config(tmp_path, fresh, "breadcrumbs", [model(fresh["chat"], weight=0.7, density=0.9, gamma=0.02)])
    recipe = recipe_from_mergekit(config)
    assert recipe.options.method == "breadcrumbs:density=0.9,gamma=0.02" and recipe.terms[0].ratio == 0.7
    config = write_config(
        tmp_path, fresh, "della", [model(fresh["chat"], weight=1, density=0.5)], parameters={"epsilon": 0.1}
    )
    assert recipe_from_mergekit(config).options.method == "della:density=0.5,epsilon=0.1,seed=0,rescale=true"


REFUSED = {
    "slices": ({"slices": [{"sources": []}]}, "ties", None, "'slices' is not supported"),
    "tokenizer_source": ({"tokenizer_source": "union"}, "ties", None, "'tokenizer_source' is not supported"),
    "another method": ({}, "slerp", None, "merge_method 'slerp' is not one chatvector has"),
    "unequal ties weights": ({}, "ties", [1.0, 0.5], "the weights differ between models"),
    "densities that differ": ({}, "ties", "densities", "density differs between models"),
    "ties without normalize": ({"parameters": {"normalize": False}}, "ties", None, "parameters.normalize: False"),
    "dare_ties at mergekit's default": ({}, "dare_ties", None, "set normalize: true"),
    "a LoRA model": ({}, "ties", "lora", "model+lora"),
    "a filtered weight": ({}, "dare_linear", "filter", "chatvector maps only a plain number"),
    "a density gradient": ({}, "ties", "gradient", "chatvector maps only a plain number"),
}


@pytest.mark.parametrize("case", sorted(REFUSED))
def test_what_cannot_be_mapped_is_refused_naming_the_key(case, monkeypatch, capsys, fresh, tmp_path):
    top, method, variant, words = REFUSED[case]
    chat, cp = str(fresh["chat"]), str(fresh["cp"])
    models = [model(chat, weight=1.0, density=0.5), model(cp, weight=1.0, density=0.5)]
    if isinstance(variant, list):
        models = [model(chat, weight=variant[0], density=0.5), model(cp, weight=variant[1], density=0.5)]
    elif variant == "densities":
        models[1]["parameters"]["density"] = 0.3
    elif variant == "lora":
        models[1]["model"] = cp + "+some/lora"
    elif variant == "filter":
        models[0]["parameters"]["weight"] = [{"filter": "mlp", "value": 0.5}, {"value": 1.0}]
    elif variant == "gradient":
        models[0]["parameters"]["density"] = [0.2, 0.8]
    config = write_config(tmp_path, fresh, method, models, **top)
    args = ["merge", "--mergekit", config, "-o", tmp_path / "out"]
    outcome(monkeypatch, capsys, [*fresh.values(), config], tmp_path, args, 2, "InputError", str(config), words)
