import pytest

from primer_search.hurdles import MIN_RECORDS, compute_saved, hurdle_fractions, passes, threshold


def test_paper_hurdles_split_compute_into_equal_bands():
    assert hurdle_fractions(4) == pytest.approx([1 / 31, 3 / 31, 7 / 31, 15 / 31])
    assert [25200 * f for f in hurdle_fractions(4)] == pytest.approx([812.9, 2438.7, 5690.3, 12193.5], abs=0.1)
    # half pass each hurdle: band i costs (fraction_i - fraction_{i-1}) x (1/2)^(i-1), the same for every band
    bounds = (0.0, *hurdle_fractions(4), 1.0)
    costs = [(bounds[i + 1] - bounds[i]) * 0.5 ** i for i in range(5)]
    assert costs == pytest.approx([costs[0]] * 5)
    assert hurdle_fractions(0) == ()


def test_top_half_passes_after_enough_records():
    assert threshold([3.0] * (MIN_RECORDS - 1)) is None and passes(99.0, None)
    limit = threshold([1.0, 2.0, 3.0, 4.0, 5.0])
    assert limit == 3.0 and passes(3.0, limit) and passes(2.5, limit) and not passes(3.1, limit)


def test_compute_saved():
    assert compute_saved([0.5, 0.25], completed=2) == pytest.approx((0.5 + 0.75) / 4)
    assert compute_saved([], completed=0) == 0.0
