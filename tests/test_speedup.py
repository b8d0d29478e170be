import pytest

from primer_search.search.speedup import Speedup, compute_to_reach, curve_of, speedup_factor


def _curve(flops, losses):
    return [{"flops": f, "validation_loss": v, "bits_per_byte": v / 2} for f, v in zip(flops, losses)]


SEED = _curve([10, 20, 30, 40], [5.0, 4.5, 4.2, 4.0])     # reaches its final 4.0 after 40 FLOPs


@pytest.mark.parametrize("program, expected", [
    (_curve([10, 20, 30, 40], [4.8, 4.3, 3.9, 3.7]), Speedup(40 / 27.5, "at")),      # 4.3 -> 3.9: 4.0 at 27.5
    (_curve([5, 10, 15, 20], [4.8, 4.4, 4.1, 4.0]), Speedup(2.0, "at")),             # cheaper steps, reached at 20
    (_curve([10, 20, 30, 40], [3.9, 3.6, 3.5, 3.4]), Speedup(4.0, "lower_bound")),   # better at its first point
    (_curve([10, 20, 30, 40], [5.2, 4.8, 4.5, 4.2]), Speedup(0.75, "at")),           # ends at 4.2: the seed's 30
    (_curve([10, 20, 30, 50], [5.2, 4.8, 4.5, 4.2]), Speedup(0.6, "at")),            # the same after 50 FLOPs
    (_curve([10, 20, 30, 40], [6.0, 5.6, 5.4, 4.35]), Speedup(25 / 40, "at")),       # 4.35: the seed's 4.5 -> 4.2
    (_curve([10, 20, 30, 40], [6.0, 5.8, 5.6, 5.5]), Speedup(0.25, "upper_bound")),  # worse than the seed's start
    (SEED, Speedup(1.0, "at")),                                                       # the seed against itself
])
def test_speedup_factor_on_synthetic_curves(program, expected):
    result = speedup_factor(SEED, program, "validation_loss")
    assert result.kind == expected.kind and result.value == pytest.approx(expected.value)


def test_a_seed_whose_loss_rises_at_the_end_is_timed_to_its_first_crossing():
    rising = _curve([10, 20, 30], [5.0, 4.0, 4.1])                  # reaches its final 4.1 at 19, not 30
    program = _curve([10, 20, 30], [4.5, 4.1, 3.9])                 # reaches 4.1 at 20
    assert speedup_factor(rising, program, "validation_loss").value == pytest.approx(19 / 20)


def test_a_program_whose_loss_rises_at_the_end_is_timed_to_its_first_crossing_too():
    rising = _curve([10, 20, 30], [5.2, 4.5, 4.6])                 # ends at 4.6, first there at 10 + 10 x 6/7
    assert speedup_factor(SEED, rising, "validation_loss").value == pytest.approx(18 / (10 + 60 / 7))


def test_speedup_factor_reads_the_metric_it_is_given():
    program = _curve([10, 20, 30, 40], [4.8, 4.3, 3.9, 3.7])
    assert speedup_factor(SEED, program, "bits_per_byte").value == pytest.approx(40 / 27.5)
    assert compute_to_reach(program, 4.3, "validation_loss") == ("at", pytest.approx(20.0))
    assert compute_to_reach(program, 3.0, "validation_loss") == ("never", 40)


def test_curve_of_a_result_counts_training_flops_and_drops_repeated_steps():
    result = {"status": "ok", "steps": 4, "tokens_seen": 4 * 128, "flops_per_token": 1000, "train_seconds": 2.0,
              "validation_loss": 4.0, "bits_per_byte": 2.0,
              "checkpoints": [{"fraction": 0.05, "step": 1, "validation_loss": 5.5, "bits_per_byte": 2.7,
                               "train_seconds": 0.0},
                              {"fraction": 0.1, "step": 1, "validation_loss": 5.5, "bits_per_byte": 2.7,
                               "train_seconds": 0.0},
                              {"fraction": 0.95, "step": 4, "validation_loss": 4.0, "bits_per_byte": 2.0,
                               "train_seconds": 2.0}]}
    curve = curve_of(result)
    assert [p["step"] for p in curve] == [1, 4] and [p["flops"] for p in curve] == [128_000, 512_000]
    assert curve_of({"status": "invalid", "steps": 0}) == []
