import dataclasses
import json
import math
import shutil

import pytest

from conftest import FAST
from primer_search.cli.main import main
from primer_search.config import config_from_dict
from primer_search.program.seeds import load_seed
from primer_search.search import stats
from primer_search.search.confirmation import (SEED_OFFSET, compare_best, confirm, copy_trainings, select_programs,
                                               setup_key, stored_confirmation, summarize, trial_config)
from primer_search.search.store import ConfirmationRecord, RunStore


def _curve(flops, losses):
    return [{"flops": f, "validation_loss": v, "bits_per_byte": v / 2} for f, v in zip(flops, losses)]


def _record(individual, seed, loss, curve_losses, status="ok"):
    return ConfirmationRecord(individual, seed, 2.0, "setup", status, loss if status == "ok" else None, None,
                              {}, _curve([10, 20, 30, 40], curve_losses) if status == "ok" else [], 0.0)


@dataclasses.dataclass
class _Individual:
    id: int
    parent_id: int | None
    canonical_hash: str
    fitness: float


def test_summarize_pairs_programs_with_the_seed_by_training_seed():
    records = [_record(1, 11, 4.0, [5.0, 4.5, 4.2, 4.0]), _record(1, 12, 4.1, [5.1, 4.6, 4.3, 4.1]),
               _record(1, 13, 4.05, [5.0, 4.6, 4.2, 4.05]),
               _record(7, 11, 3.7, [4.8, 4.3, 3.9, 3.7]), _record(7, 12, 3.9, [4.9, 4.4, 4.0, 3.9]),
               _record(7, 13, 0.0, [], status="diverged")]
    c = summarize(records, [_Individual(1, None, "a", 5.0), _Individual(7, 3, "b", 4.5)], "validation_loss",
                  [11, 12, 13], (2.0, 8.0, "steps"), "data.test_fraction 0.1")
    seed, program = c.programs
    assert seed.role == "seed" and seed.comparisons == () and seed.values == (4.0, 4.1, 4.05)
    assert seed.mean == pytest.approx(4.05) and seed.ci == pytest.approx(4.302652730 * 0.05 / math.sqrt(3))
    assert program.statuses == ("ok", "ok", "diverged") and program.mean == pytest.approx(3.8)
    assert program.ci == pytest.approx(12.706204736 * stats.stdev([3.7, 3.9]) / math.sqrt(2))
    x, = program.comparisons
    assert x.seed_id == 1 and x.speedups[2] is None
    assert x.speedups[0].value == pytest.approx(40 / 27.5)                     # 4.3 -> 3.9 crosses 4.0 at 27.5
    assert x.speedups[1].value == pytest.approx(40 / 27.5)                     # 4.4 -> 4.0 crosses 4.1 at 27.5
    assert x.speedup_mean == pytest.approx(40 / 27.5) and x.speedup_interval == pytest.approx((40 / 27.5,) * 2)
    assert x.pairs == 2
    assert x.difference == pytest.approx(-0.25)                               # (3.7 - 4.0 + 3.9 - 4.1) / 2
    assert x.p_value == pytest.approx(stats.paired_t_test([3.7, 3.9], [4.0, 4.1])[1])
    assert x.bounds == (0, 0) and c.program(7) is program and c.program(2) is None


def test_trial_config_scales_the_budget_and_measures_the_test_split():
    config = config_from_dict({**FAST, "data": {**FAST["data"], "test_fraction": 0.1},
                               "training": {**FAST["training"], "budget": 40, "timeout_seconds": 60},
                               "search": {"hurdles": 1}})
    trial = trial_config(config, 2.5, 10_001)
    assert trial.training.budget == 100 and trial.training.budget_kind == "steps" and trial.training.seed == 10_001
    assert trial.training.timeout_seconds == 150 and trial.data.evaluation == "test" and trial.search.hurdles == 0
    assert len(trial.training.checkpoints) == 19 and trial.training.checkpoints[0] == pytest.approx(0.05)
    assert trial_config(config, 0.25, 10_001).training.budget == 10       # no hurdle left to fall before warmup
    assert setup_key(trial) == setup_key(trial_config(config, 2.5, 10_002))        # the seed is not part of it
    assert setup_key(trial) != setup_key(trial_config(config.replace(data={"test_fraction": 0.2}), 2.5, 10_001))


def test_select_programs_takes_distinct_top_findings_besides_the_seeds(tmp_path):
    dna = load_seed("transformer").to_dict()
    with RunStore.create(tmp_path / "run", {}) as store:
        for parent, hash_, fitness in [(None, "seed", 5.0), (1, "a", 4.0), (1, "a", 4.0), (1, "seed", 3.0),
                                       (1, "b", 4.5), (1, "c", 4.2), (1, "d", None), (1, "e", 4.00003),
                                       (1, "f", 4.0002), (1, "g", 5.00001)]:
            individual = store.add_proposal(parent, None if parent is None else "insert", None, dna, hash_)
            status = "ok" if fitness is not None else "diverged"
            store.record_result(individual, status, fitness, {"status": status})
        chosen = select_programs(store, 2)
        assert [(i.id, i.canonical_hash) for i in chosen] == [(1, "seed"), (2, "a"), (9, "f")]
        # e ties a to 3e-5 (the same finding), g ties the seed: neither is retrained
        assert [i.id for i in select_programs(store, 10)] == [1, 2, 9, 6, 5]


def test_select_programs_leaves_out_edits_within_the_seed_noise_of_a_common_ancestor(tmp_path):
    dna = load_seed("transformer").to_dict()
    with RunStore.create(tmp_path / "run", {}) as store:
        store.meta_set("calibration", {"programs": [{"final": {"std": 0.02}}]})
        for parent, hash_, fitness in [(None, "seed", 5.0), (1, "a", 4.05), (2, "b", 3.99), (3, "c", 3.98),
                                       (1, "d", 3.985), (2, "e", 4.5), (1, "f", 4.985), (3, "g", 3.995)]:
            individual = store.add_proposal(parent, None if parent is None else "insert", None, dna, hash_)
            store.record_result(individual, "ok", fitness, {"status": "ok"})
        # c is best; b, its parent, is within 0.02 of it: the same finding, and so is g, c's sibling (b is within
        # 0.02 of both); d is as close to c but they descend from the seed only, 1 away; a (b's parent) and e (a's
        # child) are further; f, a child of the seed, is within 0.02 of it
        assert [i.canonical_hash for i in select_programs(store, 10)] == ["seed", "c", "d", "a", "e"]


def test_select_programs_counts_a_child_the_cache_found_equal_to_the_seed_as_the_seed(tmp_path):
    dna = load_seed("transformer").to_dict()
    with RunStore.create(tmp_path / "run", {}) as store:
        store.add_proposal(None, None, None, dna, "seed")
        store.add_proposal(1, "insert", None, dna, "other hash", training_seed=1, repeat_of=1)   # a fingerprint match
        store.add_proposal(1, "insert", None, dna, "a")
        for individual, fitness in ((1, 5.0), (2, 4.5), (3, 4.9)):
            store.record_result(individual, "ok", fitness, {"status": "ok"})
        assert [i.id for i in select_programs(store, 5)] == [1, 3]


def test_the_store_keeps_confirmations_in_a_table_made_on_first_write(tmp_path):
    dna = load_seed("transformer").to_dict()
    with RunStore.create(tmp_path / "run", {}) as store:
        store.add_proposal(None, None, None, dna, "h")
        assert store.confirmations() == []                               # no table yet: none
        assert store._db.execute("SELECT COUNT(*) FROM sqlite_master WHERE name = 'confirmations'").fetchone()[0] == 0
        result = {"status": "ok", "validation_loss": 4.0, "bits_per_byte": float("nan")}
        store.record_confirmation(1, 11, 2.0, "s", result, [{"step": 1}])
        store.record_confirmation(1, 11, 2.0, "s", {**result, "validation_loss": 3.9}, [{"step": 2}])   # replaced
        store.record_confirmation(1, 12, 3.0, "s", result, [])
        with pytest.raises(ValueError, match="status 'fine'"):
            store.record_confirmation(1, 13, 2.0, "s", {"status": "fine"}, [])
        with pytest.raises(ValueError, match="no such individual"):
            store.record_confirmation(9, 13, 2.0, "s", result, [])
    with RunStore.open(tmp_path / "run") as store:                       # readers need no lock
        first, = store.confirmations("s", 2.0)
        assert (first.training_seed, first.validation_loss, first.bits_per_byte, first.curve) == (11, 3.9, None,
                                                                                                  [{"step": 2}])
        assert len(store.confirmations()) == 2 and store.confirmations("other") == []


def _confirmed_run(path, finals: dict, seeds=(11, 12, 13), multiplier=2.0):
    """A run store whose programs (id -> final loss per training seed; id 1 the seed) carry stored confirmations
    with curves that end there."""
    dna = load_seed("transformer").to_dict()
    with RunStore.create(path, {}) as store:
        for individual, losses in finals.items():
            store.add_proposal(None if individual == 1 else 1, None, None, dna, f"h{individual}")
            store.record_result(individual, "ok", losses[0], {"status": "ok"})
        store.meta_set(f"confirmation:setup:{multiplier:g}", {"training_seeds": list(seeds), "test_split": "t",
                                                               "budget": 8.0, "budget_kind": "steps",
                                                               "metric": "validation_loss"})
        for individual, losses in finals.items():
            for seed, loss in zip(seeds, losses):
                curve = _curve([10, 20, 30, 40], [loss + 1.0, loss + 0.5, loss + 0.2, loss])
                store.record_confirmation(individual, seed, multiplier, "setup",
                                          {"status": "ok", "validation_loss": loss}, curve)


def test_the_best_confirmed_programs_of_two_runs_are_compared_paired_by_training_seed(tmp_path):
    _confirmed_run(tmp_path / "evolution", {1: [4.0, 4.1, 4.05], 2: [3.8, 3.9, 3.85], 3: [3.7, 3.75, 3.72]})
    _confirmed_run(tmp_path / "random", {1: [4.0, 4.1, 4.05], 2: [3.95, 4.0, 4.0], 3: [4.2, 4.3, 4.2]})
    with RunStore.open(tmp_path / "evolution") as store:
        mine = stored_confirmation(store)
    assert mine.setup == "setup" and mine.budget_multiplier == 2.0
    best, reference, x = compare_best(mine, tmp_path / "evolution", tmp_path / "random")
    assert (best, reference) == (3, 2)                           # each run's lowest confirmed mean, seeds aside
    assert x.difference == pytest.approx(stats.mean([3.7 - 3.95, 3.75 - 4.0, 3.72 - 4.0]))
    assert x.p_value == pytest.approx(stats.paired_t_test([3.7, 3.75, 3.72], [3.95, 4.0, 4.0])[1])
    assert x.speedup_mean > 1 and x.pairs == 3
    without_3 = dataclasses.replace(mine, programs=tuple(p for p in mine.programs if p.individual_id != 3))
    assert compare_best(without_3, tmp_path / "evolution", tmp_path / "random")[0] == 2   # the best confirmed
    _confirmed_run(tmp_path / "other_seeds", {1: [4.0, 4.1], 2: [3.9, 3.9]}, seeds=(11, 12))
    with pytest.raises(ValueError, match=r"other_seeds: found training seeds \[11, 12\] confirmed at 2x .*expected "
                                         r"training seeds \[11, 12, 13\]"):
        compare_best(mine, tmp_path / "evolution", tmp_path / "other_seeds")
    _confirmed_run(tmp_path / "longer", {1: [4.0, 4.1, 4.05], 2: [3.9, 3.9, 3.9]}, multiplier=10.0)
    with pytest.raises(ValueError, match=r"longer: found none confirmed at 2x"):
        compare_best(mine, tmp_path / "evolution", tmp_path / "longer")


def test_reuse_copies_another_runs_trainings_of_the_same_program_setup_and_seed(tmp_path):
    _confirmed_run(tmp_path / "evolution", {1: [4.0, 4.1, 4.05], 2: [3.8, 3.9, 3.85]})
    with RunStore.open(tmp_path / "evolution", lock=True) as store:         # a training that says nothing
        store.record_confirmation(2, 14, 2.0, "setup", {"status": "timeout"}, [])
    dna = load_seed("transformer").to_dict()
    with RunStore.create(tmp_path / "random", {}) as store:
        store.add_proposal(None, None, None, dna, "h1")                      # the same seed program
        store.add_proposal(1, None, None, dna, "h9")                         # a program only this run has
        store.add_proposal(1, None, None, dna, "h2")                         # the other run's #2, here #3
        todo = [(store.individual(i), s) for i in (1, 2, 3) for s in (11, 12, 14)]
        copied = copy_trainings([tmp_path / "evolution"], store, todo, "setup", 2.0)
        assert copied == {(1, 11), (1, 12), (3, 11), (3, 12)}                # seed 13 not wanted, 14 timed out
        assert copy_trainings([tmp_path / "evolution"], store, todo, "other setup", 2.0) == set()
        assert copy_trainings([tmp_path / "evolution"], store, todo, "setup", 1.0) == set()
        mine = {(r.individual_id, r.training_seed): r for r in store.confirmations("setup", 2.0)}
    with RunStore.open(tmp_path / "evolution") as store:
        theirs = {(r.individual_id, r.training_seed): r for r in store.confirmations("setup", 2.0)}
    assert set(mine) == copied
    for (individual, seed), record in mine.items():
        source = theirs[(2 if individual == 3 else 1, seed)]
        assert (record.validation_loss, record.metrics, record.curve) == (source.validation_loss, source.metrics,
                                                                          source.curve)


# -- end to end on a tiny in-process run ---------------------------------------------------------------------------

# Search seed 1: the child is a program of its own (other seeds draw one the cache finds equal to the seed's
# function, which `confirm` then counts as the seed).
TOY_SEARCH = {"executor": "in_process", "num_individuals": 2, "population_size": 2, "tournament_size": 1,
              "max_in_flight": 1, "hurdles": 1, "hurdle_window": 10, "min_hurdle_steps": 0, "seed": 1}


@pytest.fixture(scope="module")
def tiny_run(tmp_path_factory):
    from primer_search.search.controller import Search

    config = config_from_dict({**FAST, "training": {**FAST["training"], "budget": 3, "warmup_steps": 1},
                               "search": TOY_SEARCH})
    run_dir = tmp_path_factory.mktemp("confirm") / "run"
    search = Search.start(config, run_dir)
    search.run()
    search.close()
    return run_dir


def test_confirm_refuses_a_run_without_a_test_split_or_with_bad_arguments(tmp_path, capsys):
    config = config_from_dict({**FAST, "search": TOY_SEARCH})
    RunStore.create(tmp_path / "run", config.to_dict()).close()
    with pytest.raises(ValueError, match=r"no test split to confirm on; expected --set data.test_fraction="):
        confirm(tmp_path / "run", 1, 2, 2.0)
    assert main(["confirm", str(tmp_path / "run"), "-k", "1"]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "data.test_fraction" in err
    assert main(["confirm", str(tmp_path / "run"), "--against", str(tmp_path / "run")]) == 2    # before training
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "no confirmation stored there, expected a run confirmed first" in err
    assert main(["confirm", str(tmp_path / "run"), "--reuse", str(tmp_path / "nowhere")]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "no run in" in err and "nowhere" in err
    with pytest.raises(ValueError, match="budget multiplier: found 0"):
        confirm(tmp_path / "run", 1, 2, 0.0)
    with pytest.raises(ValueError, match="no run in"):
        confirm(tmp_path / "elsewhere", 1, 2, 1.0)
    with RunStore.open(tmp_path / "run") as store:
        assert store.confirmations() == []


@pytest.mark.slow
def test_confirm_retrains_top_and_seed_with_paired_seeds_and_reuses_the_store(tiny_run, tmp_path, capsys):
    shutil.copytree(tiny_run, tmp_path / "copy")                     # the same run, not confirmed yet
    args = ["confirm", str(tiny_run), "-k", "1", "--seeds", "2", "--budget-multiplier", "2",
            "--set", "data.test_fraction=0.05"]
    assert main(args) == 0
    text = capsys.readouterr().out
    with RunStore.open(tiny_run) as store:
        records = store.confirmations()
        seed_row, child = store.individual(1), store.individual(2)
    assert sorted((r.individual_id, r.training_seed) for r in records) == \
        [(1, SEED_OFFSET + 1), (1, SEED_OFFSET + 2), (2, SEED_OFFSET + 1), (2, SEED_OFFSET + 2)]
    assert {r.budget_multiplier for r in records} == {2.0} and len({r.setup for r in records}) == 1
    for r in records:
        assert r.status == "ok" and r.metrics["steps"] == 6 and r.curve[-1]["step"] == 6     # 2 x 3 steps
        assert r.validation_loss == r.metrics["validation_loss"] == r.curve[-1]["validation_loss"]
        assert [p["step"] for p in r.curve] == sorted({p["step"] for p in r.curve})
    assert "test split: data.test_fraction 0.05, set for confirm: the search trained on it, never ranked on it" \
        in text and "trainings: 4 run now, 0 reused" in text
    by_id = {r.individual_id: [] for r in records}
    for r in sorted(records, key=lambda r: r.training_seed):
        by_id[r.individual_id].append(r.validation_loss)
    lines = {line.split()[0]: line for line in text.splitlines() if line[:1].isdigit()}
    assert lines["1"].split()[:3] == ["1", "seed", f"{seed_row.fitness:.4f}"]
    assert f"{stats.mean(by_id[1]):.4f} ± {stats.confidence_half_width(by_id[1]):.4f}" in lines["1"]
    p_value = stats.paired_t_test(by_id[2], by_id[1])[1]
    assert lines["2"].split()[:3] == ["2", "top", f"{child.fitness:.4f}"] and lines["2"].rstrip().endswith(
        f"{p_value:.3f}" if p_value >= 0.001 else f"{p_value:.2g}")

    assert main([*args, "--against", str(tiny_run)]) == 0               # everything is stored: no training
    out = capsys.readouterr().out
    assert "trainings: 0 run now, 4 reused" in out
    assert f"best confirmed #2 of {tiny_run} against #2 of {tiny_run}: speedup 1.00" in out   # itself: no gain
    assert "difference +0.0000" in out and "(2 training seeds)" in out
    with RunStore.open(tiny_run) as store:
        assert len(store.confirmations()) == 4
        confirmation = stored_confirmation(store)
    assert confirmation.program(2).values == tuple(by_id[2])
    assert main(["top", str(tiny_run)]) == 0
    top = capsys.readouterr().out
    assert "confirmed" in top.splitlines()[0] and f"{stats.mean(by_id[2]):.4f} ±" in top
    assert main(["show", str(tiny_run), "2"]) == 0
    assert "confirmed (2x budget, 2 training seeds, test split data.test_fraction 0.05, set for confirm" in \
        capsys.readouterr().out
    json.dumps(dataclasses.asdict(confirmation))

    assert main([*args[:1], str(tmp_path / "copy"), *args[2:], "--reuse", str(tiny_run)]) == 0
    assert "trainings: 0 run now, 4 reused from the run store (4 copied from other runs)" in capsys.readouterr().out
    with RunStore.open(tmp_path / "copy") as store:
        assert stored_confirmation(store).programs == confirmation.programs
