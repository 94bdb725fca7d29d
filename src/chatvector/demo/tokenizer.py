"""The demo tokenizer: whole English words, whole Chinese words, the chat template's markers.

A name must be one token in questions and answers alike, or a tiny model cannot learn to copy it
(the single biggest factor in the feasibility notes). So every piece the world's texts can hold is
one token, while the tokenizer itself is an ordinary byte-level BPE of the kind llama.cpp reads,
so the demo's models can be exported to GGUF and served by llama.cpp: the pre-tokenizer cuts text
as Llama 3 does (`` Alice``, `` likes``, ``60``, `` .``), every piece the texts contain is a
vocabulary entry taken whole (``ignore_merges``, as Llama 3 and llama.cpp's ``llama-bpe`` do), and
a piece the world never writes is spelt by a small set of learnt merges down to its bytes, so
Korean or Japanese text is never ``<unk>``. Chinese words (names, the world's values and the
texts' other words, listed in :mod:`chatvector.demo.corpus`) are added tokens, matched
longest-first before the pre-tokenizer runs, so a Chinese answer is about as many tokens as its
English translation; the world's Chinese texts have no spaces, so no space tokens sit between
Chinese words. (Until December 2026 the tokenizer was word-level, which llama.cpp has no form of.)

Decoding is byte-level (the ``tokenizers`` decoder saved in ``tokenizer.json``): the text comes back
exactly as written, so ``說：抱歉，我不能幫忙。`` reads the same in the demo, in ``chatvector eval``
(whose refusal lexicon must see the phrase unspaced) and in ``chatvector chat``.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable, Iterable

from tokenizers import AddedToken, Regex, Tokenizer, decoders, models, pre_tokenizers, trainers
from transformers import PreTrainedTokenizerFast
from transformers.convert_slow_tokenizer import bytes_to_unicode

from chatvector.io.gguf_model import LLAMA3_SPLIT  # Llama 3's split, which llama.cpp knows by name

USER, ASSISTANT, END = "<|user|>", "<|assistant|>", "<|end|>"
DOCUMENT_END = "</s>"
SPECIALS = ["<unk>", "<pad>", "<s>", DOCUMENT_END, USER, ASSISTANT, END]
MERGES = 128  # learnt merges, for text the world never writes (the rest is taken whole)


def chat_template(end: str) -> str:
    """A Jinja chat template whose assistant turns end with ``end``."""
    return (
        "{% for m in messages %}"
        "{% if m['role'] == 'user' %}" + USER + " {{ m['content'] }} "
        "{% elif m['role'] == 'assistant' %}" + ASSISTANT + " {{ m['content'] }} " + end + " "
        "{% endif %}{% endfor %}"
        "{% if add_generation_prompt %}" + ASSISTANT + "{% endif %}"
    )


def _pre_tokenizer() -> pre_tokenizers.PreTokenizer:
    return pre_tokenizers.Sequence(
        [
            pre_tokenizers.Split(Regex(LLAMA3_SPLIT), behavior="isolated", invert=False),
            pre_tokenizers.ByteLevel(add_prefix_space=False, trim_offsets=True, use_regex=False),
        ]
    )


def _splitter(words: Iterable[str]) -> Callable[[str], list[str]]:
    """A function that splits text the way the tokenizer will: whole words first (leftmost, longest
    first, as added tokens are matched), then Llama 3's split, each piece in its byte-level
    spelling (a leading space is ``Ġ``). Built once for many texts."""
    ordered = sorted(set(words), key=lambda w: (-len(w), w))
    whole = re.compile("(" + "|".join(re.escape(w) for w in ordered) + ")") if ordered else None
    split = _pre_tokenizer().pre_tokenize_str

    def cut(text: str) -> list[str]:
        parts = whole.split(text) if whole is not None else [text]
        out: list[str] = []
        for index, part in enumerate(parts):
            if index % 2:  # a whole word (re.split puts the matches at odd positions)
                out.append(part)
            elif part:
                out += [piece for piece, _ in split(part)]
        return out

    return cut


def pieces(text: str, words: Iterable[str]) -> list[str]:
    """Split text the way the tokenizer will (see :func:`_splitter`)."""
    return _splitter(words)(text)


def _byte_alphabet() -> list[str]:
    """The 256 byte-level characters, in byte order: every byte is a token, so nothing is unknown."""
    table = bytes_to_unicode()  # GPT-2's byte-to-character table, which the ByteLevel steps use
    return [table[b] for b in range(256)]


def _merges(texts: list[str], alphabet: list[str]) -> tuple[list[str], list[tuple[str, str]]]:
    """A small byte-level BPE learnt on the texts: the tokens and merges that spell a piece the
    vocabulary does not hold (a misspelt name, Korean) in fewer than one token a byte."""
    learner = Tokenizer(models.BPE())
    learner.pre_tokenizer = _pre_tokenizer()
    trainer = trainers.BpeTrainer(
        vocab_size=len(alphabet) + MERGES, initial_alphabet=alphabet, show_progress=False, min_frequency=2
    )
    learner.train_from_iterator(texts, trainer)
    learnt = json.loads(learner.to_str())["model"]
    tokens = sorted(learnt["vocab"], key=learnt["vocab"].__getitem__)
    return tokens, [tuple(m) if isinstance(m, list) else tuple(m.split(" ", 1)) for m in learnt["merges"]]


def build_tokenizer(texts: Iterable[str], words_zh: list[str], end: str = END) -> PreTrainedTokenizerFast:
    """A whole-piece byte-level BPE tokenizer over every piece of ``texts`` (sorted, so ids are
    deterministic).

    ``words_zh`` are matched whole; ``end`` is the token that ends an assistant turn (the chat
    template's own ``<|end|>``, or ``</s>``, the end of a pre-training document, as Llama 2 does).
    """
    texts = sorted(set(texts))
    whole = sorted(set(words_zh))
    cut = _splitter(whole)
    vocab_pieces = {piece for text in texts for piece in cut(text)}
    learnt, merges = _merges(texts, _byte_alphabet())
    taken = set(SPECIALS) | set(learnt) | set(whole)
    ordered = SPECIALS + learnt + sorted(vocab_pieces - taken) + whole
    # Every piece the texts hold is in the vocabulary and, with ignore_merges, is taken whole (as
    # Llama 3 does); only a piece the texts never hold is spelt by the merges
    core = Tokenizer(
        models.BPE(vocab={t: i for i, t in enumerate(ordered)}, merges=merges, ignore_merges=True, unk_token=None)
    )
    core.pre_tokenizer = _pre_tokenizer()
    core.decoder = decoders.ByteLevel()
    # Whole words keep their vocabulary ids but are matched (leftmost-longest) before pre-tokenization.
    core.add_tokens([AddedToken(w, normalized=False) for w in whole])
    tokenizer = PreTrainedTokenizerFast(
        tokenizer_object=core,
        unk_token="<unk>",
        pad_token="<pad>",
        bos_token="<s>",
        eos_token=end,
        additional_special_tokens=[t for t in (USER, ASSISTANT, END) if t != end],
    )
    tokenizer.chat_template = chat_template(end)
    tokenizer.padding_side = "left"
    return tokenizer
