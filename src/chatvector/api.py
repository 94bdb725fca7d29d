"""The Python API: ``extract``, ``apply``, ``merge`` (and ``verify``, in :mod:`chatvector.verification`).

Each call resolves its inputs, runs the preflight (every problem reported before any tensor is
read), streams the result into a staging directory beside OUT, writes the files that come from
the target and from the chat model, records the recipe, re-checks what was written, and only then
renames the staging directory to OUT.
"""

from __future__ import annotations

import json
import logging
import os
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from chatvector import interrupts
from chatvector.assets import (
    carry_chat_template,
    copy_model_code,
    copy_tokenizer_files,
    write_generation_config,
    write_model_config,
)
from chatvector.card import provenance, safetensors_metadata, write_model_card, write_recipe_file
from chatvector.checkpoint import Checkpoint, ModelRef, read_json, remote_headers, resolve_model
from chatvector.engine import close_all, run_plan
from chatvector.errors import InputError, PreflightError
from chatvector.output import ShardedTensorWriter, StagedDirectory, check_output_path
from chatvector.plan import Operand, Plan, Term, build_plan, compare_configs
from chatvector.recipe import MergeOptions, PairTerm, Recipe, VectorTerm, load_recipe
from chatvector.verification import VerifyReport, check_written, verify
from chatvector.vocab import load_vocabulary

__all__ = ["extract", "apply", "merge", "run_recipe", "verify", "MergeReport", "VerifyReport",
           "DEFAULT_SHARD_SIZE", "VECTOR_MANIFEST"]

log = logging.getLogger(__name__)

DEFAULT_SHARD_SIZE = 5 * 10**9
VECTOR_MANIFEST = "chatvector.json"
VECTOR_FORMAT = "chatvector-vector"


def _size(nbytes: float) -> str:
    for unit in ("B", "kB", "MB", "GB"):
        if nbytes < 1000 or unit == "GB":
            return f"{nbytes:.0f} {unit}" if unit == "B" else f"{nbytes:.2f} {unit}"
        nbytes /= 1000
    return f"{nbytes:.2f} TB"


@dataclass
class MergeReport:
    """What a merge or extraction wrote and how long it took."""

    out: Path
    kind: str
    tensors: int
    bytes_read: int
    bytes_written: int
    seconds: float
    embedding_policy: dict[str, str] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)
    nonfinite_tensors: list[str] = field(default_factory=list)

    def summary(self) -> str:
        rate = self.bytes_read / max(self.seconds, 1e-9)
        lines = [
            f"Wrote {self.kind} to {self.out}: {self.tensors} tensors, "
            f"{_size(self.bytes_written)} written, {_size(self.bytes_read)} read "
            f"in {self.seconds:.2f} s ({_size(rate)}/s)",
        ]
        if self.embedding_policy:
            lines.append("embeddings: " + ", ".join(f"{k}: {v}" for k, v in self.embedding_policy.items()))
        lines += [f"note: {n}" for n in self.notes]
        if self.nonfinite_tensors:
            lines.append(f"NaN/Inf kept in: {', '.join(self.nonfinite_tensors)}")
        return "\n".join(lines)


@dataclass(frozen=True)
class RunSettings:
    """How (not what) to run: none of these change the result."""

    force: bool = False
    allow_pickle: bool = False
    allow_nonfinite: bool = False
    shard_size: int = DEFAULT_SHARD_SIZE
    threads: int = 2
    progress: Callable[[int, int], None] | None = None  # (bytes done, bytes total)


def extract(base: str | os.PathLike[str], chat: str | os.PathLike[str],
            out: str | os.PathLike[str], *, dtype: str = "float32", exclude: Iterable[str] = (),
            base_revision: str | None = None, chat_revision: str | None = None,
            **settings: Any) -> MergeReport:
    """Write the chat vector ``chat − base`` (computed in float32, stored in ``dtype``).

    The vector directory also holds the chat model's config, tokenizer, chat template and
    generation config, so ``apply`` can align vocabularies and carry the template later.

    Example:
        >>> chatvector.extract("meta-llama/Llama-2-7b-hf", "meta-llama/Llama-2-7b-chat-hf",
        ...                    "llama2-chat-vector")  # doctest: +SKIP
    """
    recipe = Recipe(
        kind="extract",
        terms=(PairTerm(base=os.fspath(base), chat=os.fspath(chat), ratio=1.0,
                        base_revision=base_revision, chat_revision=chat_revision),),
        options=MergeOptions(dtype=dtype, exclude=tuple(exclude)),  # type: ignore[arg-type]
    )
    return run_recipe(recipe, out, **settings)


def apply(target: str | os.PathLike[str],
          vectors: Sequence[tuple[str | os.PathLike[str], float]] | Sequence[str],
          out: str | os.PathLike[str], *, embeddings: str = "auto", dtype: str | None = None,
          exclude: Iterable[str] = (), **settings: Any) -> MergeReport:
    """Write ``target + Σ rᵢ · vectorᵢ`` for vectors made by :func:`extract`.

    Args:
        vectors: ``(vector_dir, ratio)`` pairs (a bare path means ratio 1.0).
    """
    terms = tuple(
        VectorTerm(vector=os.fspath(v), ratio=1.0) if isinstance(v, (str, os.PathLike))
        else VectorTerm(vector=os.fspath(v[0]), ratio=float(v[1]))
        for v in vectors
    )
    if not terms:
        raise InputError("apply needs at least one --vector")
    recipe = Recipe(target=os.fspath(target), terms=terms,
                    options=MergeOptions(embeddings=embeddings, dtype=dtype, exclude=tuple(exclude)))  # type: ignore[arg-type]
    return run_recipe(recipe, out, **settings)


def merge(base: str | os.PathLike[str] | None = None, chat: str | os.PathLike[str] | None = None,
          target: str | os.PathLike[str] | None = None, ratio: float = 1.0,
          out: str | os.PathLike[str] | None = None, *, recipe: Recipe | str | os.PathLike[str] | None = None,
          embeddings: str = "auto", dtype: str | None = None, exclude: Iterable[str] = (),
          **settings: Any) -> MergeReport:
    """Write ``target + ratio · (chat − base)`` in one streaming pass (no vector on disk).

    With ``recipe`` (a :class:`Recipe` or a YAML file), merge all its terms at once; ``target``
    then overrides the recipe's target when given.
    """
    if out is None:
        raise InputError("merge needs an output directory (-o OUT)")
    if recipe is not None:
        loaded = recipe if isinstance(recipe, Recipe) else load_recipe(Path(recipe))
        if target is not None:
            loaded = loaded.model_copy(update={"target": os.fspath(target)})
        return run_recipe(loaded, out, **settings)
    missing = [n for n, v in (("--base", base), ("--chat", chat), ("--target", target)) if v is None]
    if missing:
        raise InputError(f"merge needs {', '.join(missing)} (or a --recipe)")
    built = Recipe(
        target=os.fspath(target),  # type: ignore[arg-type]
        terms=(PairTerm(base=os.fspath(base), chat=os.fspath(chat), ratio=ratio),),  # type: ignore[arg-type]
        options=MergeOptions(embeddings=embeddings, dtype=dtype, exclude=tuple(exclude)),  # type: ignore[arg-type]
    )
    return run_recipe(built, out, **settings)


# -- running a recipe ------------------------------------------------------------------------

def _vector_manifest(path: Path) -> dict[str, Any] | None:
    manifest = path / VECTOR_MANIFEST
    if not manifest.exists():
        return None
    data = read_json(manifest, VECTOR_MANIFEST)
    return data if data.get("format") == VECTOR_FORMAT else None


def _open_local(ref: ModelRef, allow_pickle: bool) -> Checkpoint:
    return Checkpoint.open(ref, allow_pickle=allow_pickle)


def _close_operands(frame: Operand, terms: list[Term]) -> None:
    close_all([frame.checkpoint] + [t.plus.checkpoint for t in terms]
              + [t.minus.checkpoint for t in terms if t.minus])


def _open_operand(ref: ModelRef, label: str, allow_pickle: bool, *, vector: bool,
                  open_checkpoint: Callable[[ModelRef, bool], Checkpoint] = _open_local) -> Operand:
    manifest = _vector_manifest(ref.path)
    if vector and manifest is None:
        raise InputError(f"--vector {ref.spec}: not a chat-vector directory (no {VECTOR_MANIFEST}); "
                         "make one with `chatvector extract`, or use `chatvector merge` with --base/--chat")
    if not vector and manifest is not None:
        raise InputError(f"--{ref.role} {ref.spec} is a chat-vector directory, not a model; "
                         "use it with `chatvector apply --vector`")
    config_path = ref.path / "config.json"
    if not vector and not config_path.exists():
        raise InputError(f"--{ref.role} {ref.spec}: no config.json; is it a Hugging Face model directory?")
    checkpoint = open_checkpoint(ref, allow_pickle)
    config = checkpoint.config or {}
    if config.get("auto_map"):
        log.warning("%s asks for remote code (auto_map); chatvector never runs it", ref.spec)
    excluded = frozenset(manifest.get("excluded", [])) if manifest else frozenset()
    return Operand(checkpoint, label, load_vocabulary(ref.path), excluded)


def _resolve_all(recipe: Recipe, allow_pickle: bool, *, weights: bool = True,
                 ) -> tuple[ModelRef | None, list[tuple[Any, list[ModelRef]]]]:
    def get(spec: str, role: str, revision: str | None = None) -> ModelRef:
        return resolve_model(spec, role, revision=revision, allow_pickle=allow_pickle, weights=weights)

    target = get(recipe.target, "target", recipe.target_revision) if recipe.target else None
    resolved = []
    for term in recipe.terms:
        if isinstance(term, VectorTerm):
            resolved.append((term, [get(term.vector, "vector")]))
        else:
            resolved.append((term, [get(term.chat, "chat", term.chat_revision),
                                    get(term.base, "base", term.base_revision)]))
    return target, resolved


def _precheck_remote(recipe: Recipe, allow_pickle: bool) -> None:
    """For hub inputs, compare configs before downloading any weights.

    A wrong pairing of models is then reported after a few kB of downloads, not after the
    gigabytes of weights (a common failure of merge tools).
    """
    specs = [recipe.target] + [spec for t in recipe.terms
                               for spec in (getattr(t, "chat", None), getattr(t, "base", None),
                                            getattr(t, "vector", None))]
    if all(spec is None or Path(spec).expanduser().exists() for spec in specs):
        return
    target, resolved = _resolve_all(recipe, allow_pickle, weights=False)
    refs = ([target] if target else []) + [r for _, rs in resolved for r in rs]
    configs = {ref: ref.path / "config.json" for ref in refs}
    loaded = {ref: read_json(path, "config.json") for ref, path in configs.items() if path.exists()}
    if not loaded:
        return
    frame = refs[0]
    problems = [p for ref in refs[1:] if ref in loaded and frame in loaded
                for p in compare_configs(frame.describe(), loaded[frame], ref.describe(), loaded[ref])]
    if problems:
        raise PreflightError(problems)
    _precheck_remote_headers(recipe, target, resolved, allow_pickle)


class _NoRemoteHeaders(Exception):
    """A hub input's headers could not be read before the download."""


def _headers_only(ref: ModelRef, allow_pickle: bool) -> Checkpoint:
    if ref.hub_id is None:
        return _open_local(ref, allow_pickle)
    checkpoint = remote_headers(ref)
    if checkpoint is None:
        raise _NoRemoteHeaders(ref.spec)
    return checkpoint


def _precheck_remote_headers(recipe: Recipe, target: ModelRef | None,
                             resolved: list[tuple[Any, list[ModelRef]]], allow_pickle: bool) -> None:
    """Plan the merge from the hub inputs' safetensors headers, still before any weights are
    downloaded: tensor names, shapes and dtypes are compared as after the download."""
    try:
        frame, terms = _operands(recipe, target, resolved, allow_pickle, open_checkpoint=_headers_only)
    except _NoRemoteHeaders as missing:
        log.info("tensors of %s are compared after the download", missing)
        return
    try:
        build_plan(frame, frame_is_target=target is not None, terms=terms, options=recipe.options)
    finally:
        _close_operands(frame, terms)


def _operands(recipe: Recipe, target_ref: ModelRef | None, resolved: list[tuple[Any, list[ModelRef]]],
              allow_pickle: bool, *, open_checkpoint: Callable[[ModelRef, bool], Checkpoint] = _open_local,
              ) -> tuple[Operand, list[Term]]:
    def operand(ref: ModelRef, label: str, *, vector: bool) -> Operand:
        return _open_operand(ref, label, allow_pickle, vector=vector, open_checkpoint=open_checkpoint)

    terms: list[Term] = []
    frame: Operand | None = None
    if target_ref is not None:
        frame = operand(target_ref, "target", vector=False)
    for number, (term, refs) in enumerate(resolved, start=1):
        suffix = f" #{number}" if len(resolved) > 1 else ""
        if isinstance(term, VectorTerm):
            terms.append(Term(term.ratio, operand(refs[0], f"vector{suffix}", vector=True), None))
        else:
            plus = operand(refs[0], f"chat{suffix}", vector=False)
            minus = operand(refs[1], f"base{suffix}", vector=False)
            terms.append(Term(term.ratio, plus, minus))
    return frame or terms[0].plus, terms


def run_recipe(recipe: Recipe, out: str | os.PathLike[str], *, force: bool = False,
               allow_pickle: bool = False, allow_nonfinite: bool = False,
               shard_size: int = DEFAULT_SHARD_SIZE, threads: int = 2,
               progress: Callable[[int, int], None] | None = None) -> MergeReport:
    """Run a merge or extraction recipe into ``out`` (the engine behind every command)."""
    recipe.check_complete()
    out_path = Path(out)
    check_output_path(out_path, [], force)  # fail before any download
    _precheck_remote(recipe, allow_pickle)
    target_ref, resolved = _resolve_all(recipe, allow_pickle)
    inputs = [r.path for _, refs in resolved for r in refs] + ([target_ref.path] if target_ref else [])
    check_output_path(out_path, inputs, force)
    frame, terms = _operands(recipe, target_ref, resolved, allow_pickle)
    try:
        plan = build_plan(frame, frame_is_target=target_ref is not None, terms=terms, options=recipe.options)
        return _write(recipe, plan, frame, terms, out_path,
                      RunSettings(force, allow_pickle, allow_nonfinite, shard_size, threads, progress))
    finally:
        _close_operands(frame, terms)


def _write(recipe: Recipe, plan: Plan, frame: Operand, terms: list[Term], out: Path,
           settings: RunSettings) -> MergeReport:
    record = provenance(recipe, plan.checkpoints, plan.embedding_policy, plan.notes)
    entries = [(w.name, w.out_dtype, w.shape) for w in plan.tensors]
    prefix = "vector" if recipe.kind == "extract" else "model"
    total = plan.input_bytes
    done = [0]

    def advance(nbytes: int) -> None:
        done[0] += nbytes
        if settings.progress is not None:
            settings.progress(done[0], total)

    with StagedDirectory(out) as staging:
        writer = ShardedTensorWriter(staging.path, entries, prefix, settings.shard_size,
                                     safetensors_metadata(record))
        try:
            stats = run_plan(plan, writer, threads=settings.threads,
                             allow_nonfinite=settings.allow_nonfinite, progress=advance)
            writer.finish({"chatvector_version": record["chatvector_version"]})
        finally:
            writer.close()
        if recipe.kind == "extract":
            _write_vector_files(staging.path, recipe, terms[0], plan, record)
        else:
            _write_model_files(staging.path, frame, terms, recipe, record)
        write_recipe_file(staging.path, record)
        write_model_card(staging.path, record, recipe)
        check_written(staging.path, entries)
        interrupts.check()  # a stop whose exception got lost must not publish the output
        staging.commit(settings.force)
    log.info("wrote %s", out)
    return MergeReport(out, recipe.kind, len(entries), stats.bytes_read, stats.bytes_written,
                       stats.seconds, plan.embedding_policy, plan.notes, stats.nonfinite_tensors)


def _write_model_files(folder: Path, frame: Operand, terms: list[Term], recipe: Recipe,
                       record: dict[str, Any]) -> None:
    target_dir = frame.checkpoint.ref.path
    chat = terms[0].plus  # the first term's chat model (or vector) donates template and stops
    copy_tokenizer_files(target_dir, folder)
    notes: list[str] = record["notes"]
    copy_model_code(frame.checkpoint.ref, folder, notes)
    carry_chat_template(chat.checkpoint.ref.path, folder, frame.vocab, notes)
    generation = write_generation_config(target_dir, chat.checkpoint.ref.path, folder,
                                         chat.vocab, frame.vocab, notes)
    out_dtype = {"float32": "F32", "bfloat16": "BF16", "float16": "F16"}.get(recipe.options.dtype or "")
    write_model_config(target_dir, folder, out_dtype, generation)


def _write_vector_files(folder: Path, recipe: Recipe, term: Term, plan: Plan,
                        record: dict[str, Any]) -> None:
    chat_dir = term.plus.checkpoint.ref.path
    copy_tokenizer_files(chat_dir, folder)
    carry_chat_template(chat_dir, folder, None, record["notes"])
    write_generation_config(chat_dir, chat_dir, folder, None, None, record["notes"])
    if (chat_dir / "config.json").exists():
        (folder / "config.json").write_text((chat_dir / "config.json").read_text(encoding="utf-8"),
                                            encoding="utf-8")
    excluded = sorted(w.name for w in plan.tensors if w.policy in {"excluded", "copy"})
    manifest = {
        "format": VECTOR_FORMAT,
        "format_version": 1,
        "chatvector_version": record["chatvector_version"],
        "formula": "chat - base",
        "base": record["inputs"][1],
        "chat": record["inputs"][0],
        "dtype": recipe.options.dtype,
        "excluded": excluded,
        "architecture": {k: (term.plus.checkpoint.config or {}).get(k)
                         for k in ("architectures", "model_type", "hidden_size", "num_hidden_layers",
                                   "vocab_size", "tie_word_embeddings")},
        "tensors": {w.name: list(w.shape) for w in plan.tensors},
    }
    (folder / VECTOR_MANIFEST).write_text(json.dumps(manifest, indent=2) + "\n", encoding="utf-8")
