"""Error bars and significance: Wilson intervals, seeded bootstrap intervals, paired bootstrap tests.

Every number an evaluation reports comes with its sample size and a 95% interval, so that "3 of 6"
reads as what it is (0.19 to 0.81), not as 0.5:

- a **rate** (successes out of n) gets the Wilson score interval, which stays inside [0, 1] and
  is sound for small n and for rates near 0 or 1, where the textbook ``p ± 1.96·√(p(1−p)/n)``
  fails;
- a **mean** (judge scores, toxicity) gets a percentile bootstrap interval, resampled with a
  seed, so the same results give the same interval;
- a **difference** between two runs on the same prompts gets a paired bootstrap: prompts are
  resampled together in both runs, so prompt difficulty cancels, and the p-value is the share of
  resampled differences, re-centred on zero, at least as far from zero as the observed one.

Units may be grouped in clusters (a prompt with several rules, a conversation with several
replies): the paired bootstrap resamples whole clusters, and a statistic is the ratio of summed
values to summed counts, so a cluster of three rules weighs three units, as in the rate itself.

Only numpy is used.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

__all__ = ["Z_95", "RESAMPLES", "wilson", "bootstrap_mean", "paired_bootstrap", "PairedDifference"]

Z_95 = 1.959963984540054  # the standard normal's 97.5% quantile
RESAMPLES = 2000  # bootstrap resamples: the interval's ends move by about 0.01·sd between seeds


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
    """``b − a`` over paired clusters: the observed difference, its 95% interval and a p-value."""

    a: float
    b: float
    difference: float
    ci_low: float
    ci_high: float
    p_value: float
    n: int  # paired clusters (prompts)

    def significant(self, alpha: float = 0.05) -> bool:
        """Whether the difference is significant at level ``alpha`` (two-sided)."""
        return self.p_value < alpha


def _ratio(sums: np.ndarray, counts: np.ndarray) -> np.ndarray:
    with np.errstate(invalid="ignore", divide="ignore"):
        return sums.sum(axis=-1) / counts.sum(axis=-1)


def paired_bootstrap(
    a_sums: Sequence[float],
    b_sums: Sequence[float],
    a_counts: Sequence[float] | None = None,
    b_counts: Sequence[float] | None = None,
    *,
    seed: int = 0,
    resamples: int = RESAMPLES,
) -> PairedDifference:
    """Paired bootstrap of ``b − a`` where cluster i holds ``a_sums[i]`` over ``a_counts[i]`` units
    in run a and likewise in run b (counts default to 1: one value per prompt).

    The statistic of a run is Σ sums / Σ counts over the (resampled) clusters. The two-sided
    p-value is ``(1 + #{|d* − d| ≥ |d|}) / (1 + resamples)``: the bootstrap distribution of the
    difference, shifted to have mean zero under the null hypothesis, compared with the observed d.
    """
    sa, sb = np.asarray(a_sums, dtype=np.float64), np.asarray(b_sums, dtype=np.float64)
    ca = np.ones_like(sa) if a_counts is None else np.asarray(a_counts, dtype=np.float64)
    cb = np.ones_like(sb) if b_counts is None else np.asarray(b_counts, dtype=np.float64)
    if not sa.shape == sb.shape == ca.shape == cb.shape or sa.ndim != 1:
        raise ValueError("paired_bootstrap needs four sequences of the same length")
    n = sa.size
    if n == 0 or ca.sum() == 0 or cb.sum() == 0:
        return PairedDifference(math.nan, math.nan, math.nan, math.nan, math.nan, math.nan, n)
    a, b = float(_ratio(sa, ca)), float(_ratio(sb, cb))
    observed = b - a
    picks = _rng(seed).integers(0, n, size=(resamples, n))
    differences = _ratio(sb[picks], cb[picks]) - _ratio(sa[picks], ca[picks])
    differences = differences[np.isfinite(differences)]
    low, high = np.quantile(differences, [0.025, 0.975])
    extreme = np.count_nonzero(np.abs(differences - observed) >= abs(observed) - 1e-12)
    p_value = 1.0 if observed == 0 else (1 + extreme) / (1 + differences.size)
    return PairedDifference(a, b, observed, float(low), float(high), float(min(1.0, p_value)), n)
