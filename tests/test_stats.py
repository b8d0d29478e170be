import math

import pytest

from primer_search.search import stats


@pytest.mark.parametrize("a, b, x", [(1, 1, 0.3), (3, 1, 0.7), (1, 4, 0.2), (2, 3, 0.4), (0.5, 0.5, 0.3),
                                     (0.5, 0.5, 0.9), (50, 50, 0.5)])
def test_incomplete_beta_matches_closed_forms(a, b, x):
    expected = {(1, 1): x, (3, 1): x ** 3, (1, 4): 1 - (1 - x) ** 4,
                (2, 3): sum(math.comb(4, j) * x ** j * (1 - x) ** (4 - j) for j in range(2, 5)),
                (0.5, 0.5): 2 / math.pi * math.asin(math.sqrt(x)), (50, 50): 0.5}[(a, b)]
    assert stats.incomplete_beta(a, b, x) == pytest.approx(expected, abs=1e-12)
    assert stats.incomplete_beta(a, b, x) == pytest.approx(1 - stats.incomplete_beta(b, a, 1 - x), abs=1e-12)


def test_incomplete_beta_rejects_bad_arguments():
    with pytest.raises(ValueError, match="x=1.5"):
        stats.incomplete_beta(1, 1, 1.5)
    with pytest.raises(ValueError, match="positive"):
        stats.incomplete_beta(0, 1, 0.5)


@pytest.mark.parametrize("t", [-3.0, -0.4, 0.0, 0.7, 2.5, 40.0])
def test_t_cdf_matches_closed_forms_for_one_two_and_three_degrees_of_freedom(t):
    assert stats.t_cdf(t, 1) == pytest.approx(0.5 + math.atan(t) / math.pi, abs=1e-12)
    assert stats.t_cdf(t, 2) == pytest.approx(0.5 + t / (2 * math.sqrt(2 + t * t)), abs=1e-12)
    u = t / math.sqrt(3)
    assert stats.t_cdf(t, 3) == pytest.approx(0.5 + (u / (1 + u * u) + math.atan(u)) / math.pi, abs=1e-12)


@pytest.mark.parametrize("df, expected", [(1, 12.706204736), (2, 4.302652730), (4, 2.776445105),
                                          (10, 2.228138852), (30, 2.042272456)])
def test_t_quantile_matches_tables(df, expected):
    assert stats.t_quantile(0.975, df) == pytest.approx(expected, abs=1e-8)
    assert stats.t_quantile(0.025, df) == pytest.approx(-expected, abs=1e-8)


def test_t_quantile_approaches_the_normal_for_many_degrees_of_freedom():
    assert stats.t_quantile(0.975, 1e7) == pytest.approx(stats.normal_quantile(0.975), abs=1e-5)


def test_paired_t_test_against_the_closed_form_p_value():
    a, b = [1.0, 2.0, 3.0, 4.0], [1.1, 2.3, 2.9, 4.5]    # differences -0.1, -0.3, 0.1, -0.5
    t, p = stats.paired_t_test(a, b)
    assert t == pytest.approx(-0.2 / (math.sqrt(0.2 / 3) / 2), abs=1e-12)
    u = abs(t) / math.sqrt(3)                               # df 3: F(t) = 1/2 + (u / (1 + u^2) + atan u) / pi
    assert p == pytest.approx(1 - 2 * (u / (1 + u * u) + math.atan(u)) / math.pi, abs=1e-12)
    assert p == pytest.approx(0.2191, abs=1e-4)
    t2, p2 = stats.paired_t_test([5.0, 6.0], [4.0, 4.5])    # df 1: p = 1 - 2 atan(|t|) / pi
    assert t2 == pytest.approx(5.0) and p2 == pytest.approx(1 - 2 * math.atan(5.0) / math.pi, abs=1e-12)


def test_paired_t_test_degenerate_cases():
    assert stats.paired_t_test([1.0], [2.0]) is None
    assert stats.paired_t_test([1.0, 2.0], [1.0, 2.0]) == (0.0, 1.0)
    assert stats.paired_t_test([1.0, 2.0], [1.5, 2.5]) == (-math.inf, 0.0)
    with pytest.raises(ValueError, match="pairs"):
        stats.paired_t_test([1.0, 2.0], [1.0])


def test_confidence_half_width_and_spread():
    assert stats.confidence_half_width([1.0, 2.0, 3.0]) == pytest.approx(4.302652730 / math.sqrt(3), abs=1e-8)
    assert stats.confidence_half_width([1.0]) is None and stats.stdev([1.0]) is None
    assert stats.stdev([5.0, 5.2, 5.4]) == pytest.approx(0.2)


def test_ratios_average_on_the_log_scale():
    centre, (low, high) = stats.geometric_interval([0.5, 2.0])
    assert centre == pytest.approx(1.0) and low * high == pytest.approx(1.0)     # symmetric in log, not in value
    assert high == pytest.approx(math.exp(12.706205 * math.log(4) / 2), rel=1e-6)   # t x (ln 4 / sqrt 2) / sqrt 2
    assert stats.geometric_interval([3.0]) == (pytest.approx(3.0), None)
    assert stats.geometric_interval([]) == (None, None)
    with pytest.raises(ValueError, match="positive ratios"):
        stats.geometric_interval([1.0, 0.0])


def test_spearman_with_and_without_ties():
    assert stats.spearman([1, 2, 3, 4], [1, 3, 2, 4]) == pytest.approx(0.8)
    assert stats.spearman([1, 1, 2], [1, 2, 3]) == pytest.approx(1.5 / math.sqrt(3))
    assert stats.spearman([1, 2, 3], [3, 2, 1]) == pytest.approx(-1.0)
    assert stats.spearman([1, 2], [1, 2]) is None and stats.spearman([1, 1, 1], [1, 2, 3]) is None


def test_spearman_interval_follows_fisher_z_with_bonett_wright_error():
    low, high = stats.spearman_interval(0.8, 27)
    half = 1.959963984540054 * math.sqrt(1.32 / 24)
    assert (low, high) == pytest.approx((math.tanh(math.atanh(0.8) - half), math.tanh(math.atanh(0.8) + half)))
    assert low == pytest.approx(0.5642, abs=1e-4) and high == pytest.approx(0.9151, abs=1e-4)
    assert stats.spearman_interval(-0.8, 27) == pytest.approx((-high, -low))          # symmetric in sign
    narrow = stats.spearman_interval(0.8, 270)
    assert low < narrow[0] < 0.8 < narrow[1] < high                                  # narrows with more pairs
    assert stats.spearman_interval(1.0, 5) == (1.0, 1.0)
    with pytest.raises(ValueError, match="n=3"):
        stats.spearman_interval(0.5, 3)


def test_detectable_difference_is_about_three_and_a_half_sigma_for_one_evaluation():
    z = 1.6448536269514722 + 0.8416212335729143
    assert stats.detectable_difference(0.01) == pytest.approx(z * math.sqrt(2) * 0.01)
    assert stats.detectable_difference(1.0) == pytest.approx(3.516, abs=1e-3)
    assert stats.detectable_difference(1.0, n=4) == pytest.approx(stats.detectable_difference(1.0) / 2)
    with pytest.raises(ValueError, match="n=0"):
        stats.detectable_difference(1.0, n=0)
