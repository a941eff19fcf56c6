"""Statistics over seeds (one seed is not evidence): a t-interval per run, and a paired test
between two runs (the seed is the pairing unit: same seed, same test split)."""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
from scipy import stats

#: Differences closer than this are floating-point noise (scores are fractions in [0, 1]).
_TIE = 1e-12


@dataclass(frozen=True)
class SeedSummary:
    """Mean over seeds with its two-sided t-interval (NaN interval when n < 2)."""

    n: int
    mean: float
    std: float
    ci_low: float
    ci_high: float


@dataclass(frozen=True)
class PairedTest:
    """Mean of (a - b) over paired seeds, its t-interval and the paired t-test's p-value.

    NaN interval and p-value when n < 2 (nothing to test); p = 1.0 when every paired
    difference is identical to zero (the runs are indistinguishable), and 0.0 when the
    differences are identical but not zero (a constant shift, zero variance).
    """

    n: int
    mean_diff: float
    ci_low: float
    ci_high: float
    p_value: float


def _values(values: Sequence[float], name: str) -> np.ndarray:
    array = np.asarray(values, dtype=float)
    if array.ndim != 1 or array.size == 0:
        raise ValueError(f"{name} must be a non-empty list of per-seed values, got {values!r}")
    if not np.all(np.isfinite(array)):
        raise ValueError(f"{name} has a non-finite value: {values!r}")
    return array


def _t_interval(array: np.ndarray, confidence: float) -> tuple[float, float, float]:
    """(std, low, high) of the mean of `array`, sample std (ddof=1)."""
    mean = float(array.mean())
    if array.size < 2:
        return math.nan, math.nan, math.nan
    std = float(array.std(ddof=1))
    half = float(stats.t.ppf(0.5 + confidence / 2, df=array.size - 1)) * std / math.sqrt(array.size)
    return std, mean - half, mean + half


def _check_confidence(confidence: float) -> None:
    if not 0.0 < confidence < 1.0:
        raise ValueError(f"confidence must be in (0, 1), got {confidence}")


def seed_interval(values: Sequence[float], confidence: float = 0.95) -> SeedSummary:
    """Mean, sample std and t-interval of a metric over seeds (std and interval NaN for n=1)."""
    _check_confidence(confidence)
    array = _values(values, "values")
    std, low, high = _t_interval(array, confidence)
    return SeedSummary(int(array.size), float(array.mean()), std, low, high)


def paired_test(a: Sequence[float], b: Sequence[float], confidence: float = 0.95) -> PairedTest:
    """Paired t-test of run `a` against run `b`; position i of both lists is the same seed."""
    _check_confidence(confidence)
    x, y = _values(a, "a"), _values(b, "b")
    if x.shape != y.shape:
        raise ValueError(
            f"paired test needs the same seeds on both sides: {x.size} values vs {y.size}"
        )
    diff = x - y
    mean = float(diff.mean())
    _, low, high = _t_interval(diff, confidence)
    if diff.size < 2:
        p = math.nan
    elif np.ptp(diff) <= _TIE:
        p = 1.0 if abs(mean) <= _TIE else 0.0
        low = high = mean
    else:
        p = float(stats.ttest_rel(x, y).pvalue)
    return PairedTest(int(diff.size), mean, low, high, p)
