import json
import math
import random
import subprocess
import sys

import pytest

from conftest import EMPTY_DNA as DNA, metrics, propose
from primer_search.search.store import AlreadyRecorded, RunStore


def test_proposals_and_individuals(store):
    seed = store.add_proposal(None, None, None, DNA, "h1", fingerprint="fp1", training_seed=0)
    child = store.add_proposal(seed, "insert", {"subprogram": 0, "index": 3}, DNA, "h2", "fp2", repeat_of=seed)
    assert (seed, child) == (1, 2)
    store.record_hurdle(child, 1, 0.2, 3.5, True, threshold=3.6)
    store.record_hurdle(child, 0, 0.1, 4.0, True)
    one, two = store.individual(seed), store.individual(child)
    assert one.parent_id is None and one.fingerprint == "fp1" and one.hurdles == ()
    assert (one.training_seed, one.repeat_of, two.training_seed, two.repeat_of) == (0, None, None, seed)
    assert [(p.id, p.parent_id, p.canonical_hash, p.fingerprint, p.training_seed, p.repeat_of)
            for p in store.proposals()] == [(1, None, "h1", "fp1", 0, None), (2, 1, "h2", "fp2", None, 1)]
    assert store.hurdle_decision(child, 1).threshold == 3.6 and store.hurdle_decision(child, 0).threshold is None
    assert store.hurdle_decision(seed, 0) is None
    assert not one.done and one.seq is None and one.status is None and one.metrics is None
    assert two.parent_id == 1 and two.mutation == "insert" and two.mutation_detail == {"subprogram": 0, "index": 3}
    assert two.dna == DNA and two.canonical_hash == "h2" and two.proposed_at > 0
    assert [(h.hurdle, h.fraction, h.fitness, h.passed) for h in two.hurdles] == [(0, 0.1, 4.0, True),
                                                                                    (1, 0.2, 3.5, True)]
    with pytest.raises(ValueError, match=r"no individual 9 in .*\(ids 1..2\)"):
        store.individual(9)
    with pytest.raises(ValueError, match=r"parent_id 7: no such individual in .*\(ids 1..2\)"):
        store.add_proposal(7, "delete", None, DNA, "h3")
    with pytest.raises(TypeError, match="dna must be a dict"):
        store.add_proposal(None, None, None, "S5 in1=0", "h3")
    assert store.counts()["proposed"] == 2


def test_seq_is_completion_order_and_a_result_is_recorded_once(store):
    a, b, c = propose(store, 3)
    assert store.record_result(c, "ok", 3.0, metrics(fitness=3.0), worker="w1", started_at=1.0) == 1
    assert store.record_result(a, "stopped", 4.0, metrics("stopped", 4.0)) == 2
    with pytest.raises(AlreadyRecorded, match=rf"individual {c} already has a result \(seq 1\)"):
        store.record_result(c, "ok", 2.0, metrics(fitness=2.0))
    assert [i.id for i in store.completed()] == [c, a] and [i.id for i in store.pending()] == [b]
    assert store.record_result(b, "timeout", None, metrics("timeout", error="EvaluationTimeout: 60 s")) == 3
    done = store.completed()
    assert [(i.id, i.seq) for i in done] == [(c, 1), (a, 2), (b, 3)]
    assert done[0].fitness == 3.0 and done[0].worker == "w1" and done[0].started_at == 1.0
    assert done[0].finished_at >= done[0].proposed_at and done[0].metrics == metrics(fitness=3.0)
    assert [i.id for i in store.completed(last=2)] == [a, b] and store.pending() == []
    assert store.counts()["done"] == 3
    with pytest.raises(ValueError, match="status 'crashed' is not one of ok, stopped"):
        store.record_result(c, "crashed", None, {})
    with pytest.raises(ValueError, match=r"individual_id 12: no such individual in .*\(ids 1..3\)"):
        store.record_result(12, "ok", 1.0, {})


def test_nan_fitness_is_stored_as_null_and_metrics_keep_non_finite_values(store):
    (a,) = propose(store, 1)
    store.record_result(a, "diverged", float("nan"), metrics("diverged", float("nan"), perplexity=float("inf")))
    result = store.individual(a)
    assert result.fitness is None and math.isnan(result.metrics["fitness"]) and result.metrics["perplexity"] == math.inf


def test_hurdle_records_newest_first_limited_per_hurdle(store):
    ids = propose(store, 5)
    for i, fitness in zip(ids, [5.0, 4.0, 6.0, None, 3.0], strict=True):
        store.record_hurdle(i, 0, 0.1, fitness, passed=fitness is not None and fitness < 5.5)
    store.record_hurdle(ids[0], 1, 0.3, 2.0, True)
    assert store.hurdle_records(0, 10) == [3.0, 6.0, 4.0, 5.0]     # NULL fitness left out
    assert store.hurdle_records(0, 2) == [3.0, 6.0] and store.hurdle_records(1, 10) == [2.0]
    store.record_hurdle(ids[1], 0, 0.1, 4.5, True)                 # a re-run updates it in its place
    assert store.hurdle_records(0, 10) == [3.0, 6.0, 4.5, 5.0]
    assert store.hurdle_records(2, 10) == []


def test_hurdle_records_of_one_training_seed(store):
    ids = [store.add_proposal(None, None, None, DNA, "h", training_seed=seed) for seed in (0, 1, 0, None)]
    for i, fitness in zip(ids, [5.0, 4.0, 6.0, 7.0], strict=True):
        store.record_hurdle(i, 0, 0.1, fitness, passed=True)
    assert store.hurdle_records(0, 10, training_seed=0) == [6.0, 5.0]
    assert store.hurdle_records(0, 10, training_seed=1) == [4.0] and store.hurdle_records(0, 10) == [7.0, 6.0, 4.0, 5.0]


def test_counts_and_top(store):
    ids = propose(store, 7)
    store.record_hurdle(ids[0], 0, 0.1, 5.0, False)
    store.record_result(ids[0], "stopped", 5.0, metrics("stopped", 5.0, bits_per_byte=1.5))
    store.record_result(ids[1], "ok", 3.0, metrics(fitness=3.0, bits_per_byte=1.2))
    store.record_result(ids[2], "ok", 2.0, metrics(fitness=2.0, bits_per_byte=1.3))
    store.record_result(ids[3], "ok", 2.0, metrics(fitness=2.0, bits_per_byte=float("nan")), cached_from=ids[2])
    store.record_result(ids[4], "invalid", None, metrics("invalid"))
    assert store.counts() == {"proposed": 7, "done": 5, "in_flight": 2, "cache_hits": 1, "hurdle_stops": 1,
                              "by_status": {"invalid": 1, "ok": 3, "stopped": 1}}
    assert store.stopped_fractions() == [0.1]
    assert [i.id for i in store.top(10)] == [ids[2], ids[3], ids[1]]
    assert [i.id for i in store.top(2, statuses=("ok", "stopped"))] == [ids[2], ids[3]]
    assert [i.id for i in store.top(10, "bits_per_byte", ("ok", "stopped"))] == [ids[1], ids[2], ids[0]]
    assert store.top(3, "no_such_metric") == []


def test_top_lists_a_program_once_at_its_first_evaluation_with_its_latest_mean(store):
    lucky = store.add_proposal(None, None, None, DNA, "a", training_seed=0)
    other = store.add_proposal(None, None, None, DNA, "b", training_seed=0)
    again = [store.add_proposal(None, None, None, DNA, "a", training_seed=s, repeat_of=lucky) for s in (1, 2)]
    hit = store.add_proposal(None, None, None, DNA, "a", repeat_of=lucky)
    store.record_result(lucky, "ok", 3.0, metrics(fitness=3.0))         # a lucky first draw
    store.record_result(other, "ok", 3.2, metrics(fitness=3.2))
    store.record_result(again[0], "stopped", 3.9, metrics("stopped", 3.9))
    store.record_result(again[1], "ok", 3.3, metrics(fitness=3.6))       # the mean of 3.0 and 3.6, as recorded
    assert [(i.id, i.fitness) for i in store.top(10)] == [(other, 3.2), (lucky, 3.3)]
    store.record_result(hit, "ok", 3.25, metrics(fitness=3.3), cached_from=again[1])
    assert [(i.id, i.fitness) for i in store.top(10)] == [(other, 3.2), (lucky, 3.25)]
    assert [(i.id, i.fitness) for i in store.top(1, statuses=("ok", "stopped"))] == [(other, 3.2)]
    assert [i.id for i in store.top(10, statuses=("stopped",))] == [again[0]]


def test_rng_state_round_trips_exactly(store, tmp_path):
    rng = random.Random(1234)
    rng.gauss(0.0, 1.0)                         # gauss_next holds a float: the state's third element
    store.add_proposal(None, None, None, DNA, "h", rng_state=rng.getstate())
    store.close()
    with RunStore.open(store.run_dir) as reopened:
        state = reopened.rng_state()
    assert state == rng.getstate() and isinstance(state[1], tuple)
    restored = random.Random()
    restored.setstate(state)
    assert [restored.random() for _ in range(5)] == [rng.random() for _ in range(5)]
    assert restored.gauss(0.0, 1.0) == rng.gauss(0.0, 1.0)


def test_the_store_imports_no_tensorflow():
    code = ("import sys, primer_search.search.store; "
            "print(sorted(m for m in sys.modules if 'tensorflow' in m or 'keras' in m))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert json.loads(out.replace("'", '"')) == []


