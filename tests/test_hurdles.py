import pytest

from primer_search.search.hurdles import (MIN_RECORDS, compute_saved, hurdle_fractions, limit, passes, quantile,
                                         threshold, window_at)


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
    at_most = threshold([1.0, 2.0, 3.0, 4.0, 5.0])
    assert at_most == 3.0 and passes(3.0, at_most) and passes(2.5, at_most) and not passes(3.1, at_most)


def test_a_quantile_threshold_interpolates_between_records():
    assert threshold([4.0, 1.0, 3.0, 2.0]) == 2.5                  # the median of an even count
    assert threshold([1.0, 2.0, 3.0, 4.0, 5.0], 0.25) == 2.0
    assert threshold([1.0, 2.0, 3.0, 4.0, 5.0], 0.1) == pytest.approx(1.4)


def test_the_pass_rate_controller_steers_each_hurdle_to_half_of_all_it_judged():
    assert quantile(30, 40, 20, gain=0) == 0.5 and quantile(10, 40, 20, gain=0) == 0.5      # the median rule
    assert quantile(30, 40, 20, gain=1) == 0.1                              # 10 passes too many: clamped
    assert quantile(22, 40, 20, gain=1) == pytest.approx(0.4)               # 2 too many, per window of 20
    assert quantile(18, 40, 20, gain=1) == pytest.approx(0.6)               # 2 too few: let more by
    assert quantile(22, 40, 20, gain=2) == pytest.approx(0.3)
    assert quantile(22, 40, 10, gain=1) == pytest.approx(0.3)               # a smaller window steers harder
    assert quantile(0, 40, 20, gain=2) == 0.9                                # clamped
    assert quantile(MIN_RECORDS - 1, MIN_RECORDS - 1, 20, gain=2) == 0.5    # too few verdicts to steer by
    assert quantile(200, 400, 20, gain=2) == 0.5                             # half of all judged: the median
    assert limit([1.0, 2.0, 3.0, 4.0, 5.0], (3, 4), 5, 1.0) == pytest.approx(2.2)   # quantile 0.3


def test_each_hurdle_looks_back_over_half_as_many_records_as_the_one_before():
    assert [window_at(h, 40) for h in range(4)] == [40, 20, 10, 5]
    assert [window_at(h, 20) for h in range(4)] == [20, 10, 5, MIN_RECORDS]    # never below the first threshold
    assert window_at(1, 7) == 4 and window_at(0, 1) == MIN_RECORDS


def test_compute_saved():
    assert compute_saved([0.5, 0.25], completed=2) == pytest.approx((0.5 + 0.75) / 4)
    assert compute_saved([], completed=0) == 0.0


def test_hurdle_steps_and_placement():
    from primer_search.search.hurdles import hurdle_steps, placement_error

    assert hurdle_steps(2, 70) == [10, 30] and hurdle_steps(4, 31) == [1, 3, 7, 15]
    assert placement_error(2, 70, warmup_steps=10, min_steps=10) is None
    assert placement_error(0, 5, warmup_steps=100, min_steps=10) is None
    error = placement_error(2, 56, warmup_steps=100, min_steps=10)
    assert error == ("search.hurdles: 2 hurdles at budget fractions 0.143, 0.429 of 56 training steps fall at steps "
                     "8, 24; 2 before step 100 (training.warmup_steps 100, search.min_hurdle_steps 10); expected a "
                     "budget of at least 700 steps, a shorter warmup or fewer hurdles")


def test_a_search_with_hurdles_inside_the_warmup_is_refused_before_the_run_exists(tmp_path):
    from primer_search.config import load_config
    from primer_search.search.controller import Search

    config = load_config(None, ["training.budget_kind=steps", "training.budget=56", "training.warmup_steps=100",
                                "search.hurdles=2"])                # a config for `train` may have any hurdles
    with pytest.raises(ValueError, match=r"fall at steps 8, 24; 2 before step 100"):
        Search.start(config, tmp_path / "run")
    assert not (tmp_path / "run").exists()


def test_a_flops_budget_is_checked_on_the_seeds_before_the_run_exists(tmp_path):
    from primer_search.config import load_config
    from primer_search.search.controller import Search

    config = load_config("search_configs/tiny.yaml", ["training.budget=1e12"])   # 33 steps: the first hurdle at 5
    with pytest.raises(ValueError, match=r"fall at steps 5, 15; .*\(seed transformer: 30,04\d,\d{3},\d{3} training "
                                         r"FLOPs per step\)"):
        Search.start(config, tmp_path / "run")
    assert not (tmp_path / "run").exists()
