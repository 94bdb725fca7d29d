"""The demo tokenizer: whole English words, single Chinese characters, whole names.

A name must be one token in questions and answers alike, or a tiny model cannot learn to copy it
(the single biggest factor in the feasibility notes). Chinese names are added tokens, matched
before the pre-tokenizer splits the rest into single characters.
"""

from __future__ import annotations

import re
from collections.abc import Iterable

from tokenizers import AddedToken, Regex, Tokenizer, models, pre_tokenizers
from transformers import PreTrainedTokenizerFast

USER, ASSISTANT, END = "<|user|>", "<|assistant|>", "<|end|>"
SPECIALS = ["<unk>", "<pad>", "<s>", "</s>", USER, ASSISTANT, END]
CHAT_TEMPLATE = (
    "{% for m in messages %}"
    "{% if m['role'] == 'user' %}" + USER + " {{ m['content'] }} "
    "{% elif m['role'] == 'assistant' %}" + ASSISTANT + " {{ m['content'] }} " + END + " "
    "{% endif %}{% endfor %}"
    "{% if add_generation_prompt %}" + ASSISTANT + "{% endif %}"
)
CJK = "\u3000-\u303f\u4e00-\u9fff\uff00-\uffef"
_PIECES = re.compile(rf"[{CJK}]|[A-Za-z0-9']+|[^\s{CJK}A-Za-z0-9']")


def pieces(text: str, names: list[str]) -> list[str]:
    """Split text the way the tokenizer will (names first, then characters and words)."""
    pattern = "|".join(re.escape(n) for n in sorted(names, key=len, reverse=True))
    out: list[str] = []
    for part in re.split(f"({pattern})", text) if pattern else [text]:
        if part in names:
            out.append(part)
        elif part:
            out += _PIECES.findall(part)
    return out


def build_tokenizer(texts: Iterable[str], names_zh: list[str]) -> PreTrainedTokenizerFast:
    """A word-level tokenizer over every piece of ``texts`` (sorted, so ids are deterministic)."""
    vocab_pieces = set()
    for text in texts:
        vocab_pieces.update(pieces(text, names_zh))
    vocab_pieces -= set(names_zh)
    ordered = SPECIALS + sorted(vocab_pieces) + sorted(names_zh)
    core = Tokenizer(models.WordLevel(vocab={t: i for i, t in enumerate(ordered)}, unk_token="<unk>"))
    core.pre_tokenizer = pre_tokenizers.Sequence(
        [
            pre_tokenizers.Split(Regex(f"[{CJK}]"), behavior="isolated"),
            pre_tokenizers.Whitespace(),
        ]
    )
    # Names keep their vocabulary ids but are matched whole, before pre-tokenization.
    core.add_tokens([AddedToken(n, normalized=False) for n in sorted(names_zh)])
    tokenizer = PreTrainedTokenizerFast(
        tokenizer_object=core,
        unk_token="<unk>",
        pad_token="<pad>",
        bos_token="<s>",
        eos_token=END,
        additional_special_tokens=[USER, ASSISTANT],
    )
    tokenizer.chat_template = CHAT_TEMPLATE
    tokenizer.padding_side = "left"
    return tokenizer


def detokenize(text: str) -> str:
    """Undo the word-level decoder's spaces between Chinese characters."""
    text = re.sub(rf"(?<=[{CJK}]) (?=[{CJK}])", "", text)
    text = re.sub(rf" (?=[{CJK}])|(?<=[{CJK}]) ", "", text)
    return text.strip()
