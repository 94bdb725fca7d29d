"""Tiny float32 models and recipes for the merge-method tests."""

from __future__ import annotations

import json

import numpy as np
from safetensors.numpy import load_file, save_file

from chatvector.merge.recipe import parse_recipe

SHAPES = {
    "model.layers.0.mlp.up_proj.weight": (37, 101),
    "model.layers.0.self_attn.q_proj.weight": (48, 64),
    "model.layers.1.mlp.up_proj.weight": (5003,),
    "model.norm.weight": (7,),
}
RATIOS = (0.8, -0.6)


def write_model(folder, tensors):
    folder.mkdir(parents=True)
    save_file(tensors, str(folder / "model.safetensors"))
    (folder / "config.json").write_text(json.dumps({"model_type": "llama", "architectures": ["LlamaForCausalLM"]}))
    return folder


def load(folder):
    return load_file(str(folder / "model.safetensors"))


def build_models(root):
    """float32 base, chat and cp: the chat delta has few distinct values (many ties at any
    magnitude cut), the cp's is normal; cp also serves as the second term's chat."""
    rng = np.random.default_rng(5)
    base = {n: rng.standard_normal(s).astype(np.float32) for n, s in SHAPES.items()}
    chat = {n: (b + rng.integers(-2, 3, b.shape) / 4).astype(np.float32) for n, b in base.items()}
    cp = {n: (b + rng.standard_normal(b.shape)).astype(np.float32) for n, b in base.items()}
    return {role: write_model(root / role, d) for role, d in (("base", base), ("chat", chat), ("cp", cp))}


def recipe_of(models, method_text):
    return parse_recipe(
        {
            "target": str(models["cp"]),
            "options": {"method": method_text},
            "terms": [
                {"base": str(models["base"]), "chat": str(models["chat"]), "ratio": RATIOS[0]},
                {"base": str(models["base"]), "chat": str(models["cp"]), "ratio": RATIOS[1]},
            ],
        },
        "test",
    )
