"""``merge --mergekit CONFIG.yaml``: a mergekit configuration of a method chatvector has, run as a
chatvector recipe.

mergekit's ``base_model`` becomes the target and the base of every term; each other model is a
term ``weight · (model − base_model)``. The methods map as follows (mergekit's defaults in brackets):

============== ============================= ===============================================
mergekit        chatvector                    accepted when
============== ============================= ===============================================
task_arithmetic task_arithmetic               ``normalize: false`` [false]
dare_linear     ``dare:density=D``             ``normalize: false`` [false], ``rescale: true`` [true]
breadcrumbs     ``breadcrumbs:density,gamma``  ``normalize: false`` [false], ``rescale: false`` [false]
ties            ``ties:density=D``             ``normalize: true`` [true], every weight equal
dare_ties       ``dare_ties:density=D``        ``normalize: true`` [false!], every weight equal
della           ``della:density,epsilon``      ``normalize: true`` [true], every weight equal
============== ============================= ===============================================

The sign-electing methods average the agreeing entries by count; mergekit divides by the sum of
their weights, which is the same only when the weights are equal, so then each term's ratio is
``lambda`` (the weights cancel). The others add ``weight · lambda · δ``. A weight given as a list
(a mergekit gradient) becomes a layer schedule, interpolated the same way. ``density``,
``gamma`` and ``epsilon`` must be the same for every model (chatvector has one per method).
``dtype`` is mergekit's arithmetic precision (chatvector always computes in float32);
``out_dtype`` (else ``dtype``) becomes ``--dtype``. ``int8_mask`` only saves mergekit memory and
is ignored. Anything else (other methods, ``slices``, ``tokenizer_source``, ``chat_template``,
LoRA-suffixed models, per-tensor filters, gradients of anything but the weight) is refused
naming the key.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

from chatvector.errors import InputError
from chatvector.io.files import read_yaml
from chatvector.merge.recipe import Recipe, parse_recipe

__all__ = ["recipe_from_mergekit", "METHODS"]

# mergekit method -> (chatvector method, per-model parameters, normalize required, mergekit's default)
METHODS: dict[str, tuple[str, tuple[str, ...], bool, bool]] = {
    "task_arithmetic": ("task_arithmetic", (), False, False),
    "dare_linear": ("dare", ("density",), False, False),
    "breadcrumbs": ("breadcrumbs", ("density", "gamma"), False, False),
    "ties": ("ties", ("density",), True, True),
    "dare_ties": ("dare_ties", ("density",), True, False),
    "della": ("della", ("density", "epsilon"), True, True),
}
_TOP_KEYS = {"merge_method", "base_model", "models", "parameters", "dtype", "out_dtype", "name"}
_GLOBAL_PARAMETERS = {"normalize", "int8_mask", "lambda", "rescale"}
_DTYPES = {"float32": "float32", "fp32": "float32", "bfloat16": "bfloat16", "bf16": "bfloat16"}
_DTYPES |= {"float16": "float16", "fp16": "float16", "half": "float16"}


def _fail(path: Path, message: str) -> InputError:
    return InputError(f"{path}: {message}", file=path, option="--mergekit")


def _number(path: Path, where: str, value: Any) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
        raise _fail(path, f"{where} is {value!r}; chatvector maps only a plain number here")
    return float(value)


def recipe_from_mergekit(path: Path) -> Recipe:
    """The chatvector recipe of a mergekit YAML configuration.

    Raises:
        InputError: naming the file and the key chatvector cannot map, or a value it cannot use.
    """
    config = read_yaml(path, "mergekit configuration")
    if not isinstance(config, dict):
        raise _fail(path, "a mergekit configuration is a mapping with merge_method, base_model and models")
    unknown = sorted(str(k) for k in config if k not in _TOP_KEYS)
    if unknown:
        raise _fail(path, f"key {unknown[0]!r} is not supported by --mergekit (it maps {', '.join(sorted(_TOP_KEYS))})")
    method = config.get("merge_method")
    if method not in METHODS:
        raise _fail(path, f"merge_method {method!r} is not one chatvector has; it runs {', '.join(METHODS)}")
    ours, per_model, needs_normalize, default_normalize = METHODS[method]
    base = config.get("base_model")
    if not isinstance(base, str) or not base:
        raise _fail(path, f"{method} needs base_model (a model path or hub id)")
    parameters = config.get("parameters") or {}
    if not isinstance(parameters, dict):
        raise _fail(path, "parameters must be a mapping")
    for key in parameters:
        if key not in _GLOBAL_PARAMETERS and key not in per_model:
            raise _fail(path, f"parameters.{key} is not supported for {method}")
    normalize = parameters.get("normalize", default_normalize)
    if normalize is not needs_normalize:
        how = "averages the agreeing entries" if needs_normalize else "adds weight · delta"
        raise _fail(
            path,
            f"parameters.normalize: {normalize} cannot be mapped: chatvector's {ours} {how}; "
            f"set normalize: {str(needs_normalize).lower()}",
        )
    rescale = parameters.get("rescale", method in ("dare_linear", "dare_ties", "della"))
    if method in ("dare_linear", "dare_ties", "della") and rescale is not True:
        raise _fail(path, f"parameters.rescale: {rescale} is not supported: chatvector's {ours} always rescales")
    if method == "breadcrumbs" and rescale is not False:
        raise _fail(path, "parameters.rescale: true is not supported for breadcrumbs")
    scale = _number(path, "parameters.lambda", parameters.get("lambda", 1.0))
    terms, shared = _terms(path, config.get("models"), base, per_model, parameters, scale, needs_normalize)
    options: dict[str, Any] = {}
    if ours != "task_arithmetic":
        options["method"] = ours + ":" + ",".join(f"{k}={v!r}" for k, v in shared.items())
    dtype = config.get("out_dtype", config.get("dtype"))
    if dtype is not None:
        if dtype not in _DTYPES:
            raise _fail(path, f"out_dtype/dtype {dtype!r} is not one chatvector writes (float32, bfloat16, float16)")
        options["dtype"] = _DTYPES[dtype]
    return parse_recipe({"target": base, "terms": terms, "options": options}, str(path))


def _terms(
    path: Path,
    models: Any,
    base: str,
    per_model: tuple[str, ...],
    parameters: dict[str, Any],
    scale: float,
    equal_weights: bool,
) -> tuple[list[dict[str, Any]], dict[str, float]]:
    """One term per model other than the base, and the per-model parameters they all share."""
    if not isinstance(models, list) or not models:
        raise _fail(path, "models must be a list of {model: ..., parameters: {...}}")
    terms: list[dict[str, Any]] = []
    shared: dict[str, float] = {}
    weights: list[Any] = []
    for index, entry in enumerate(models):
        where = f"models[{index}]"
        if not isinstance(entry, dict) or not isinstance(entry.get("model"), str):
            raise _fail(
                path, f"{where} must be {{model: PATH, parameters: {{...}}}} (LoRA or slice forms are not supported)"
            )
        extra = sorted(set(entry) - {"model", "parameters"})
        if extra:
            raise _fail(path, f"{where}.{extra[0]} is not supported")
        model = entry["model"]
        if "+" in model:
            raise _fail(path, f"{where}.model {model!r}: a model with a LoRA (model+lora) is not supported")
        given = entry.get("parameters") or {}
        if model == base:
            continue  # mergekit lets the base be listed; it adds nothing
        if not isinstance(given, dict):
            raise _fail(path, f"{where}.parameters must be a mapping")
        for key in given:
            if key != "weight" and key not in per_model:
                raise _fail(path, f"{where}.parameters.{key} is not supported for this method")
        for key in per_model:
            value = given.get(key, parameters.get(key))
            if value is None:
                if key == "density":
                    raise _fail(path, f"{where}.parameters.density is missing (chatvector needs it)")
                continue
            number = _number(path, f"{where}.parameters.{key}", value)
            if shared.setdefault(key, number) != number:
                raise _fail(path, f"{where}.parameters.{key} differs between models; chatvector takes one {key}")
        weight = given.get("weight", parameters.get("weight"))
        if weight is None:
            raise _fail(path, f"{where}.parameters.weight is missing")
        weights.append(weight)
        terms.append({"base": base, "chat": model, "ratio": _ratio(path, where, weight, scale, equal_weights)})
    if not terms:
        raise _fail(path, "models lists no model other than base_model")
    if equal_weights and any(w != weights[0] for w in weights):
        raise _fail(
            path,
            "the weights differ between models; with sign election chatvector averages by count, "
            "which matches mergekit's normalize only for equal weights",
        )
    return terms, shared


def _ratio(path: Path, where: str, weight: Any, scale: float, equal_weights: bool) -> Any:
    if isinstance(weight, list):
        if equal_weights:
            raise _fail(path, f"{where}.parameters.weight: a gradient cannot be mapped for a sign-electing method")
        values = [_number(path, f"{where}.parameters.weight[{i}]", v) for i, v in enumerate(weight)]
        return {"layers": [v * scale for v in values]}
    number = _number(path, f"{where}.parameters.weight", weight)
    return scale if equal_weights else number * scale
