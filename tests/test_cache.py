"""The program cache's decisions, on made-up hashes and results (no TensorFlow)."""

import pytest

from primer_search.search.cache import Plan, ProgramCache


def _propose(cache, individual, hash_, calibration=False):
    program = cache.find(hash_)
    plan = cache.plan(program, calibration=calibration)
    cache.proposed(individual, hash_, None, plan.repeat_of, plan.training_seed)
    return plan


def test_a_program_trains_with_fresh_seeds_until_its_repeats_are_spent_then_reuses_its_result():
    cache = ProgramCache(reevaluations=2, base_seed=10)
    assert _propose(cache, 1, "a") == Plan(None, 10)
    assert cache.completed(1, "ok", 3.0) == (3.0, [])
    assert _propose(cache, 2, "a") == Plan(1, 11)
    assert _propose(cache, 3, "a") == Plan(1, 12)                  # proposed while 2 is in flight: its own seed
    assert _propose(cache, 4, "a") == Plan(1, None)                # three evaluations planned: a cache hit
    assert cache.completed(2, "ok", 2.0) == (2.5, [1])             # the mean; member 1 now carries it too
    assert cache.completed(4, "ok", 3.0, cached_from=1) == (2.5, [])
    assert cache.completed(3, "stopped", 4.0) == (4.0, [])         # a stopped evaluation keeps its own fitness
    assert cache.by_id[4].fitness == 2.5 and cache.by_id[4].followers == [1, 2, 4]
    assert _propose(cache, 5, "b") == Plan(None, 10)               # another program starts over


def test_calibration_always_trains_and_an_unbuildable_program_is_never_retrained():
    cache = ProgramCache(reevaluations=0, base_seed=0)
    _propose(cache, 1, "seed")
    assert _propose(cache, 2, "seed", calibration=True) == Plan(1, 1)
    assert _propose(cache, 3, "seed", calibration=True) == Plan(1, 2)
    cache.completed(1, "ok", 5.0), cache.completed(2, "ok", 6.0)
    assert cache.completed(3, "ok", 7.0) == (pytest.approx(6.0), [1, 2])
    _propose(cache, 4, "broken")
    cache.completed(4, "invalid", None)
    assert ProgramCache(reevaluations=5, base_seed=0).plan(cache.by_id[4]) == Plan(4, None)


def test_machine_failures_are_not_reused():
    cache = ProgramCache(reevaluations=0, base_seed=0)
    _propose(cache, 1, "a")
    cache.completed(1, "timeout", None)
    assert _propose(cache, 2, "a") == Plan(1, 1)                   # no reusable result yet: train again
    cache.completed(2, "ok", 4.0)
    assert _propose(cache, 3, "a") == Plan(1, None) and cache.by_id[3].result == 2


def test_a_cache_hit_reuses_an_evaluation_that_trained_to_the_end_over_a_stopped_first_one():
    cache = ProgramCache(reevaluations=1, base_seed=0)
    _propose(cache, 1, "a")
    assert cache.completed(1, "stopped", 6.1) == (6.1, [])
    assert _propose(cache, 2, "a") == Plan(1, 1)
    assert cache.completed(2, "ok", 5.5) == (5.5, [])
    assert _propose(cache, 3, "a") == Plan(1, None) and cache.by_id[3].result == 2
    assert cache.completed(3, "ok", 5.5, cached_from=2) == (5.5, [])
