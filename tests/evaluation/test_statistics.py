"""95 % t-intervals over seeds and the paired test, against hand-computed values."""

from __future__ import annotations

import math

import pytest

from visprompt.evaluation.statistics import paired_test, seed_interval

# t_{0.975, df=2} from a t table; half-width = t * s / sqrt(n) with s = 0.1, n = 3.
T_975_DF2 = 4.302652729749462
HALF = T_975_DF2 * 0.1 / math.sqrt(3)


def test_interval_of_three_seeds_matches_the_t_formula() -> None:
    s = seed_interval([0.5, 0.6, 0.7])
    assert s.n == 3
    assert s.mean == pytest.approx(0.6)
    assert s.std == pytest.approx(0.1)
    assert (s.ci_low, s.ci_high) == pytest.approx((0.6 - HALF, 0.6 + HALF))


def test_a_narrower_confidence_gives_a_narrower_interval() -> None:
    wide, narrow = seed_interval([0.5, 0.6, 0.7]), seed_interval([0.5, 0.6, 0.7], 0.8)
    assert wide.ci_low < narrow.ci_low < narrow.ci_high < wide.ci_high


def test_one_seed_gives_a_nan_interval_not_a_crash() -> None:
    s = seed_interval([0.42])
    assert (s.n, s.mean) == (1, 0.42)
    assert math.isnan(s.std) and math.isnan(s.ci_low) and math.isnan(s.ci_high)
    p = paired_test([0.5], [0.4])
    assert p.mean_diff == pytest.approx(0.1) and math.isnan(p.p_value)


def test_paired_test_matches_hand_computed_t() -> None:
    # differences 0.2, 0.1, 0.3: mean 0.2, s 0.1, t = 0.2 / (0.1 / sqrt 3) = 3.464 on 2 df
    p = paired_test([0.8, 0.7, 0.9], [0.6, 0.6, 0.6])
    assert p.n == 3
    assert p.mean_diff == pytest.approx(0.2)
    assert (p.ci_low, p.ci_high) == pytest.approx((0.2 - HALF, 0.2 + HALF))
    assert p.p_value == pytest.approx(0.07417990022744855)
    reverse = paired_test([0.6, 0.6, 0.6], [0.8, 0.7, 0.9])
    assert reverse.mean_diff == pytest.approx(-0.2) and reverse.p_value == pytest.approx(p.p_value)


def test_identical_runs_are_indistinguishable_and_a_constant_shift_is_not() -> None:
    same = paired_test([0.5, 0.6, 0.7], [0.5, 0.6, 0.7])
    assert (same.mean_diff, same.p_value, same.ci_low, same.ci_high) == (0.0, 1.0, 0.0, 0.0)
    shift = paired_test([0.6, 0.7, 0.8], [0.5, 0.6, 0.7])
    assert shift.mean_diff == pytest.approx(0.1) and shift.p_value == 0.0


@pytest.mark.parametrize(
    ("a", "b", "match"),
    [
        ([0.5, 0.6], [0.5], "same seeds"),
        ([], [], "non-empty"),
        ([0.5, float("nan")], [0.5, 0.5], "non-finite"),
    ],
)
def test_bad_input_is_a_clear_error(a: list, b: list, match: str) -> None:
    with pytest.raises(ValueError, match=match):
        paired_test(a, b)


def test_confidence_out_of_range_is_an_error() -> None:
    with pytest.raises(ValueError, match="confidence"):
        seed_interval([0.5, 0.6], confidence=95)
