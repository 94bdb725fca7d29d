"""Local generation at scale: device and dtype, token-budget batching, and the replies cache."""

from __future__ import annotations

import json

import pytest
from hypothesis import given
from hypothesis import strategies as st

from chatvector.errors import InputError
from chatvector.eval.backends import HFBackend, ScriptedBackend, resolve_device, resolve_dtype
from chatvector.eval.batching import plan_batches
from chatvector.eval.generate import RepliesCache, converse
from chatvector.eval.options import BackendOptions, GenerationOptions
from chatvector.eval.suites import Sample

PROMPTS = [
    "hello",
    "what is your name please tell me about the city and the river",
    "red blue",
    "tell me about the book",
    "one two three four five",
    "cat",
    "the dog sat on the mat yes no thanks",
]


@given(
    st.lists(st.integers(1, 300), max_size=40),
    st.integers(1, 64),
    st.integers(1, 4000),
    st.none() | st.integers(1, 20),
)
def test_batches_hold_every_prompt_once_within_the_budget(lengths, new_tokens, budget, rows):
    batches = plan_batches(lengths, new_tokens, budget, rows)
    assert sorted(i for batch in batches for i in batch) == list(range(len(lengths)))
    for batch in batches:
        longest = max(lengths[i] for i in batch)
        assert len(batch) == 1 or len(batch) * (longest + new_tokens) <= budget
        assert rows is None or len(batch) <= rows
        assert lengths[batch[0]] == longest  # the longest first: its width is the batch's
    firsts = [lengths[b[0]] for b in batches]
    assert firsts == sorted(firsts, reverse=True)  # longest batches first: an out-of-memory shows at once


def test_the_cpu_batches_sixteen_rows_unless_told(chat_model):
    assert HFBackend(chat_model, options=BackendOptions(device="cpu")).describe()["batch_rows"] == 16
    assert HFBackend(chat_model, options=BackendOptions(device="cpu", batch_rows=40)).batch_rows == 40


def test_batches_are_filled_greedily():
    assert plan_batches([3, 10, 4, 9], max_new_tokens=2, budget=24) == [[1, 3], [2, 0]]
    assert plan_batches([5, 5, 5], max_new_tokens=5, budget=30) == [[0, 1, 2]]
    assert plan_batches([50, 1], max_new_tokens=5, budget=10) == [[0], [1]]  # too long alone: still run


@pytest.fixture(scope="module")
def chat_model(trios):
    return trios["mistral"].chat  # float32, with a chat template and stop ids


def test_batched_replies_equal_one_by_one_greedy_generation_in_the_original_order(chat_model):
    conversations = [[{"role": "user", "content": p}] for p in PROMPTS]
    settings = GenerationOptions(max_new_tokens=6)
    packed = HFBackend(chat_model, settings, BackendOptions(batch_tokens=60))
    lengths = [len(packed.prompt_ids(c)) for c in conversations]
    batches = plan_batches(lengths, 6, 60)
    assert 1 < len(batches) < len(PROMPTS) and max(map(len, batches)) > 1  # several batches, some padded
    arrived = []
    replies = packed.generate(conversations, on_reply=lambda i, text, finish: arrived.append((i, text, finish)))
    alone = [packed.generate_finished([packed.prompt_ids(c)])[0] for c in conversations]
    assert replies == [text for text, _ in alone]
    assert len(set(alone)) > 1  # the prompts get different replies, so an order mix-up would show
    assert sorted(arrived) == [(i, text, finish) for i, (text, finish) in enumerate(alone)]  # finishes too
    assert [i for i, _, _ in arrived] != list(range(len(PROMPTS)))  # computed in length order, not given order


def test_cpu_bfloat16_loads_and_generates_in_bfloat16(chat_model):
    import torch

    backend = HFBackend(chat_model, GenerationOptions(max_new_tokens=3), BackendOptions(device="cpu", dtype="bfloat16"))
    assert backend.model.dtype == torch.bfloat16
    assert {p.dtype for p in backend.model.parameters()} == {torch.bfloat16}
    described = backend.describe()
    assert (described["device"], described["dtype"]) == ("cpu", "bfloat16")
    assert described["torch"] == torch.__version__ and "transformers" in described
    assert backend.identity()["dtype"] == "bfloat16"
    assert len(backend.generate([[{"role": "user", "content": "hello"}]])) == 1


def test_threads_are_set_only_when_asked(chat_model):
    import torch

    before = torch.get_num_threads()
    try:
        backend = HFBackend(chat_model, options=BackendOptions(threads=2))
        assert torch.get_num_threads() == 2 and backend.describe()["threads"] == 2
        HFBackend(chat_model)  # the default leaves torch's own setting (all cores, or OMP_NUM_THREADS)
        assert torch.get_num_threads() == 2
    finally:
        torch.set_num_threads(before)


def test_device_and_dtype_resolution_here(trios):
    import torch

    assert resolve_device("auto") == ("cuda" if torch.cuda.is_available() else "cpu")
    assert resolve_device("cpu") == "cpu"
    for bad in ("gpu", "cuda:x", "cpu:1"):
        with pytest.raises(InputError, match="write auto, cpu, cuda, cuda:N or mps"):
            resolve_device(bad)
    if not torch.cuda.is_available():
        with pytest.raises(InputError, match="torch sees no CUDA device"):
            resolve_device("cuda:0")
    llama = trios["llama"].chat  # saved in bfloat16
    assert resolve_dtype("auto", "cpu", llama) == "float32"
    assert resolve_dtype("auto", "cuda", llama) == "bfloat16"
    assert resolve_dtype("auto", "cuda", trios["mistral"].chat) == "float32"
    assert resolve_dtype("float16", "cpu", llama) == "float16"
    with pytest.raises(InputError, match="leave --device at auto"):
        HFBackend(llama, options=BackendOptions(device="cpu", device_map="auto"))


def samples():
    return {
        "one": [Sample("a", "en", prompt="first"), Sample("b", "en", prompt="second")],
        "two": [Sample("c", "en", turns=("hello", "and again", "once more"))],
    }


def echo(conversation):
    return f"{len(conversation)}:{conversation[-1]['content']}"


def test_conversations_share_turns_across_suites_and_keep_their_history():
    calls = []

    def reply(conversation):
        calls.append(len(conversation))
        return echo(conversation)

    replies = converse(ScriptedBackend(reply), samples())
    assert replies == {"one": [["1:first"], ["1:second"]], "two": [["1:hello", "3:and again", "5:once more"]]}
    assert calls == [1, 1, 1, 3, 5]


def test_a_rerun_reuses_every_kept_reply_and_generates_the_rest(tmp_path):
    path = tmp_path / "replies.jsonl"
    context = {"backend": {"model": "m"}, "generation": {"max_new_tokens": 4}}
    first = RepliesCache(path, context)
    converse(ScriptedBackend(echo), samples(), first)
    first.close()
    assert first.generated == 5 and len(path.read_text().splitlines()) == 5
    lines = path.read_text().splitlines()
    path.write_text("\n".join(lines[:3]) + "\n" + lines[3][:20])  # as if killed while writing the 4th
    calls = []
    second = RepliesCache(path, context)
    replies = converse(ScriptedBackend(lambda c: calls.append(c) or echo(c)), samples(), second)
    second.close()
    assert replies == converse(ScriptedBackend(echo), samples())
    assert (second.reused, second.generated, len(calls)) == (3, 2, 2)
    kept = path.read_text().splitlines()
    assert kept[3] == lines[3][:20]  # the torn line was ended, so the next record starts on its own line
    assert [json.loads(line)["turn"] for line in kept[4:]] == [1, 2]
    third = RepliesCache(path, {**context, "generation": {"max_new_tokens": 5}})  # other settings: no reuse
    converse(ScriptedBackend(echo), samples(), third)
    assert (third.reused, third.generated) == (0, 5)


def test_a_changed_earlier_reply_invalidates_the_later_turns(tmp_path):
    """The key hashes the conversation so far: a later turn is reused only after the same history."""
    path = tmp_path / "replies.jsonl"
    cache = RepliesCache(path, {})
    converse(ScriptedBackend(echo), samples(), cache)
    cache.close()
    rows = [json.loads(line) for line in path.read_text().splitlines()]
    rows = [r for r in rows if not (r["id"] == "c" and r["turn"] == 0)]  # turn 0 of the conversation lost
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    again = RepliesCache(path, {})
    converse(ScriptedBackend(lambda c: "different " + echo(c)), samples(), again)
    assert (again.reused, again.generated) == (2, 3)  # its turns 1 and 2 follow a new reply: generated again


def test_generation_is_capped_to_the_models_context_and_said_once(chat_model, tmp_path, caplog):
    import shutil

    small = tmp_path / "small-context"
    shutil.copytree(chat_model, small)
    config = json.loads((small / "config.json").read_text())
    conversations = [[{"role": "user", "content": p}] for p in PROMPTS[:3]]
    probe = HFBackend(chat_model, GenerationOptions(max_new_tokens=4))
    longest = max(len(probe.prompt_ids(c)) for c in conversations)
    (small / "config.json").write_text(json.dumps({**config, "max_position_embeddings": longest + 5}))
    backend = HFBackend(small, GenerationOptions(max_new_tokens=200), BackendOptions(batch_tokens=10**6))
    asked = []
    generate = backend.model.generate
    backend.model.generate = lambda **kw: (
        asked.append((kw["input_ids"].shape[1], kw["max_new_tokens"])) or generate(**kw)
    )
    with caplog.at_level("WARNING"):
        backend.generate(conversations)
        backend.generate(conversations[:1])
    assert asked == [(longest, 5), (len(probe.prompt_ids(conversations[0])), longest + 5 - asked[1][0])]
    assert all(prompt + new <= longest + 5 for prompt, new in asked)
    assert len([r for r in caplog.records if "is capped" in r.getMessage()]) == 1


def test_a_device_this_machine_lacks_is_refused_before_out_is_made(chat_model, monkeypatch, capsys, tmp_path):
    from helpers import run_cli

    out = tmp_path / "out"
    code, output = run_cli(monkeypatch, capsys, "eval", chat_model, "--device", "cuda:99", "-o", out)
    assert code == 2 and "--device cuda:99" in output, output
    assert not out.exists()


def test_a_two_argument_reply_callback_still_works(chat_model):
    """Backends call on_reply(index, text, finish) since they report why a reply ended; a caller's
    callback written for (index, text) keeps working, on every backend kind."""
    conversations = [[{"role": "user", "content": p}] for p in PROMPTS[:3]]
    hf = HFBackend(chat_model, GenerationOptions(max_new_tokens=4), BackendOptions())
    scripted = ScriptedBackend(lambda c: (c[-1]["content"].upper(), "stop"))
    for backend in (hf, scripted):
        pairs: list = []
        triples: list = []
        replies = backend.generate(conversations, on_reply=lambda i, text: pairs.append((i, text)))  # noqa: B023
        backend.generate(conversations, on_reply=lambda i, text, finish: triples.append((i, text, finish)))  # noqa: B023
        assert sorted(pairs) == list(enumerate(replies))
        assert [(i, t) for i, t, _ in sorted(triples)] == sorted(pairs) and all(f for _, _, f in triples)
