"""The non-weight files of an output, and which model each comes from.

Config, tokenizer and vocabulary come from the target (it knows the new language). The chat
template(s), the EOS token and the generation config's stop ids come from the chat model (it
knows how to stop). Token ids are translated by token string, because the target's vocabulary may
differ from the chat model's. The stop ids end up the same in ``generation_config.json`` and
``config.json``, and the EOS token named by ``tokenizer_config.json`` and
``special_tokens_map.json`` is always one of them: when none of the chat model's stop tokens
exists in the target's vocabulary, the target's own EOS is kept, and a note says so.

Every file is read through :class:`chatvector.io.files.ModelDir` (regular files inside their
model directory, bounded in size, JSON checked against :mod:`chatvector.io.schemas`) and written
through :func:`chatvector.io.output.write_file`.
"""

from __future__ import annotations

import json
import logging
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from chatvector.errors import InputError
from chatvector.io.files import ModelDir, read_text
from chatvector.io.output import write_file
from chatvector.io.schemas import (
    ChatTemplateFile,
    GenerationConfig,
    ModelConfig,
    SpecialTokensMap,
    TokenizerConfig,
    TokenizerJson,
)
from chatvector.merge.vocab import Vocabulary, special_token_strings

log = logging.getLogger(__name__)

TOKENIZER_FILES = (
    "tokenizer.json",
    "tokenizer_config.json",
    "special_tokens_map.json",
    "tokenizer.model",
    "vocab.json",
    "merges.txt",
    "added_tokens.json",
    "vocab.txt",
)
TEMPLATE_FILE = "chat_template.jinja"
TEMPLATE_DIR = "additional_chat_templates"  # transformers' folder for named templates
_TEMPLATE_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,99}")


def _json(text: dict[str, Any]) -> str:
    return json.dumps(text, indent=2, ensure_ascii=False) + "\n"


# -- chat templates ----------------------------------------------------------------------------------
def read_chat_templates(model: ModelDir) -> dict[str, str]:
    """Every chat template of a model directory by name (``default`` for the main one), wherever
    transformers may have stored them: ``chat_template.jinja`` and ``additional_chat_templates/``
    (which take priority, as in transformers), ``chat_template.json``, or ``tokenizer_config.json``
    (a string, or the list form ``[{"name", "template"}]``)."""
    found: dict[str, str] = {}
    if model.has(TEMPLATE_FILE):
        found["default"] = model.text(TEMPLATE_FILE) or ""
    for name in model.names_in(TEMPLATE_DIR):
        if name.endswith(".jinja"):
            found[name.removesuffix(".jinja")] = model.text(f"{TEMPLATE_DIR}/{name}") or ""
    if found:
        return found
    for name, schema in (("chat_template.json", ChatTemplateFile), ("tokenizer_config.json", TokenizerConfig)):
        template = (model.json(name, schema) or {}).get("chat_template")
        if isinstance(template, str):
            return {"default": template}
        if isinstance(template, list) and template:
            return {entry["name"]: entry["template"] for entry in template}
    return {}


def read_chat_template(model: ModelDir) -> str | None:
    """The main chat template of a model directory (None when it has none)."""
    templates = read_chat_templates(model)
    return templates.get("default") or next(iter(templates.values()), None)


def _write_templates(templates: dict[str, str], out: Path, notes: list[str]) -> dict[str, str]:
    """Write templates as transformers does (the main one in chat_template.jinja, named ones in
    additional_chat_templates/); return those written. Names that are not plain file names are
    skipped with a note, since they would become paths."""
    written: dict[str, str] = {}
    for name, template in templates.items():
        if name != "default" and not _TEMPLATE_NAME.fullmatch(name):
            notes.append(
                f"the chat model's template named {name!r} was not carried over: its name is not a plain file name"
            )
            continue
        if name == "default":
            write_file(out / TEMPLATE_FILE, template)
        else:
            (out / TEMPLATE_DIR).mkdir(exist_ok=True)
            write_file(out / TEMPLATE_DIR / f"{name}.jinja", template)
        written[name] = template
    return written


def _template_entry(templates: dict[str, str]) -> str | list[dict[str, str]]:
    if list(templates) == ["default"]:
        return templates["default"]
    return [{"name": name, "template": template} for name, template in templates.items()]


# -- copying -------------------------------------------------------------------------------------------
PROCESSOR_FILES = ("preprocessor_config.json", "processor_config.json", "video_preprocessor_config.json")


def is_multimodal(config: dict[str, Any] | None) -> bool:
    """Whether a config describes a model with more than a language tower (LLaVA-style)."""
    return config is not None and ("vision_config" in config or "text_config" in config)


def copy_processor_files(source: ModelDir, out: Path) -> list[str]:
    """Copy a multimodal model's processor files (image and video preprocessing settings)."""
    copied = []
    for name in PROCESSOR_FILES:
        data = source.bytes(name)
        if data is not None:
            write_file(out / name, data)
            copied.append(name)
    return copied


def copy_tokenizer_files(source: ModelDir, out: Path) -> list[str]:
    """Copy the tokenizer files present in ``source``; return their names."""
    copied = []
    for name in TOKENIZER_FILES:
        data = source.bytes(name)
        if data is not None:
            write_file(out / name, data)
            copied.append(name)
    return copied


def copy_model_code(source: ModelDir, out: Path, notes: list[str]) -> list[str]:
    """Copy the Python files of a model that needs its own code (``auto_map``); return their names.

    Without them the output cannot be loaded with ``trust_remote_code``. They are copied as bytes
    and never imported or run here; a note in the model card lists them so that users review them
    as they would the target's. Like every file, each must be a regular file inside the model.
    """
    configs = [source.json("config.json", ModelConfig), source.json("tokenizer_config.json", TokenizerConfig)]
    if not any(config and config.get("auto_map") for config in configs):
        return []
    copied = []
    for path in sorted(source.path.glob("*.py")):
        write_file(out / path.name, source.bytes(path.name) or b"")
        copied.append(path.name)
    if copied:
        notes.append(f"the target needs its own code (auto_map); copied unexecuted: {', '.join(copied)}")
    return copied


# -- stop tokens -------------------------------------------------------------------------------------
def _as_list(ids: Any) -> list[int]:
    if ids is None:
        return []
    return list(ids) if isinstance(ids, list) else [ids]


@dataclass
class Stops:
    """What the output stops on: its EOS string and every stop id, in the target's vocabulary."""

    eos_token: str | None  # the string the tokenizer files name; None: keep the target's
    ids: list[int]
    source: str  # "chat" or "target"
    notes: list[str] = field(default_factory=list)

    def as_config_value(self) -> int | list[int] | None:
        if not self.ids:
            return None
        return self.ids[0] if len(self.ids) == 1 else list(self.ids)


class _Translator:
    """Maps ids of the chat vocabulary to the target's by token string, refusing ids the target lacks."""

    def __init__(self, chat_vocab: Vocabulary | None, target_vocab: Vocabulary | None, vocab_size: int | None) -> None:
        self.target = target_vocab.token_to_id if target_vocab else None
        self.target_ids = set(self.target.values()) if self.target is not None else None
        same = chat_vocab is None or target_vocab is None or chat_vocab.token_to_id == target_vocab.token_to_id
        self.by_id = None if same or chat_vocab is None else {i: t for t, i in chat_vocab.token_to_id.items()}
        self.chat_by_id = {i: t for t, i in chat_vocab.token_to_id.items()} if chat_vocab else {}
        self.vocab_size = vocab_size

    def exists(self, token_id: int) -> bool:
        if self.target_ids is not None:
            return token_id in self.target_ids
        return self.vocab_size is None or token_id < self.vocab_size

    def __call__(self, token_id: int) -> int | None:
        if self.by_id is None:  # same (or unknown) vocabulary: the id stands, if it exists there
            return token_id if self.exists(token_id) else None
        token = self.by_id.get(token_id)
        return None if token is None or self.target is None else self.target.get(token)

    def describe(self, token_id: int) -> str:
        token = self.chat_by_id.get(token_id)
        return f"{token_id} ({token!r})" if token is not None else str(token_id)


def _stop_ids(model: ModelDir, vocab: Vocabulary | None, eos: str | None) -> list[int]:
    """A model's own stop ids: generation config, else config, else its EOS token's id."""
    for name, schema in (("generation_config.json", GenerationConfig), ("config.json", ModelConfig)):
        ids = _as_list((model.json(name, schema) or {}).get("eos_token_id"))
        if ids:
            return ids
    if eos is not None and vocab is not None and eos in vocab.token_to_id:
        return [vocab.token_to_id[eos]]
    return []


def decide_stops(
    target: ModelDir,
    chat: ModelDir,
    target_vocab: Vocabulary | None,
    chat_vocab: Vocabulary | None,
    vocab_size: int | None,
) -> Stops:
    """The output's EOS string and stop ids: the chat model's, translated into the target's
    vocabulary; the target's own when none of the chat model's exists there. Never empty when
    either model has one, and the EOS string's id is always among the ids."""
    translate = _Translator(chat_vocab, target_vocab, vocab_size)
    chat_eos = special_token_strings(chat.path, chat.root).get("eos_token")
    target_eos = special_token_strings(target.path, target.root).get("eos_token")
    stops = Stops(None, [], "chat")
    chat_ids = _stop_ids(chat, chat_vocab, chat_eos)
    for token_id in chat_ids:
        mapped = translate(token_id)
        if mapped is None:
            stops.notes.append(
                f"stop token id {translate.describe(token_id)} of the chat model is not in the "
                "target vocabulary; dropped"
            )
        elif mapped not in stops.ids:
            stops.ids.append(mapped)
    if chat_eos is not None and (target_vocab is None or chat_eos in target_vocab.token_to_id):
        stops.eos_token = chat_eos
        if target_vocab is not None and target_vocab.token_to_id[chat_eos] not in stops.ids:
            stops.ids.append(target_vocab.token_to_id[chat_eos])
    elif chat_eos is not None:
        stops.notes.append(f"the chat model's EOS token {chat_eos!r} is not in the target vocabulary")
    if not stops.ids:
        reason = (
            "none of the chat model's stop tokens is in the target vocabulary"
            if chat_ids or chat_eos
            else "the chat model names no stop token"
        )
        return _target_stops(target, target_vocab, target_eos, reason, stops.notes)
    if stops.eos_token is None and target_eos is not None and target_vocab is not None:
        target_id = target_vocab.token_to_id.get(target_eos)
        if target_id is not None and target_id not in stops.ids:
            stops.ids.append(target_id)  # the tokenizer keeps the target's EOS: it must stop there too
    return stops


def _target_stops(
    target: ModelDir, target_vocab: Vocabulary | None, target_eos: str | None, reason: str, notes: list[str]
) -> Stops:
    ids = _stop_ids(target, target_vocab, target_eos)
    if ids:
        notes.append(
            f"{reason}: the target's own EOS ({target_eos!r}, id {', '.join(map(str, ids))}) was kept, "
            "so generation stops there"
        )
    else:
        notes.append(
            "neither the chat model's nor the target's stop tokens are known: the output has no EOS id; "
            "set eos_token_id in generation_config.json before generating with it"
        )
    return Stops(None, ids, "target", notes)


# -- the files ---------------------------------------------------------------------------------------
def write_generation_config(
    target: ModelDir, chat: ModelDir, out: Path, stops: Stops, translate_ids: _Translator | None, notes: list[str]
) -> dict[str, Any]:
    """generation_config.json: the chat model's settings over the target's, with the decided stop ids."""
    config: dict[str, Any] = {}
    target_config = target.json("generation_config.json", GenerationConfig) or {}
    config.update(target_config)
    config.update(chat.json("generation_config.json", GenerationConfig) or {})  # chat last: its settings win
    config.pop("eos_token_id", None)
    if stops.as_config_value() is not None:
        config["eos_token_id"] = stops.as_config_value()
    for key in ("pad_token_id", "bos_token_id"):
        value = config.get(key)
        if value is None or translate_ids is None:
            continue
        mapped = [translate_ids(i) for i in _as_list(value)]
        if all(m is not None for m in mapped):
            config[key] = mapped if isinstance(value, list) else mapped[0]
        else:
            notes.append(
                f"{key} {value} of the chat model is not in the target vocabulary; the target's "
                f"{key} ({target_config.get(key)}) was kept"
            )
            config[key] = target_config.get(key)
            if config[key] is None:
                del config[key]
    config.pop("transformers_version", None)
    write_file(out / "generation_config.json", _json(config))
    return config


def _set_eos(config: dict[str, Any], eos: str) -> None:
    current = config.get("eos_token")
    config["eos_token"] = {**current, "content": eos} if isinstance(current, dict) else eos


def read_template_file(path: Path) -> str:
    """A chat template the user gave as a file (``--chat-template FILE``), read by the small-file
    rule (a regular file, bounded size, UTF-8).

    Raises:
        InputError: naming the file, when it cannot be read or holds no template.
    """
    text = read_text(path, "--chat-template file", error=InputError)
    if not text.strip():
        raise InputError(f"{path}: the --chat-template file is empty; give a Jinja chat template", file=path)
    return text


def carry_chat_template(
    chat: ModelDir,
    out: Path,
    stops: Stops | None,
    target_vocab: Vocabulary | None,
    notes: list[str],
    template: str | None = None,
) -> bool:
    """Put the chat model's templates (or ``template``, given by the user) and the decided EOS token
    into the output's tokenizer files (``tokenizer_config.json`` and ``special_tokens_map.json``
    alike). An empty template is carried, with a warning: chat formatting through it yields nothing."""
    found = {"default": template} if template is not None else read_chat_templates(chat)
    empty = sorted(name for name, text in found.items() if not text.strip())
    if empty:
        problem = (
            f"the chat model's chat template {', '.join(map(repr, empty))} is empty ({chat.path}); it is carried "
            "as it is, so chat formatting with it yields no prompt: give --chat-template FILE to use another"
        )
        log.warning("%s", problem)
        notes.append(problem)
    templates = _write_templates(found, out, notes)
    output = ModelDir(out)
    tokenizer_config = output.json("tokenizer_config.json", TokenizerConfig) or {}
    if templates:
        tokenizer_config["chat_template"] = _template_entry(templates)
    else:
        notes.append(f"the chat model ({chat.path}) has no chat template; none was carried over")
    if templates and target_vocab is not None:
        _note_missing_specials(chat, templates, target_vocab, notes)
    if stops is not None and stops.eos_token is not None:
        _set_eos(tokenizer_config, stops.eos_token)
        special_map = output.json("special_tokens_map.json", SpecialTokensMap)
        if special_map is not None:
            _set_eos(special_map, stops.eos_token)
            write_file(out / "special_tokens_map.json", _json(special_map))
    if tokenizer_config:
        write_file(out / "tokenizer_config.json", _json(tokenizer_config))
    return bool(templates)


def _note_missing_specials(
    chat: ModelDir, templates: dict[str, str], target_vocab: Vocabulary, notes: list[str]
) -> None:
    added = (chat.json("tokenizer.json", TokenizerJson) or {}).get("added_tokens") or []
    specials = sorted({t["content"] for t in added if t.get("special")})
    missing = [
        t
        for t in specials
        if any(t in template for template in templates.values()) and t not in target_vocab.token_to_id
    ]
    if missing:
        notes.append(
            f"the chat template uses special tokens the target vocabulary lacks "
            f"({', '.join(missing)}); they will be split into ordinary tokens"
        )


def write_model_config(target: ModelDir, out: Path, out_dtype: str | None, stops: Stops) -> None:
    """config.json of the target, with the output dtype (a ``--dtype`` name, None: unchanged) and the
    decided stop ids."""
    config = target.json("config.json", ModelConfig) or {}
    if out_dtype:
        config["torch_dtype"] = out_dtype
        if "dtype" in config:
            config["dtype"] = out_dtype
    if stops.as_config_value() is not None:
        config["eos_token_id"] = stops.as_config_value()
    write_file(out / "config.json", _json(config))


def write_model_files(
    target: ModelDir,
    chat: ModelDir,
    out: Path,
    target_vocab: Vocabulary | None,
    chat_vocab: Vocabulary | None,
    vocab_size: int | None,
    out_dtype: str | None,
    notes: list[str],
    template: str | None = None,
) -> Stops:
    """Every non-weight file of a merged model: tokenizer and code of the target, templates and stop
    tokens of the chat model (``template``: the user's instead), generation config and config."""
    copy_tokenizer_files(target, out)
    copy_model_code(target, out, notes)
    stops = decide_stops(target, chat, target_vocab, chat_vocab, vocab_size)
    notes += stops.notes
    carry_chat_template(chat, out, stops, target_vocab, notes, template)
    write_generation_config(target, chat, out, stops, _Translator(chat_vocab, target_vocab, vocab_size), notes)
    write_model_config(target, out, out_dtype, stops)
    return stops


def write_vector_files(chat: ModelDir, out: Path, notes: list[str]) -> None:
    """The chat model's tokenizer, templates, generation config and config, for ``apply`` to use later."""
    copy_tokenizer_files(chat, out)
    stops = Stops(None, _stop_ids(chat, None, None), "chat")  # kept as they are: apply translates them
    carry_chat_template(chat, out, None, None, notes)
    write_generation_config(chat, chat, out, stops, None, notes)
    config = chat.bytes("config.json")
    if config is not None:
        write_file(out / "config.json", config)
