"""The Python API: ``extract``, ``apply``, ``merge`` and ``verify``.

Each call writes a :class:`~chatvector.merge.recipe.Recipe` down and runs it
(:func:`chatvector.merge.run.run_recipe`): the inputs are resolved and opened, the preflight reports
every problem before any tensor is read, the result streams into a staging directory beside OUT,
the files that come from the target and from the chat model are added, the recipe is recorded,
what was written is re-checked, and only then is the staging directory renamed to OUT.

Policies that change the result are a :class:`~chatvector.options.MergeOptions`; how the run goes
(threads, shard size, what to allow) is a :class:`~chatvector.options.RunOptions`. Both are the
same models the command line's flags are generated from.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path

from chatvector.errors import InputError
from chatvector.merge.recipe import PairTerm, Recipe, VectorTerm, load_recipe
from chatvector.merge.run import MergeReport, Progress, run_recipe
from chatvector.options import MergeOptions, RunOptions
from chatvector.verify.check import VerifyReport, verify

__all__ = ["extract", "apply", "merge", "verify", "MergeReport", "VerifyReport"]

PathLike = str | os.PathLike[str]


def extract(
    base: PathLike,
    chat: PathLike,
    out: PathLike,
    *,
    options: MergeOptions | None = None,
    run: RunOptions | None = None,
    base_revision: str | None = None,
    chat_revision: str | None = None,
    progress: Progress | None = None,
) -> MergeReport:
    """Write the chat vector ``chat − base`` (computed in float32, stored in ``options.dtype``,
    float32 when not given).

    The vector directory also holds the chat model's config, tokenizer, chat template and
    generation config, so ``apply`` can align vocabularies and carry the template later.

    Example:
        >>> chatvector.extract("meta-llama/Llama-2-7b-hf", "meta-llama/Llama-2-7b-chat-hf",
        ...                    "llama2-chat-vector")  # doctest: +SKIP
    """
    options = options or MergeOptions()
    if options.dtype is None:  # deltas are small numbers: keep them exact unless told otherwise
        options = options.model_copy(update={"dtype": "float32"})
    recipe = Recipe(
        kind="extract",
        terms=(
            PairTerm(
                base=os.fspath(base),
                chat=os.fspath(chat),
                ratio=1.0,
                base_revision=base_revision,
                chat_revision=chat_revision,
            ),
        ),
        options=options,
    )
    return run_recipe(recipe, out, run, progress)


def apply(
    target: PathLike,
    vectors: Sequence[tuple[PathLike, float]] | Sequence[PathLike],
    out: PathLike,
    *,
    options: MergeOptions | None = None,
    run: RunOptions | None = None,
    progress: Progress | None = None,
) -> MergeReport:
    """Write ``target + Σ rᵢ · vectorᵢ`` for vectors made by :func:`extract`.

    Args:
        vectors: ``(vector_dir, ratio)`` pairs (a bare path means ratio 1.0).

    Example:
        >>> chatvector.apply("taiwan-llm-base", [("llama2-chat-vector", 1.0)], "taiwan-chat")  # doctest: +SKIP
    """
    terms = tuple(
        VectorTerm(vector=os.fspath(v), ratio=1.0)
        if isinstance(v, (str, os.PathLike))
        else VectorTerm(vector=os.fspath(v[0]), ratio=float(v[1]))
        for v in vectors
    )
    if not terms:
        raise InputError("apply needs at least one --vector", option="--vector")
    recipe = Recipe(target=os.fspath(target), terms=terms, options=options or MergeOptions())
    return run_recipe(recipe, out, run, progress)


def merge(
    base: PathLike | None = None,
    chat: PathLike | None = None,
    target: PathLike | None = None,
    ratio: float | None = None,
    out: PathLike | None = None,
    *,
    recipe: Recipe | PathLike | None = None,
    options: MergeOptions | None = None,
    run: RunOptions | None = None,
    progress: Progress | None = None,
) -> MergeReport:
    """Write ``target + ratio · (chat − base)`` in one streaming pass (no vector on disk).

    ``ratio`` defaults to 1.0. With ``recipe`` (a :class:`Recipe` or a YAML file), merge all its
    terms at once; ``target`` then overrides the recipe's target when given, and ``base``, ``chat``,
    ``ratio`` and ``options`` may not be given (the recipe holds them: they would be ignored).

    Example:
        >>> chatvector.merge(base="base", chat="chat", target="cp", ratio=0.5, out="merged")  # doctest: +SKIP
    """
    if out is None:
        raise InputError("merge needs an output directory (-o OUT)", option="--out")
    if recipe is not None:
        beside = [
            name
            for name, value in (("base", base), ("chat", chat), ("ratio", ratio), ("options", options))
            if value is not None
        ]
        if beside:
            raise InputError(
                f"{', '.join(beside)} cannot be given with a recipe, which defines its terms and "
                "options; edit the recipe instead",
                option="--recipe",
            )
        loaded = recipe if isinstance(recipe, Recipe) else load_recipe(Path(recipe))
        if target is not None:
            loaded = loaded.model_copy(update={"target": os.fspath(target)})
        return run_recipe(loaded, out, run, progress)
    if base is None or chat is None or target is None:
        missing = [flag for flag, value in (("--base", base), ("--chat", chat), ("--target", target)) if value is None]
        raise InputError(f"merge needs {', '.join(missing)} (or a --recipe)", option=missing[0])
    term = PairTerm(base=os.fspath(base), chat=os.fspath(chat), ratio=1.0 if ratio is None else ratio)
    built = Recipe(target=os.fspath(target), terms=(term,), options=options or MergeOptions())
    return run_recipe(built, out, run, progress)
