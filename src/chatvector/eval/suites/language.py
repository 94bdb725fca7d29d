"""Language metrics: over every reply of every suite, the share in the target language and script,
the drift into English, and the replies with no prose (left out of the shares).

They are not a suite (they have no data of their own); the evaluation computes them over the
records of all the suites that ran.
"""

from __future__ import annotations

from chatvector.eval.language import normalise_language
from chatvector.eval.metrics import MetricSpec

__all__ = ["language_metrics"]


def language_metrics(lang: str) -> tuple[MetricSpec, ...]:
    """Metrics over every reply of every suite; replies with no prose are left out of the shares."""
    specs = [
        MetricSpec(
            "language.target_share",
            "rate",
            True,
            lambda r: [float(x) for x in r.get("in_target", []) if x is not None],
            "replies with prose, in the target language and script",
        ),
        MetricSpec(
            "language.no_prose_share",
            "rate",
            False,
            lambda r: [float(x is None) for x in r.get("in_target", [])],
            "replies with no prose (numbers, code, bare JSON), left out of the other shares; when it is "
            "high, the language shares rest on few replies",
        ),
    ]
    if normalise_language(lang) != "en":
        specs.insert(
            1,
            MetricSpec(
                "language.english_share",
                "rate",
                False,
                lambda r: [float(g == "en") for g in r.get("reply_languages", []) if g != "none"],
                "replies with prose, in English (drift)",
            ),
        )
    return tuple(specs)
