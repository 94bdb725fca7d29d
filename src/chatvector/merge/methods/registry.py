"""The registry of merge methods, and parsing of ``NAME:key=value,...``.

A method registers itself with :func:`register` in its own module; :mod:`chatvector.merge.methods`
imports every module of the package, so a new method is one new file.
"""

from __future__ import annotations

import difflib
from typing import Any, TypeVar

from pydantic import ValidationError

from chatvector.merge.methods.base import MergeMethod

__all__ = ["register", "registered", "method_class", "parse_method"]

_METHODS: dict[str, type[MergeMethod]] = {}
M = TypeVar("M", bound=type[MergeMethod])

_KINDS = {"int_parsing": "an integer", "int_from_float": "an integer", "float_parsing": "a number"}


def register(method: M) -> M:
    """Class decorator: make ``method`` selectable by its name."""
    if method.name in _METHODS and _METHODS[method.name] is not method:
        raise ValueError(f"two merge methods are named {method.name!r}")
    _METHODS[method.name] = method
    return method


def registered() -> list[str]:
    """The names of every registered method, sorted."""
    return sorted(_METHODS)


def method_class(name: str) -> type[MergeMethod]:
    """The method called ``name``.

    Raises:
        ValueError: for an unknown name, listing the registered ones and the closest.
    """
    found = _METHODS.get(name)
    if found is not None:
        return found
    close = difflib.get_close_matches(name, list(_METHODS), n=1)
    hint = f"; did you mean {close[0]}?" if close else ""
    raise ValueError(f"{name!r} is not a merge method (known: {', '.join(registered())}){hint}")


def example(method: type[MergeMethod]) -> str:
    """``name:key=…`` with the method's parameters, for messages."""
    keys = ",".join(f"{k}=…" for k in method.Params.model_fields)
    return f"{method.name}:{keys}" if keys else method.name


def parse_method(text: str) -> MergeMethod:
    """The method and its parameters from ``ties:density=0.2`` or ``dare:density=0.3,seed=7``.

    Keys may not repeat; every required parameter must be given.

    Raises:
        ValueError: naming what is wrong and showing the expected form.
    """
    cleaned = text.strip().lower()
    name, _, rest = cleaned.partition(":")
    method = method_class(name.strip())
    fields = method.Params.model_fields
    params: dict[str, str] = {}
    for part in filter(None, (p.strip() for p in rest.split(","))):
        key, sep, value = part.partition("=")
        key = key.strip()
        if not sep:
            raise ValueError(f"{text!r}: {part!r} is not key=value; write {example(method)}")
        if key in params:
            raise ValueError(f"{text!r}: {key} is given twice; give each parameter once")
        params[key] = value.strip()
    unknown = sorted(set(params) - set(fields))
    if unknown:
        takes = ", ".join(fields) or "no parameters"
        raise ValueError(f"{text!r}: {method.name} takes {takes}, not {', '.join(unknown)}")
    try:
        return method(method.Params.model_validate(params))
    except ValidationError as error:
        raise ValueError(f"{text!r}: {_reason(error, fields)}") from None


def _reason(error: ValidationError, fields: dict[str, Any]) -> str:
    first = error.errors()[0]
    key = str(first["loc"][0]) if first["loc"] else ""
    if first["type"] == "missing":
        return f"give the {key}: {fields[key].description}"
    if first["type"] in _KINDS:
        return f"{key} must be {_KINDS[first['type']]}, not {first.get('input')!r}"
    return f"{key}: {str(first['msg']).removeprefix('Value error, ')}"
