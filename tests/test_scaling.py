import math

import pytest

from primer_search.retrain.report import table
from primer_search.retrain.scaling import Run, power_law, summarize


def _run(program, size, seed, flops, losses, baseline=False, status="ok"):
    curve = [{"flops": f, "validation_loss": v, "bits_per_byte": v / 2} for f, v in zip(flops, losses)]
    return Run(program, baseline, size, seed, 1000 * (size + 1), {"status": status, "curve": curve})


def test_speedups_pair_training_seeds_at_each_size():
    runs = [
        _run("t", 0, 0, [10, 20, 30, 40], [5.0, 4.5, 4.2, 4.0], baseline=True),
        _run("t", 0, 1, [10, 20, 30, 40], [5.0, 4.6, 4.3, 4.1], baseline=True),
        _run("p", 0, 0, [10, 20, 30, 40], [4.8, 4.3, 3.9, 3.7]),     # reaches 4.0 at 27.5: 40 / 27.5
        _run("p", 0, 1, [10, 20, 30, 40], [4.6, 4.1, 3.8, 3.6]),     # reaches 4.1 at 20: 2.0
    ]
    report = summarize(runs)
    baseline, program = report.sizes
    assert baseline.speedups == () and baseline.final_mean == pytest.approx(4.05)
    [speedup] = program.speedups
    assert speedup.pairs == 2 and speedup.mean == pytest.approx(math.sqrt(40 / 27.5 * 2.0))   # geometric mean
    half = 12.706 * abs(math.log(40 / 27.5 / 2.0)) / 2                          # t(0.975, 1) x sd(logs) / sqrt 2
    assert speedup.interval == pytest.approx((speedup.mean / math.exp(half), speedup.mean * math.exp(half)), rel=1e-3)
    assert program.final_mean == pytest.approx(3.65) and program.compute == 40


def test_a_failed_run_leaves_its_pair_out_and_is_counted():
    runs = [_run("t", 0, 0, [10, 20], [5.0, 4.0], baseline=True), _run("t", 0, 1, [10], [5.0], baseline=True,
                                                                      status="diverged"),
            _run("p", 0, 0, [10, 20], [3.9, 3.5]), _run("p", 0, 1, [10, 20], [4.5, 3.9])]
    baseline, program = summarize(runs).sizes
    assert (baseline.seeds, baseline.failed) == (1, 1)
    [speedup] = program.speedups
    assert (speedup.pairs, speedup.lower_bounds, speedup.mean, speedup.interval) == (1, 1, pytest.approx(2.0), None)
    assert "2.00x vs t (>= in 1)" in table(summarize(runs))


def test_a_program_that_ends_worse_has_a_speedup_below_one():
    runs = [_run("t", 0, 0, [10, 20, 30, 40], [5.0, 4.5, 4.2, 4.0], baseline=True),
            _run("t", 0, 1, [10, 20, 30, 40], [5.0, 4.5, 4.2, 4.0], baseline=True),
            _run("p", 0, 0, [10, 20, 30, 40], [5.2, 4.8, 4.5, 4.2]),     # 4.2: the baseline's 30 of 40 FLOPs
            _run("p", 0, 1, [10, 20, 30, 40], [6.0, 5.8, 5.6, 5.5])]     # worse than the baseline's first point
    [speedup] = summarize(runs).sizes[1].speedups
    assert (speedup.pairs, speedup.lower_bounds, speedup.upper_bounds) == (2, 0, 1)
    assert speedup.mean == pytest.approx(math.sqrt(0.75 * 0.25))
    assert "0.43 [0.00, 465.27]x vs t (<= in 1)" in table(summarize(runs))   # two pairs: a wide interval


def test_power_law_recovers_its_exponent():
    runs = [_run("t", size, 0, [c / 2, c], [9.0, 3.0 * c ** -0.05], baseline=True)
            for size, c in enumerate([1e9, 1e10, 1e11])]
    [law] = summarize(runs).power_laws
    assert law.exponent == pytest.approx(-0.05) and law.coefficient == pytest.approx(3.0)
    assert law.r_squared == pytest.approx(1.0) and law.sizes == 3
    assert power_law(summarize(runs[:1]).sizes) is None
    assert math.isfinite(law.exponent)
    same_budget = [_run("t", size, 0, [5e9, 1e10 + size], [9.0, 3.0 - size / 10], baseline=True) for size in range(3)]
    assert power_law(summarize(same_budget).sizes) is None                  # one FLOPs budget: no slope to fit
