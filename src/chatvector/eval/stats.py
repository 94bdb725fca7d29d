"""Error bars and significance: Wilson intervals, bootstrap intervals, exact and permutation tests, Holm.

Every number an evaluation reports comes with its sample size and a 95% interval, so that "3 of 6"
reads as what it is (0.19 to 0.81), not as 0.5:

- a **rate** (successes out of n) gets the Wilson score interval, which stays inside [0, 1] and
  is sound for small n and for rates near 0 or 1, where the textbook ``p ± 1.96·√(p(1−p)/n)``
  fails;
- a **mean** (judge scores, toxicity) gets a percentile bootstrap interval, resampled with a
  seed, so the same results give the same interval;
- a **difference** between two runs on the same prompts gets a paired test, so prompt difficulty
  cancels, and a paired bootstrap interval (prompts resampled together in both runs):

  - one pass/fail value per prompt: the **exact McNemar test**, i.e. the two-sided sign test on the
    discordant prompts (passed in one run, failed in the other), always exact at any n: a
    bootstrap p-value is far too small when few prompts differ (4 of 16 flipped: 0.03 against the
    exact 0.125);
  - anything else (scores, several rules per prompt): a **paired permutation test**, swapping each
    prompt's two runs: every arrangement enumerated (exact) when at most
    :data:`EXACT_PERMUTATION_LIMIT` prompts differ, else :data:`RESAMPLES` random arrangements
    and ``p = (1 + hits) / (1 + resamples)``, never below ``1 / (resamples + 1)``;

- **many tests at once** (several metrics, several ratios) get Holm's step-down adjustment,
  which keeps the chance of any false "significant" at alpha.

Units may be grouped in clusters (a prompt with several rules, a conversation with several
replies): the paired bootstrap resamples whole clusters, and a statistic is the ratio of summed
values to summed counts, so a cluster of three rules weighs three units, as in the rate itself.

Only numpy and the standard library are used (the tests compare with scipy and statsmodels).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

__all__ = [
    "Z_95",
    "RESAMPLES",
    "EXACT_PERMUTATION_LIMIT",
    "wilson",
    "bootstrap_mean",
    "sign_test",
    "paired",
    "holm",
    "PairedDifference",
]

Z_95 = 1.959963984540054  # the standard normal's 97.5% quantile
RESAMPLES = 2000  # bootstrap resamples: the interval's ends move by about 0.01·sd between seeds
EXACT_PERMUTATION_LIMIT = 16  # prompts that differ: up to 2**16 arrangements are enumerated


def wilson(successes: int, n: int, z: float = Z_95) -> tuple[float, float]:
    """The Wilson score interval of ``successes`` out of ``n`` (95% by default); NaNs when n is 0.

    Example:
        >>> [round(x, 3) for x in wilson(3, 6)]
        [0.188, 0.812]
    """
    if n <= 0:
        return math.nan, math.nan
    if not 0 <= successes <= n:
        raise ValueError(f"successes must lie in [0, n]: got {successes} of {n}")
    p = successes / n
    denominator = 1 + z * z / n
    centre = (p + z * z / (2 * n)) / denominator
    half = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / denominator
    low = 0.0 if successes == 0 else max(0.0, centre - half)
    high = 1.0 if successes == n else min(1.0, centre + half)
    return low, high


def _rng(seed: int) -> np.random.Generator:
    return np.random.default_rng(np.random.SeedSequence(seed))


def bootstrap_mean(
    values: Sequence[float], seed: int = 0, resamples: int = RESAMPLES, level: float = 0.95
) -> tuple[float, float]:
    """A percentile bootstrap interval of the mean of ``values``; NaNs when there are none.

    The same ``values`` and ``seed`` always give the same interval.
    """
    data = np.asarray(values, dtype=np.float64)
    if data.size == 0:
        return math.nan, math.nan
    if data.size == 1 or np.all(data == data[0]):
        return float(data[0]), float(data[0])
    picks = _rng(seed).integers(0, data.size, size=(resamples, data.size))
    means = data[picks].mean(axis=1)
    tail = (1 - level) / 2
    low, high = np.quantile(means, [tail, 1 - tail])
    return float(low), float(high)


@dataclass(frozen=True)
class PairedDifference:
    """``b − a`` over paired clusters: the observed difference, its 95% bootstrap interval, the
    p-value of the paired test named in ``test``, and n."""

    a: float
    b: float
    difference: float
    ci_low: float
    ci_high: float
    p_value: float
    n: int  # paired clusters (prompts)
    test: str = ""  # how p_value was computed, as a reader should see it

    def significant(self, alpha: float = 0.05) -> bool:
        """Whether the difference is significant at level ``alpha`` (two-sided, this test alone)."""
        return self.p_value < alpha


def sign_test(successes: int, n: int) -> float:
    """The two-sided exact binomial p-value of ``successes`` out of ``n`` at probability 1/2.

    With ``n`` the discordant pairs and ``successes`` those that improved, this is the exact
    McNemar test. Integer arithmetic: exact at any n.

    Example:
        >>> sign_test(4, 4), sign_test(5, 5)
        (0.125, 0.0625)
    """
    if not 0 <= successes <= n:
        raise ValueError(f"successes must lie in [0, n]: got {successes} of {n}")
    tail = min(successes, n - successes)
    extreme = sum(math.comb(n, i) for i in range(tail + 1))
    return min(1.0, 2 * extreme / 2**n)


def _ratio(sums: np.ndarray, counts: np.ndarray) -> np.ndarray:
    with np.errstate(invalid="ignore", divide="ignore"):
        return sums.sum(axis=-1) / counts.sum(axis=-1)


def _is_binary(*columns: np.ndarray) -> bool:
    sums_a, sums_b, counts_a, counts_b = columns
    return bool(
        np.all(counts_a == 1)
        and np.all(counts_b == 1)
        and np.isin(sums_a, (0, 1)).all()
        and np.isin(sums_b, (0, 1)).all()
    )


def _mcnemar(sa: np.ndarray, sb: np.ndarray) -> tuple[float, str]:
    improved, worsened = int(np.sum((sa == 0) & (sb == 1))), int(np.sum((sa == 1) & (sb == 0)))
    discordant = improved + worsened
    return sign_test(improved, discordant), f"exact McNemar ({discordant} discordant pairs)"


def _swap_masks(differing: int, seed: int, resamples: int) -> tuple[np.ndarray, bool]:
    """Which prompts swap their two runs: every arrangement when few differ, else random ones."""
    if differing <= EXACT_PERMUTATION_LIMIT:
        codes = np.arange(2**differing, dtype=np.int64)[:, None]
        return ((codes >> np.arange(differing)) & 1).astype(np.float64), True
    return _rng(seed).integers(0, 2, size=(resamples, differing)).astype(np.float64), False


def _permutation(
    sa: np.ndarray, sb: np.ndarray, ca: np.ndarray, cb: np.ndarray, observed: float, seed: int, resamples: int
) -> tuple[float, str]:
    """Paired permutation test of Σb/Σcb − Σa/Σca: under the null hypothesis each prompt's two runs
    are exchangeable, so swapping them gives the statistic's null distribution (symmetric about 0)."""
    differs = (sa != sb) | (ca != cb)
    m = int(differs.sum())
    if m == 0 or observed == 0:
        return 1.0, "paired permutation (exact)"
    masks, exact = _swap_masks(m, seed, resamples)
    moved_sums, moved_counts = masks @ (sb - sa)[differs], masks @ (cb - ca)[differs]
    with np.errstate(invalid="ignore", divide="ignore"):
        statistic = (sb.sum() - moved_sums) / (cb.sum() - moved_counts) - (sa.sum() + moved_sums) / (
            ca.sum() + moved_counts
        )
    hits = int(np.count_nonzero(np.abs(statistic) >= abs(observed) * (1 - 1e-9)))
    if exact:
        return hits / masks.shape[0], f"paired permutation (exact, {m} prompts differ)"
    p = (1 + hits) / (1 + resamples)
    return p, f"paired permutation ({resamples} random arrangements; p >= 1/{resamples + 1})"


def paired(
    a_sums: Sequence[float],
    b_sums: Sequence[float],
    a_counts: Sequence[float] | None = None,
    b_counts: Sequence[float] | None = None,
    *,
    seed: int = 0,
    resamples: int = RESAMPLES,
) -> PairedDifference:
    """The paired difference ``b − a`` where cluster i holds ``a_sums[i]`` over ``a_counts[i]``
    units in run a and likewise in run b (counts default to 1: one value per prompt).

    The statistic of a run is Σ sums / Σ counts. The p-value comes from the exact McNemar test
    when every cluster is one pass/fail value, else from the paired permutation test (see the
    module docstring); the 95% interval is a paired percentile bootstrap with ``seed``.

    Example:
        >>> paired([0] * 16, [1] * 4 + [0] * 12).p_value
        0.125
    """
    sa, sb = np.asarray(a_sums, dtype=np.float64), np.asarray(b_sums, dtype=np.float64)
    ca = np.ones_like(sa) if a_counts is None else np.asarray(a_counts, dtype=np.float64)
    cb = np.ones_like(sb) if b_counts is None else np.asarray(b_counts, dtype=np.float64)
    if not sa.shape == sb.shape == ca.shape == cb.shape or sa.ndim != 1:
        raise ValueError("paired needs four sequences of the same length")
    n = sa.size
    if n == 0 or ca.sum() == 0 or cb.sum() == 0:
        return PairedDifference(math.nan, math.nan, math.nan, math.nan, math.nan, math.nan, n)
    a, b = float(_ratio(sa, ca)), float(_ratio(sb, cb))
    observed = b - a
    if _is_binary(sa, sb, ca, cb):
        p_value, test = _mcnemar(sa, sb)
    else:
        p_value, test = _permutation(sa, sb, ca, cb, observed, seed, resamples)
    picks = _rng(seed).integers(0, n, size=(resamples, n))
    differences = _ratio(sb[picks], cb[picks]) - _ratio(sa[picks], ca[picks])
    low, high = np.quantile(differences[np.isfinite(differences)], [0.025, 0.975])
    return PairedDifference(a, b, observed, float(low), float(high), float(min(1.0, p_value)), n, test)


def holm(p_values: Sequence[float]) -> list[float]:
    """Holm's step-down adjustment of a family of p-values (NaNs stay NaN and do not count).

    The i-th smallest of m p-values becomes ``max over j <= i of min(1, (m − j + 1)·p_(j))``; an
    adjusted p below alpha keeps the family-wise error rate at alpha.

    Example:
        >>> holm([0.01, 0.04, 0.03])
        [0.03, 0.06, 0.06]
    """
    finite = sorted((p, i) for i, p in enumerate(p_values) if not math.isnan(p))
    adjusted = [math.nan] * len(p_values)
    running = 0.0
    for rank, (p, index) in enumerate(finite):
        running = max(running, min(1.0, (len(finite) - rank) * p))
        adjusted[index] = running
    return adjusted
