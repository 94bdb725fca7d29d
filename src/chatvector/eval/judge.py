"""An LLM judge through any OpenAI-compatible endpoint, grading replies 1–10.

In the spirit of the paper's Vicuna evaluation: the judge sees the question, the reference
answer when there is one, and the reply, and must end with ``Rating: [[N]]``. Scores are parsed
robustly (``[[7]]``, ``Rating: 7``, ``7/10``, ``Score: 7.5``); a judgment with no parseable score is
counted and reported, never silently dropped.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from chatvector.eval.backends import OpenAIBackend

JUDGE_PROMPT = (
    "You are an impartial judge. Rate the assistant's answer to the user's question for "
    "helpfulness, correctness, relevance and level of detail, and whether it is written in {language}. "
    "{reference}Give a short explanation, then the rating on a scale of 1 to 10 in the form "
    '"Rating: [[N]]".\n\n[Question]\n{question}\n\n[Answer]\n{answer}'
)
_PATTERNS = [
    re.compile(r"\[\[\s*(\d+(?:\.\d+)?)\s*\]\]"),
    re.compile(r"(?:rating|score|評分|分數|점수)\s*[:：]?\s*(\d+(?:\.\d+)?)", re.IGNORECASE),
    re.compile(r"(\d+(?:\.\d+)?)\s*/\s*10\b"),
]


def parse_score(judgment: str) -> float | None:
    """The 1–10 score in a judgment, or None when there is none (or it is out of range)."""
    for pattern in _PATTERNS:
        found = pattern.findall(judgment)
        if found:
            value = float(found[-1])
            return value if 1 <= value <= 10 else None
    return None


@dataclass
class Judgment:
    score: float | None
    text: str


class Judge:
    """Grades (question, reference, answer) triples with a chat model behind an endpoint."""

    def __init__(self, backend: OpenAIBackend) -> None:
        self.backend = backend

    def describe(self) -> dict[str, object]:
        return {"judge": self.backend.describe()}

    def grade(
        self, questions: list[str], answers: list[str], references: list[str | None], language: str
    ) -> list[Judgment]:
        prompts = [
            [
                {
                    "role": "user",
                    "content": JUDGE_PROMPT.format(
                        language=language,
                        question=q,
                        answer=a or "(empty)",
                        reference=f"Compare with the reference answer: {r}\n" if r else "",
                    ),
                }
            ]
            for q, a, r in zip(questions, answers, references, strict=True)
        ]
        texts = self.backend.generate(prompts)
        return [Judgment(parse_score(t), t) for t in texts]
