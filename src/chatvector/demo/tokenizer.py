"""The demo tokenizer: whole English words, whole Chinese words, the chat template's markers.

A name must be one token in questions and answers alike, or a tiny model cannot learn to copy it
(the single biggest factor in the feasibility notes). Chinese words (names, the world's values and
the texts' other words, listed in :mod:`chatvector.demo.corpus`) are added tokens, matched
longest-first before the pre-tokenizer splits anything else into single characters, so a Chinese
answer is about as many tokens as its English translation.

Decoding is the tokenizer's own (its ``tokenizers`` decoder, saved in ``tokenizer.json``): words
are joined by spaces, except next to a Chinese character, so ``說：抱歉，我不能幫忙。`` reads the
same in the demo, in ``chatvector eval`` (whose refusal lexicon must see the phrase unspaced) and
in ``chatvector chat``.
"""

from __future__ import annotations

import re
from collections.abc import Iterable

from tokenizers import AddedToken, Regex, Tokenizer, decoders, models, pre_tokenizers
from transformers import PreTrainedTokenizerFast

USER, ASSISTANT, END = "<|user|>", "<|assistant|>", "<|end|>"
DOCUMENT_END = "</s>"
SPECIALS = ["<unk>", "<pad>", "<s>", DOCUMENT_END, USER, ASSISTANT, END]
CJK = "\u3000-\u303f\u4e00-\u9fff\uff00-\uffef"
_PIECES = re.compile(rf"[{CJK}]|[A-Za-z0-9']+|[^\s{CJK}A-Za-z0-9']")


def chat_template(end: str) -> str:
    """A Jinja chat template whose assistant turns end with ``end``."""
    return (
        "{% for m in messages %}"
        "{% if m['role'] == 'user' %}" + USER + " {{ m['content'] }} "
        "{% elif m['role'] == 'assistant' %}" + ASSISTANT + " {{ m['content'] }} " + end + " "
        "{% endif %}{% endfor %}"
        "{% if add_generation_prompt %}" + ASSISTANT + "{% endif %}"
    )


def pieces(text: str, words: Iterable[str]) -> list[str]:
    """Split text the way the tokenizer will (whole words first, longest first, then the rest)."""
    ordered = sorted(set(words), key=lambda w: (-len(w), w))
    if not ordered:
        return _PIECES.findall(text)
    pattern = re.compile("(" + "|".join(re.escape(w) for w in ordered) + ")")
    out: list[str] = []
    for index, part in enumerate(pattern.split(text)):
        if index % 2:
            out.append(part)
        elif part:
            out += _PIECES.findall(part)
    return out


def build_tokenizer(texts: Iterable[str], words_zh: list[str], end: str = END) -> PreTrainedTokenizerFast:
    """A word-level tokenizer over every piece of ``texts`` (sorted, so ids are deterministic).

    ``words_zh`` are matched whole; ``end`` is the token that ends an assistant turn (the chat
    template's own ``<|end|>``, or ``</s>``, the end of a pre-training document, as Llama 2 does).
    """
    vocab_pieces = set()
    for text in texts:
        vocab_pieces.update(pieces(text, words_zh))
    whole = sorted(set(words_zh))
    ordered = SPECIALS + sorted(vocab_pieces - set(whole) - set(SPECIALS)) + whole
    core = Tokenizer(models.WordLevel(vocab={t: i for i, t in enumerate(ordered)}, unk_token="<unk>"))
    core.pre_tokenizer = pre_tokenizers.Sequence(
        [
            pre_tokenizers.Split(Regex(f"[{CJK}]"), behavior="isolated"),
            pre_tokenizers.Whitespace(),
        ]
    )
    core.decoder = decoder()
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


def decoder() -> decoders.Decoder:
    """Words joined by a space, but no space beside a Chinese character.

    A word-level model has no decoder of its own (the library then joins tokens with spaces). The
    WordPiece decoder with a prefix no token has joins them the same way; the rest of the chain
    works on the joined text, so it sees each space with its neighbours.
    """
    return decoders.Sequence(
        [
            decoders.WordPiece(prefix="##", cleanup=False),  # no token starts with "##": a space between each
            decoders.Fuse(),  # one string, so the next step sees both sides of each space
            decoders.Replace(Regex(rf" (?=[{CJK}])|(?<=[{CJK}]) "), ""),
        ]
    )
