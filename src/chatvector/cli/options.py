"""Click flags generated from the options models, so each option is defined once.

``@flags(MergeOptions)`` adds one flag per field (``allow_nonfinite`` → ``--allow-nonfinite``), with
the field's type, default and description as help. Where one option means something narrower on
one command (``--exclude`` on ``extract`` leaves tensors out of the vector; there is no target), the
field carries that command's wording beside its description (``help_for``), so both texts are
written at the option's one definition; :func:`build` turns the parsed values back
into the model, reporting a bad value as an :class:`InputError` that names the flag.
"""

from __future__ import annotations

import types
import typing
from collections.abc import Callable, Iterable
from typing import Any, Literal, TypeVar

import click
from click.core import ParameterSource
from pydantic import BaseModel, ValidationError
from pydantic.fields import FieldInfo

from chatvector.errors import InputError

__all__ = ["flags", "build", "flag_name", "help_text", "given_on_command_line"]

Model = TypeVar("Model", bound=BaseModel)
F = TypeVar("F", bound=Callable[..., Any])


def flag_name(field: str) -> str:
    """The flag of a field: ``allow_nonfinite`` → ``--allow-nonfinite``."""
    return "--" + field.replace("_", "-")


def _extra(info: FieldInfo) -> dict[str, Any]:
    extra = info.json_schema_extra
    return extra if isinstance(extra, dict) else {}


def _without_none(annotation: Any) -> Any:
    if typing.get_origin(annotation) in (typing.Union, types.UnionType):
        members = [a for a in typing.get_args(annotation) if a is not type(None)]
        return members[0] if len(members) == 1 else annotation
    return annotation


def help_text(info: FieldInfo, command: str | None) -> str | None:
    """A field's help on ``command``: its ``help_for[command]`` wording if it has one, else its description."""
    return _extra(info).get("help_for", {}).get(command, info.description)


def _click_kwargs(name: str, info: FieldInfo, command: str | None) -> dict[str, Any]:
    """How click should parse one field: its type, default, help and metavar."""
    annotation = _without_none(info.annotation)
    extra = _extra(info)
    kwargs: dict[str, Any] = {"help": help_text(info, command), "show_default": True}
    if "metavar" in extra:
        kwargs["metavar"] = extra["metavar"]
    default = extra.get("cli_default", info.default)
    if annotation is bool and info.annotation is not bool:  # bool | None: --x/--no-x, None when neither
        return {**kwargs, "default": None, "show_default": False, "negatable": True}
    if annotation is bool:
        return {**kwargs, "is_flag": True, "default": bool(default), "show_default": False}
    if typing.get_origin(annotation) is Literal:
        return {**kwargs, "type": click.Choice([str(a) for a in typing.get_args(annotation)]), "default": default}
    if typing.get_origin(annotation) is tuple:
        return {**kwargs, "multiple": True, "default": tuple(default or ()), "show_default": False}
    if "cli_default" in extra:  # parsed by the model (e.g. sizes like 5GB)
        return {**kwargs, "type": str, "default": default}
    if annotation in (int, float, str):
        return {**kwargs, "type": annotation, "default": default}
    raise TypeError(f"no command-line form for field {name!r} of type {info.annotation!r}")


def flags(
    model: type[BaseModel],
    *,
    only: Iterable[str] | None = None,
    defaults: dict[str, Any] | None = None,
    rename: dict[str, str] | None = None,
    command: str | None = None,
) -> Callable[[F], F]:
    """A decorator adding a click option for each field of ``model`` (or the fields in ``only``).

    Args:
        command: the command the flags are for, to pick a field's ``help_for`` wording.
        defaults: command-specific defaults that differ from the model's (shown in the help).
        rename: field -> parameter name, where two groups on one command share a field name
            (``sweep`` has the merge's ``dtype`` as ``--merge-dtype`` beside the model's ``--dtype``).
    """
    names = list(only) if only is not None else list(model.model_fields)

    def decorate(func: F) -> F:
        for name in reversed(names):
            kwargs = _click_kwargs(name, model.model_fields[name], command)
            if defaults and name in defaults:
                kwargs["default"] = defaults[name]
            parameter = (rename or {}).get(name, name)
            flag = flag_name(parameter)
            if kwargs.pop("negatable", False):
                flag = f"{flag}/--no-{flag[2:]}"
            func = click.option(flag, parameter, **kwargs)(func)
        return func

    return decorate


def build(model: type[Model], values: dict[str, Any], *, rename: dict[str, str] | None = None) -> Model:
    """The ``model`` for the parsed flag ``values`` (keys that are not its fields are ignored;
    None means "not given", so the model's default applies).

    Raises:
        InputError: a value the model refuses, naming its flag and the reason.
    """
    parameter_of = {name: (rename or {}).get(name, name) for name in model.model_fields}
    picked = {name: values[p] for name, p in parameter_of.items() if values.get(p) is not None}
    try:
        return model.model_validate(picked)
    except ValidationError as error:
        first = error.errors()[0]
        parameter = parameter_of.get(str(first["loc"][0]), "") if first["loc"] else ""
        raise InputError(
            f"{flag_name(parameter)} {values.get(parameter)!r}: {first['msg'].removeprefix('Value error, ')}",
            option=flag_name(parameter),
        ) from None


def given_on_command_line(
    ctx: click.Context,
    model: type[BaseModel],
    *,
    rename: dict[str, str] | None = None,
) -> list[str]:
    """The flags of ``model`` the user typed (not left at their defaults)."""
    parameters = [(rename or {}).get(name, name) for name in model.model_fields]
    return [flag_name(p) for p in parameters if ctx.get_parameter_source(p) == ParameterSource.COMMANDLINE]
