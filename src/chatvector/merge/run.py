"""Run a recipe: preflight, stream every tensor into a staging directory, add the sidecar files,
re-check what was written, and only then rename the staging directory to OUT.

This is the engine room behind ``extract``, ``apply`` and ``merge`` (see :mod:`chatvector.api`).
"""

from __future__ import annotations

import dataclasses
import logging
import os
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from chatvector import interrupts
from chatvector.dtypes import DTYPES
from chatvector.errors import InputError
from chatvector.io.checkpoint import model_root
from chatvector.io.files import ModelDir
from chatvector.io.gguf import RECIPE_KEY, GGUFTensorWriter, engine_dtype
from chatvector.io.gguf_model import describe_model
from chatvector.io.output import (
    ShardedTensorWriter,
    StagedDirectory,
    StagedFile,
    check_output_file,
    check_output_path,
    check_written,
    fingerprint_output,
)
from chatvector.merge.assets import (
    copy_processor_files,
    is_multimodal,
    read_template_file,
    write_model_files,
    write_vector_files,
)
from chatvector.merge.card import provenance, safetensors_metadata, write_model_card, write_recipe_file
from chatvector.merge.dryrun import PlanSummary, summarize_plan
from chatvector.merge.engine import run_plan
from chatvector.merge.inputs import Inputs, locate, open_inputs, precheck_remote
from chatvector.merge.plan import Operand, Plan
from chatvector.merge.recipe import RECIPE_FILENAME, Recipe
from chatvector.merge.vector import VectorManifest, write_manifest
from chatvector.options import TEMPLATE_SOURCES, RunOptions

__all__ = ["MergeReport", "run_recipe", "Progress"]

log = logging.getLogger(__name__)

Progress = Callable[[int, int], None]  # (bytes done, bytes total)


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
    plan: PlanSummary | None = None  # set for a dry run, which writes nothing

    def summary(self) -> str:
        """A few lines for people: what was written, how fast, which policies and notes applied."""
        if self.plan is not None:
            return self.plan.text()
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


def run_recipe(
    recipe: Recipe, out: str | os.PathLike[str], run: RunOptions | None = None, progress: Progress | None = None
) -> MergeReport:
    """Run a merge or extraction recipe into ``out`` (the engine behind every command).

    Args:
        recipe: what to compute.
        out: the output directory; written atomically.
        run: how to run (threads, shard size, what to allow); defaults apply when None.
        progress: called with (bytes read so far, total bytes to read).
    """
    run = run or RunOptions()
    recipe.check_complete()
    out_path = Path(out)
    gguf = run.format == "gguf"
    if gguf and recipe.kind == "extract":
        raise InputError("--format gguf writes a model, not a vector: use it with merge or apply", option="--format")
    check = check_output_file if gguf else check_output_path
    check(out_path, [], run.force)  # fail before any download
    precheck_remote(recipe, allow_pickle=run.allow_pickle)
    with open_inputs(recipe, allow_pickle=run.allow_pickle) as inputs:
        check(out_path, inputs.directories, run.force)
        if gguf:  # refuse an architecture or tokenizer llama.cpp cannot take before any planning
            frame = inputs.frame.checkpoint
            describe_model(frame.ref.path, frame.config)
        plan = inputs.plan(lineage=True)
        if run.dry_run:
            return _dry_run(inputs, plan, out_path, run)
        return (_write_gguf if gguf else _write)(inputs, plan, out_path, run, progress)


def _dry_run(inputs: Inputs, plan: Plan, out: Path, run: RunOptions) -> MergeReport:
    """The report of a run that stops after its checks: the plan, and nothing written."""
    recipe = inputs.recipe
    if recipe.kind != "extract":
        _template_file(recipe)  # a template file that cannot be used fails the dry run too
    summary = summarize_plan(plan, out, recipe.kind, run.shard_size)
    return MergeReport(
        out,
        f"{recipe.kind} (dry run)",
        len(summary.tensors),
        summary.bytes_read,
        0,
        0.0,
        plan.embedding_policy,
        plan.notes,
        plan=summary,
    )


def _write(inputs: Inputs, plan: Plan, out: Path, run: RunOptions, progress: Progress | None) -> MergeReport:
    recipe = inputs.recipe
    record = provenance(locate(recipe, inputs), plan.checkpoints, plan.embedding_policy, plan.notes, plan.details)
    entries = [(w.name, w.out_dtype, w.shape) for w in plan.tensors]
    prefix = "vector" if recipe.kind == "extract" else "model"
    total = plan.input_bytes
    done = [0]

    def advance(nbytes: int) -> None:
        done[0] += nbytes
        if progress is not None:
            progress(done[0], total)

    template = _template_file(recipe) if recipe.kind != "extract" else None
    with StagedDirectory(out) as staging:
        # The small files first: a file refused by the reading rule stops the run before any arithmetic.
        if recipe.kind == "extract":
            _write_vector_files(staging.path, inputs, plan, record)
        else:
            _write_model_files(staging.path, inputs, plan, record, template)
        metadata = safetensors_metadata(record, recipe)
        writer = ShardedTensorWriter(staging.path, entries, prefix, run.shard_size, metadata)
        try:
            stats = run_plan(plan, writer, threads=run.threads, allow_nonfinite=run.allow_nonfinite, progress=advance)
            writer.finish({"chatvector_version": record["chatvector_version"]})
        finally:
            writer.close()
        write_model_card(staging.path, record, recipe)
        record["output"] = fingerprint_output(staging.path, skip=(RECIPE_FILENAME,))
        write_recipe_file(staging.path, record)
        check_written(staging.path, entries)
        interrupts.check()  # a stop whose exception got lost must not publish the output
        staging.commit(run.force)
    log.info("wrote %s", out)
    return MergeReport(
        out,
        recipe.kind,
        len(entries),
        stats.bytes_read,
        stats.bytes_written,
        stats.seconds,
        plan.embedding_policy,
        plan.notes,
        stats.nonfinite_tensors,
    )


def _write_gguf(inputs: Inputs, plan: Plan, out: Path, run: RunOptions, progress: Progress | None) -> MergeReport:
    """The merge into one GGUF file: the sidecar files a safetensors output would carry are
    written into the staging directory first (the tokenizer, chat template and stop ids the
    merge decides), the GGUF's metadata is read from them, and the engine streams its chunks
    into :class:`GGUFTensorWriter`."""
    recipe = inputs.recipe
    record = provenance(locate(recipe, inputs), plan.checkpoints, plan.embedding_policy, plan.notes, plan.details)
    # The engine computes in float32 and rounds once, to the GGUF type where it is a float format
    # (as for a safetensors output of that dtype); q8_0 blocks are packed from its float32 chunks.
    # Either way every tensor is the float32 merge converted to the GGUF type, bit for bit.
    tensors = [
        dataclasses.replace(w, out_dtype=engine_dtype(run.gguf_type, tuple(w.shape)))
        if DTYPES[w.out_dtype].is_float
        else w
        for w in plan.tensors
    ]
    plan = dataclasses.replace(plan, tensors=tensors)
    total = plan.input_bytes
    done = [0]

    def advance(nbytes: int) -> None:
        done[0] += nbytes
        if progress is not None:
            progress(done[0], total)

    template = _template_file(recipe)
    with StagedFile(out, "model.gguf") as staging:
        _write_model_files(staging.path, inputs, plan, record, template)
        model = describe_model(staging.path)
        record["output"] = {"format": "gguf", "gguf_type": run.gguf_type}
        metadata = {
            RECIPE_KEY: yaml.safe_dump(record, sort_keys=False, allow_unicode=True),
            "chatvector.version": str(record["chatvector_version"]),
        }
        entries = [(w.name, tuple(w.shape)) for w in plan.tensors]
        # general.name: the output's name (the model directory here is the staging directory)
        writer = GGUFTensorWriter(staging.file, model, entries, run.gguf_type, metadata, name=out.stem)
        try:
            stats = run_plan(plan, writer, threads=run.threads, allow_nonfinite=run.allow_nonfinite, progress=advance)
            writer.finish()
        finally:
            writer.close()
        written = staging.file.stat().st_size
        interrupts.check()  # a stop whose exception got lost must not publish the output
        staging.commit(run.force)
    log.info("wrote %s", out)
    return MergeReport(
        out,
        f"GGUF ({run.gguf_type})",
        len(entries),
        stats.bytes_read,
        written,
        stats.seconds,
        plan.embedding_policy,
        plan.notes,
        stats.nonfinite_tensors,
    )


def _files(operand: Operand) -> ModelDir:
    ref = operand.checkpoint.ref
    return ModelDir(ref.path, model_root(ref))


def _template_source(inputs: Inputs) -> str:
    """Whose chat template and stop ids the output gets: the chat model's, or (multimodal) the
    target's (a template file given by the user replaces the template only, not the stop ids)."""
    wanted = inputs.recipe.options.chat_template
    if wanted in ("chat", "target"):
        return wanted
    return "target" if is_multimodal(inputs.frame.checkpoint.config) else "chat"


def _template_file(recipe: Recipe) -> str | None:
    """The user's template, when ``--chat-template`` names a file (read before anything is written)."""
    wanted = recipe.options.chat_template
    return None if wanted in TEMPLATE_SOURCES else read_template_file(Path(wanted))


def _write_model_files(folder: Path, inputs: Inputs, plan: Plan, record: dict[str, Any], template: str | None) -> None:
    frame = inputs.frame
    chat = inputs.terms[0].plus  # the first term's chat model (or vector) donates template and stops
    if _template_source(inputs) == "target":
        chat = frame
        record["notes"].append("chat template and stop tokens kept from the target")
    stops = write_model_files(
        _files(frame),
        _files(chat),
        folder,
        frame.vocab,
        chat.vocab,
        plan.vocab_size,
        inputs.recipe.options.dtype,
        record["notes"],
        template,
    )
    if template is not None:
        record["notes"].append(f"chat template from {inputs.recipe.options.chat_template}")
    copy_processor_files(_files(frame), folder)  # a multimodal target's image/video processor settings
    record["stops"] = {"eos_token": stops.eos_token, "eos_token_id": stops.ids, "source": stops.source}


def _write_vector_files(folder: Path, inputs: Inputs, plan: Plan, record: dict[str, Any]) -> None:
    term = inputs.terms[0]
    write_vector_files(_files(term.plus), folder, record["notes"])
    config = term.plus.checkpoint.config or {}
    write_manifest(
        folder,
        VectorManifest(
            format="chatvector-vector",
            chatvector_version=record["chatvector_version"],
            base=record["inputs"][1],
            chat=record["inputs"][0],
            dtype=inputs.recipe.options.dtype,
            excluded=tuple(sorted(w.name for w in plan.tensors if w.policy in {"excluded", "copy"})),
            architecture={
                k: config.get(k)
                for k in (
                    "architectures",
                    "model_type",
                    "hidden_size",
                    "num_hidden_layers",
                    "vocab_size",
                    "tie_word_embeddings",
                )
            },
            tensors={w.name: tuple(w.shape) for w in plan.tensors},
        ),
    )
