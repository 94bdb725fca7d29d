"""``--sparsify``: the older spelling of ``--method`` for TIES and DARE (same results).

The methods themselves live in :mod:`chatvector.merge.methods` (``ties.py``, ``dare.py``).
"""

from __future__ import annotations

from chatvector.merge.methods import MergeMethod, parse_method

__all__ = ["parse_sparsify", "SPARSIFY_METHODS"]

SPARSIFY_METHODS = ("ties", "dare")


def parse_sparsify(text: str) -> MergeMethod:
    """Parse ``ties:density=0.2`` or ``dare:density=0.3,seed=7``.

    Raises:
        ValueError: naming what is wrong and showing the expected form.
    """
    if text.strip().lower().partition(":")[0].strip() not in SPARSIFY_METHODS:
        raise ValueError(
            f"{text!r} is not a sparsification; write ties:density=0.2 or dare:density=0.3,seed=0 "
            "(--method selects the other merge methods)"
        )
    return parse_method(text)
