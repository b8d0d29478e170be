import math
import pathlib
import random
import statistics
import sys

import pytest

from primer_search.config import SearchPriors, load_config
from primer_search.program.graph import canonical_hash
from primer_search.program.seeds import load_seed_or_file
from primer_search.search.controller import Search
from primer_search.search.mutations import insert, mutate
from primer_search.search.simulation import Landscape, SimulatedExecutor

sys.path.insert(0, str(pathlib.Path(__file__).parents[1] / "bench"))
import search_strategies  # noqa: E402

TRANSFORMER = load_seed_or_file("transformer")
CHECKPOINTS = {"config": {"training": {"seed": 0, "checkpoints": [0.1, 0.3, 0.6]}}}


def _children(n, seed=0):
    config = load_config("search_configs/discovery.yaml").search
    rng = random.Random(seed)
    return [mutate(TRANSFORMER, rng, config.mutation_weights, config.max_instructions)[0] for _ in range(n)]


def test_the_seed_has_the_seed_quality_and_a_landscape_is_reproducible():
    landscape = Landscape(TRANSFORMER, seed=3)
    assert landscape.quality(TRANSFORMER) == landscape.seed_quality
    children = _children(20)
    again = Landscape(TRANSFORMER, seed=3)
    assert [landscape.quality(c) for c in children] == [again.quality(c) for c in children]
    other = Landscape(TRANSFORMER, seed=4)
    assert [landscape.quality(c) for c in children] != [other.quality(c) for c in children]


def test_an_edit_changes_the_features_it_touches_not_the_whole_program():
    landscape = Landscape(TRANSFORMER)
    base = landscape.features(TRANSFORMER)
    changed = [len(landscape.features(child) ^ base) for child in _children(50)]
    assert statistics.median(changed) < len(base) / 3
    assert all(n > 0 for n in changed)


def test_dead_code_changes_nothing():
    landscape, rng = Landscape(TRANSFORMER), random.Random(0)
    dead = None
    for _ in range(200):
        child, _ = insert(TRANSFORMER, rng, priors=SearchPriors(insert_placement="anywhere"))
        if child is not None and canonical_hash(child) == canonical_hash(TRANSFORMER):
            dead = child
            break
    assert dead is not None and dead != TRANSFORMER
    assert landscape.quality(dead) == landscape.seed_quality


def test_gains_saturate_at_the_reach():
    landscape = Landscape(TRANSFORMER, gain_rate=1.0, reach=0.3)
    qualities = [landscape.quality(c) for c in _children(20)]
    assert all(landscape.seed_quality - 0.3 < q < landscape.seed_quality for q in qualities)


def test_the_noise_has_the_measured_spread_falling_with_the_budget():
    landscape = Landscape(TRANSFORMER, noise=0.02, early_noise=0.05, early_fraction=0.05)
    final = [landscape.measure(TRANSFORMER, s, 1.0) for s in range(400)]
    early = [landscape.measure(TRANSFORMER, s, 0.05) for s in range(400)]
    assert statistics.stdev(final) == pytest.approx(0.02, rel=0.15)
    assert statistics.stdev(early) == pytest.approx(0.05, rel=0.15)
    assert statistics.mean(final) == pytest.approx(landscape.seed_quality, abs=0.005)
    assert statistics.mean(early) > statistics.mean(final) + 0.5       # the learning curve


def test_common_random_numbers_correlate_two_programs_under_one_training_seed():
    landscape = Landscape(TRANSFORMER, shared_noise=0.8)
    child = _children(1)[0]
    pairs = [(landscape.measure(TRANSFORMER, s, 1.0), landscape.measure(child, s, 1.0)) for s in range(300)]
    assert statistics.correlation(*zip(*pairs)) > 0.6


def test_a_trial_asks_at_each_checkpoint_and_stops_when_told():
    landscape, asked = Landscape(TRANSFORMER), []

    def ask(question):
        asked.append(question)
        return question["hurdle"] < 1

    payload = {"dna": TRANSFORMER.to_dict(), "training_seed": 5, **CHECKPOINTS}
    stopped = landscape.trial(payload, ask)
    assert [q["fraction"] for q in asked] == [0.1, 0.3]
    assert stopped["status"] == "stopped" and stopped["budget_fraction"] == 0.3
    assert stopped["fitness"] == asked[-1]["value"] == landscape.measure(TRANSFORMER, 5, 0.3)
    finished = landscape.trial(payload)
    assert finished["status"] == "ok" and finished["budget_fraction"] == 1.0
    assert finished["fitness"] == landscape.measure(TRANSFORMER, 5, 1.0)
    assert [c["fraction"] for c in finished["checkpoints"]] == [0.1, 0.3, 0.6]


def test_a_fatal_program_diverges():
    landscape = Landscape(TRANSFORMER, gain_rate=0.0, fatal_rate=1.0)
    child = next(c for c in _children(20) if landscape.features(c) - landscape.features(TRANSFORMER))
    assert math.isinf(landscape.quality(child))
    assert landscape.trial({"dna": child.to_dict(), **CHECKPOINTS})["status"] == "diverged"


def _simulated_search(run_dir, landscape, **search):
    overrides = ["search.executor=in_process", "search.fec=false", "search.num_individuals=60",
                 *(f"search.{k}={v}" for k, v in search.items())]
    search = Search.start(load_config("search_configs/discovery.yaml", overrides), run_dir)
    try:
        status = search.run(executor=SimulatedExecutor(landscape, answer=search.answer), progress_every=0)
        return status, [(r.id, r.status, r.fitness) for r in search.store.completed()]
    finally:
        search.close()


def test_a_simulated_search_runs_the_real_controller_reproducibly(tmp_path):
    landscape = Landscape(TRANSFORMER, seed=2)
    status, history = _simulated_search(tmp_path / "a", landscape)
    assert status.done == 60
    assert status.by_status.get("stopped", 0) > 10                  # the hurdles judged simulated trials
    assert history == _simulated_search(tmp_path / "b", landscape)[1]
    assert history != _simulated_search(tmp_path / "c", landscape, seed=1)[1]


def test_the_strategies_benchmark_compares_modes_paired_by_landscape(capsys):
    search_strategies.main(["--search-seeds", "2", "--individuals", "30", "--modes", "evolution",
                            "evolution:population_size=12,tournament_size=4"])
    lines = capsys.readouterr().out.splitlines()
    assert sum("30 individuals, landscape" in line for line in lines) == 4
    assert lines[-1].startswith("evolution - evolution:population_size=12,tournament_size=4 at 30 individuals: ")
    assert "wins/ties/losses" in lines[-1]
