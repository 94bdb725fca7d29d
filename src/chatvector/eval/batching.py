"""Batches packed by a token budget, for local generation.

:func:`plan_batches` sorts prompts by length (longest first, so a batch that does not fit in
memory fails at once) and fills each batch while ``rows × (longest prompt + max_new_tokens)``
stays within the budget; the caller puts replies back in their original order.
"""

from __future__ import annotations

from collections.abc import Sequence

__all__ = ["plan_batches"]


def plan_batches(
    lengths: Sequence[int], max_new_tokens: int, budget: int, max_rows: int | None = None
) -> list[list[int]]:
    """Indices of ``lengths`` grouped into batches, longest prompts first.

    A batch holds as many prompts as fit ``rows × (longest + max_new_tokens) <= budget`` and, when
    given, ``rows <= max_rows``; a prompt that alone exceeds the budget still gets a batch of its own
    (it cannot be split).

    Example:
        >>> plan_batches([3, 10, 4, 9], max_new_tokens=2, budget=24)
        [[1, 3], [2, 0]]
        >>> plan_batches([3, 10, 4, 9], max_new_tokens=2, budget=100, max_rows=3)
        [[1, 3, 2], [0]]
    """
    order = sorted(range(len(lengths)), key=lambda i: (-lengths[i], i))
    batches: list[list[int]] = []
    for index in order:
        if batches:
            current = batches[-1]
            width = lengths[current[0]] + max_new_tokens  # the first is the longest
            if (len(current) + 1) * width <= budget and (max_rows is None or len(current) < max_rows):
                current.append(index)
                continue
        batches.append([index])
    return batches
