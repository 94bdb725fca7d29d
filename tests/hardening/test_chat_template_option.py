"""``--chat-template FILE`` (a template file, read by the model-file rule) and empty chat templates
(carried with a warning, never silently)."""

from __future__ import annotations

import json
import os

from hardening_helpers import outcome
from helpers import merge_args, run_cli

TEMPLATE = "{% for m in messages %}[{{ m['role'] }}] {{ m['content'] }}\n{% endfor %}[assistant]"


def test_a_template_file_becomes_the_outputs_template(monkeypatch, capsys, fresh, tmp_path):
    from transformers import AutoTokenizer

    path = tmp_path / "template.jinja"
    path.write_text(TEMPLATE)
    code, message = run_cli(monkeypatch, capsys, *merge_args(fresh, tmp_path / "out"), "--chat-template", path)
    assert code == 0, message
    out = tmp_path / "out"
    assert (out / "chat_template.jinja").read_text() == TEMPLATE
    assert json.loads((out / "tokenizer_config.json").read_text())["chat_template"] == TEMPLATE
    assert f"chat template from {path}" in message
    tokenizer = AutoTokenizer.from_pretrained(out)
    text = tokenizer.apply_chat_template([{"role": "user", "content": "hi"}], tokenize=False)
    assert text == "[user] hi\n[assistant]"


def test_template_files_that_cannot_be_used_are_refused_before_writing(monkeypatch, capsys, fresh, tmp_path):
    empty = tmp_path / "empty.jinja"
    empty.write_text("  \n")
    fifo = tmp_path / "fifo.jinja"
    os.mkfifo(fifo)
    cases = [(empty, "is empty"), (fifo, "FIFO"), (tmp_path / "missing.jinja", "no such file")]
    for path, words in cases:
        args = [*merge_args(fresh, tmp_path / "out"), "--chat-template", path]
        outcome(monkeypatch, capsys, fresh.values(), tmp_path, args, 2, "InputError", str(path), words)


def test_an_empty_chat_template_is_carried_with_a_warning(monkeypatch, capsys, fresh, tmp_path):
    (fresh["chat"] / "chat_template.jinja").write_text("")
    config_path = fresh["chat"] / "tokenizer_config.json"
    config = json.loads(config_path.read_text())
    config.pop("chat_template", None)
    config_path.write_text(json.dumps(config))
    code, message = run_cli(monkeypatch, capsys, *merge_args(fresh, tmp_path / "out"))
    assert code == 0, message
    assert "chat template 'default' is empty" in message and "--chat-template FILE" in message
    assert (tmp_path / "out" / "chat_template.jinja").read_text() == ""
