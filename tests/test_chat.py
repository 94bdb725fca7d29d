"""`chatvector chat`: slash commands, streaming, and the model receiving the whole history."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from chatvector.chat import ChatSession
from chatvector.eval.backends import GenerationSettings, HFBackend


def test_session_sends_the_whole_history_and_handles_commands(tmp_path):
    seen = []

    def reply(conversation):
        seen.append([m["content"] for m in conversation])
        yield f"reply {len(conversation)}"

    session = ChatSession(reply)
    assert "".join(session.say("hello")) == "reply 1"
    assert "".join(session.say("again")) == "reply 3"
    assert seen[-1] == ["hello", "reply 1", "again"]
    assert "system prompt set" in session.command("/system be brief")
    assert session.history == []
    "".join(session.say("new"))
    assert seen[-1] == ["be brief", "new"]
    assert "saved 3 messages" in session.command(f"/save {tmp_path / 'c.json'}")
    saved = json.loads((tmp_path / "c.json").read_text())
    assert [m["role"] for m in saved] == ["system", "user", "assistant"]
    assert "history cleared" in session.command("/reset") and session.history == []
    assert "unknown command /nope" in session.command("/nope")
    assert session.command("/quit") is None


def test_real_model_prompt_grows_with_the_conversation(trios):
    backend = HFBackend(trios["llama"].chat, GenerationSettings(max_new_tokens=3))
    lengths = []

    def recording(conversation):
        lengths.append(len(backend.tokenizer(backend._prompt(conversation)).input_ids))
        yield from backend.stream(conversation)

    session = ChatSession(recording)
    first = "".join(session.say("hello cat"))
    "".join(session.say("what is your name"))
    # the streamed reply is the model's greedy reply, and the history keeps it
    assert first.strip() == backend.generate([[{"role": "user", "content": "hello cat"}]])[0]
    assert session.history[1] == {"role": "assistant", "content": first.strip()}
    # turn two's prompt holds turn one's question and answer too
    assert lengths[1] > lengths[0] + 3


@pytest.mark.slow
def test_chat_command_driven_through_stdin(trios, tmp_path):
    exe = Path(sys.executable).parent / "chatvector"
    script = (
        "\n".join(
            [
                "hello cat",
                "/system you are a cat",
                "what is your name",
                f"/save {tmp_path / 'chat.json'}",
                "/bogus",
                "/quit",
            ]
        )
        + "\n"
    )
    done = subprocess.run(
        [
            str(exe),
            "-v",
            "chat",
            str(trios["llama"].chat),
            "--max-new-tokens",
            "4",
            "--device",
            "cpu",
            "--dtype",
            "bfloat16",
            "--threads",
            "1",
        ],
        input=script,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.count("bot> ") == 2
    assert "system prompt set" in done.stdout and "unknown command /bogus" in done.stdout
    saved = json.loads((tmp_path / "chat.json").read_text())
    assert [m["role"] for m in saved] == ["system", "user", "assistant"]
    assert saved[1]["content"] == "what is your name"
    assert "on cpu in bfloat16 (torch threads: 1)" in done.stderr  # chat takes eval's device options


def test_a_failed_save_is_said_and_the_conversation_goes_on(tmp_path):
    session = ChatSession(lambda conversation: iter(["fine"]))
    "".join(session.say("hello"))
    for bad in (tmp_path / "no-such-folder" / "c.json", tmp_path):  # a missing folder, a directory
        message = session.command(f"/save {bad}")
        assert message is not None and message.startswith(f"(could not save to {bad}: ") and "kept" in message
    assert [m["content"] for m in session.history] == ["hello", "fine"]
    "".join(session.say("again"))
    assert "saved 4 messages" in session.command(f"/save {tmp_path / 'c.json'}")
