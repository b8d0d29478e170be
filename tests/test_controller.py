import math
import os
import signal
import subprocess
import sys
import time

import pytest
import yaml

from conftest import FAST
from primer_search.config import config_from_dict
from primer_search.program.dna import DNA
from primer_search.program.dna_files import save_dna
from primer_search.search import hurdles
from primer_search.search.controller import Search, read_status
from primer_search.search.executors import InProcessExecutor
from primer_search.search.reports import status_text
from primer_search.search.store import RunStore
from test_training import exploding_dna

SEARCH = {"executor": "in_process", "num_individuals": 8, "population_size": 4, "tournament_size": 2,
          "max_in_flight": 2, "hurdles": 1, "hurdle_window": 10, "min_hurdle_steps": 0}


def _config(**search):
    return config_from_dict({**FAST, "search": {**SEARCH, **search}})


def _history(run_dir):
    with RunStore.open(run_dir) as store:
        rows = store.completed()
        return [(r.id, r.parent_id, r.mutation, r.canonical_hash, r.status, r.fitness) for r in rows]


def test_a_seeded_in_process_search_is_reproducible(tmp_path):
    statuses = []
    for name in ("a", "b"):
        search = Search.start(_config(), tmp_path / name)
        statuses.append(search.run())
        search.close()
    assert statuses[0].done == 8 and statuses[0].in_flight == 0
    assert _history(tmp_path / "a") == _history(tmp_path / "b")
    history = _history(tmp_path / "a")
    assert history[0][1] is None and all(parent is not None for _, parent, *_ in history[1:])
    assert all(status in ("ok", "stopped") or fitness is None for *_, status, fitness in history)
    assert {"fitness/individual", "quality/bits_per_byte", "cost/sampling_mflops_per_token",
            "savings/hurdle_stops"} <= _tensorboard_tags(tmp_path / "a" / "tensorboard")


def _tensorboard_tags(directory) -> set[str]:
    import tensorflow as tf
    from tensorflow.core.util import event_pb2

    tags = set()
    for path in directory.iterdir():
        for record in tf.data.TFRecordDataset(str(path)):
            tags.update(value.tag for value in event_pb2.Event.FromString(record.numpy()).summary.value)
    return tags


def test_a_repeated_program_trains_again_with_a_fresh_seed_then_reuses_the_mean(tmp_path):
    search = Search.start(_config(seeds=["transformer"] * 3, num_individuals=3, max_in_flight=1, reevaluations=1),
                          tmp_path / "run")
    status = search.run()
    population = {m.id: m.fitness for m in search.evolution.population}
    search.close()
    assert status.cache_hits == 1 and status.cache_hit_rate == pytest.approx(1 / 3)
    with RunStore.open(tmp_path / "run") as store:
        first, second, third = (store.individual(i) for i in (1, 2, 3))
    assert (first.training_seed, second.training_seed, third.training_seed) == (0, 1, None)
    assert (second.repeat_of, third.repeat_of, third.cached_from) == (1, 1, 1)
    own = [first.metrics["fitness"], second.metrics["fitness"]]
    assert own[0] != own[1]                                     # another initialization and data order
    mean = sum(own) / 2
    assert second.fitness == pytest.approx(mean) and third.fitness == pytest.approx(mean)
    assert set(population) == {1, 2, 3} and all(f == pytest.approx(mean) for f in population.values())
    replayed = Search.resume(tmp_path / "run")
    assert {m.id: m.fitness for m in replayed.evolution.population} == population
    replayed.close()


def test_a_diverging_program_is_recorded_and_the_search_goes_on(tmp_path):
    save_dna(exploding_dna(), tmp_path / "exploding.yaml")
    search = Search.start(_config(seeds=[str(tmp_path / "exploding.yaml"), "transformer"], num_individuals=5),
                          tmp_path / "run")
    status = search.run()
    search.close()
    assert status.done == 5 and status.by_status.get("diverged", 0) >= 1
    with RunStore.open(tmp_path / "run") as store:
        assert store.individual(1).status == "diverged" and "nan" in store.individual(1).metrics["error"]


def test_a_second_controller_is_refused(tmp_path):
    search = Search.start(_config(), tmp_path / "run")
    with pytest.raises(ValueError, match="in use"):
        Search.resume(tmp_path / "run")
    search.close()


@pytest.mark.slow
def test_killed_run_resumes_without_losing_or_repeating_anything(tmp_path):
    config_path = tmp_path / "search.yaml"
    config_path.write_text(yaml.safe_dump({**FAST, "search": {**SEARCH, "num_individuals": 10}}))
    run_dir = tmp_path / "run"
    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2"}
    controller = subprocess.Popen([sys.executable, "-m", "primer_search.cli.main", "run", str(config_path),
                                   "--run-dir", str(run_dir), "--progress-every", "0.5"], env=env,
                                  stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.time() + 120
    while time.time() < deadline:                      # kill it once a few results are committed
        time.sleep(0.5)
        if (run_dir / "run.sqlite").exists():
            with RunStore.open(run_dir) as store:
                if store.counts()["done"] >= 4:
                    break
    controller.send_signal(signal.SIGKILL)
    controller.wait()
    before = _history(run_dir)
    assert 4 <= len(before) < 10

    search = Search.resume(run_dir)
    status = search.run()
    population = [(m.id, m.fitness) for m in search.evolution.population]
    search.close()
    after = _history(run_dir)
    assert status.done == 10 and after[:len(before)] == before          # nothing lost or changed
    with RunStore.open(run_dir) as store:
        assert store.counts()["proposed"] == 10 and not store.pending()  # every proposal once, all finished
    replayed = Search.resume(run_dir)
    assert [(m.id, m.fitness) for m in replayed.evolution.population] == population
    replayed.close()


def test_progress_every_zero_reports_only_the_end(tmp_path):
    calls = []
    search = Search.start(_config(num_individuals=3), tmp_path / "run")
    search.run(on_progress=calls.append, progress_every=0)
    search.close()
    assert [status.done for status in calls] == [3]                  # no line per loop, one at the end


def test_status_reads_a_run_while_nobody_holds_it(tmp_path):
    search = Search.start(_config(num_individuals=3), tmp_path / "run")
    search.run()
    search.close()
    with RunStore.open(tmp_path / "run") as store:
        status = read_status(store)
        assert 0 < store.meta_get("search_seconds") < time.time() - store.meta_get("created_at")
    assert status.done == 3 and status.best is not None and "done 3/3" in status.line()
    with RunStore.open(tmp_path / "run", lock=True) as store:
        store.meta_set("search_seconds", 1800.0)          # rated by the time it searched, not since its creation
    with RunStore.open(tmp_path / "run") as store:
        assert read_status(store).evaluations_per_hour == pytest.approx(6.0)


@pytest.mark.slow
def test_tiny_config_runs_end_to_end_on_local_ray(tmp_path, ray_session, capsys):
    from primer_search.cli.main import main

    run_dir = tmp_path / "run"
    code = main(["run", "search_configs/tiny.yaml", "--run-dir", str(run_dir),
                 "--set", "search.num_individuals=4", "--set", "training.budget_kind=steps",
                 "--set", "training.budget=3", "--set", "training.warmup_steps=0", "--set", "search.min_hurdle_steps=0",
                 "--set", f"data.cache_dir={tmp_path / 'cache'}", "--progress-every", "5"])
    out = capsys.readouterr().out
    assert code == 0 and "individuals done    4 of 4 (0 in flight)" in out
    with RunStore.open(run_dir) as store:
        rows = store.completed()
        assert len(rows) == 4 and rows[0].status == "ok" and rows[0].parent_id is None
        assert all(row.worker and ":" in row.worker for row in rows if row.cached_from is None)
    assert (run_dir / "tensorboard").is_dir()


@pytest.mark.slow
def test_tiny_macro_config_searches_over_the_macro_options(tmp_path, capsys):
    from primer_search.cli.main import main

    run_dir = tmp_path / "run"
    code = main(["run", "search_configs/tiny_macro.yaml", "--run-dir", str(run_dir),
                 "--set", "search.num_individuals=8", "--set", "training.budget=2", "--set", "model.num_layers=2",
                 "--set", "data.batch_tokens=1024", "--set", "data.validation_tokens=2048",
                 "--set", "search.executor=in_process", "--set", "search.hurdles=0",
                 "--set", f"data.cache_dir={tmp_path / 'cache'}", "--progress-every", "0"])
    assert code == 0, capsys.readouterr().err
    with RunStore.open(run_dir) as store:
        rows = store.completed()
        assert len(rows) == 8 and all(row.status == "ok" for row in rows[:4])   # the seeds; a child may fail
        kinds = [row.metrics["architecture"] for row in rows]
        assert sorted(kinds[:4]) == ["calm", "megabyte", "token", "token"]
        assert all(row.metrics["fitness"] == pytest.approx(row.metrics["bits_per_byte"] + 0.05 * math.log2(
            row.metrics["sampling_flops_per_token"] / 1e6)) for row in rows if row.status == "ok")
        assert any(row.mutation == "macro" for row in rows[4:]), [row.mutation for row in rows]


def test_a_missing_seed_file_fails_before_the_run_exists(tmp_path):
    with pytest.raises(ValueError, match="no-such-seed.yaml"):
        Search.start(_config(seeds=[str(tmp_path / "no-such-seed.yaml")]), tmp_path / "run")
    assert not (tmp_path / "run" / "run.sqlite").exists()


def test_non_finite_fitness_never_enters_the_population():
    from primer_search.search.controller import fitness_of

    assert fitness_of({"status": "ok", "fitness": float("nan")}) is None
    assert fitness_of({"status": "ok", "fitness": 2.0}) == 2.0
    assert fitness_of({"status": "diverged", "fitness": 2.0}) is None


# -- the controller's logic on a simulated trial (no training: fast, deterministic) ------------------------

def fake_trial(payload, ask=None):
    """A deterministic stand-in for `run_trial`: the final fitness comes from the program's hash and the training
    seed; at each hurdle the value is a little higher, and the trial asks whether to go on."""
    from primer_search.program.graph import canonical_hash

    dna = DNA.from_dict(payload["dna"])
    final = 1 + int(canonical_hash(dna)[:6], 16) % 1000 / 1000 + 0.01 * payload["training_seed"]
    checkpoints = []
    for i, fraction in enumerate(payload["config"]["training"]["checkpoints"]):
        value = final + 0.5 * (1 - fraction)
        checkpoints.append({"fraction": fraction, "step": i + 1, "validation_loss": value, "bits_per_byte": value,
                            "train_seconds": 0.0})
        if ask is not None and not ask({"hurdle": i, "fraction": fraction, "value": value}):
            return {"status": "stopped", "fitness": value, "validation_loss": value, "bits_per_byte": value,
                    "checkpoints": checkpoints, "budget_fraction": fraction}
    return {"status": "ok", "fitness": final, "validation_loss": final, "bits_per_byte": final, "steps": 10,
            "train_seconds": 1.0, "checkpoints": checkpoints, "budget_fraction": 1.0}


class Killing(InProcessExecutor):
    """Runs trials in process and kills the controller after `after` completions (a trial boundary), or right
    after answering its `question`-th hurdle question (mid-trial, the verdict recorded)."""

    def __init__(self, answer, after=None, question=None):
        self.asked = 0

        def answer_then_die(trial_id, q):
            verdict = answer(trial_id, q)
            self.asked += 1
            if self.asked == question:
                raise KeyboardInterrupt
            return verdict

        super().__init__(answer=answer_then_die)
        self.after, self.completed = after, 0

    def wait(self, timeout=None):
        if self.after is not None and self.completed >= self.after:
            raise KeyboardInterrupt
        done = super().wait(timeout)
        self.completed += len(done)
        return done


SIMULATED = {"num_individuals": 14, "population_size": 5, "tournament_size": 2, "max_in_flight": 3,
             "hurdles": 2, "hurdle_window": 6, "reevaluations": 1}


def _simulated_config():
    base = {**FAST, "training": {**FAST["training"], "warmup_steps": 0}}
    return config_from_dict({**base, "search": {**SEARCH, **SIMULATED, "min_hurdle_steps": 0}})


def _everything(run_dir):
    with RunStore.open(run_dir) as store:
        rows = sorted(store.completed(), key=lambda r: r.id)
        return [(r.id, r.parent_id, r.mutation_detail, r.canonical_hash, r.training_seed, r.repeat_of, r.status,
                 r.fitness, r.cached_from, [(h.hurdle, h.fitness, h.passed, h.threshold) for h in r.hurdles])
                for r in rows]


def _simulate(run_dir, monkeypatch, kill_after=None, kill_at_question=None, config=None):
    monkeypatch.setattr("primer_search.search.controller.run_trial", fake_trial)
    search = Search.start(config or _simulated_config(), run_dir)
    try:
        search.run(executor=Killing(search.answer, kill_after, kill_at_question))
    except KeyboardInterrupt:
        pass
    search.close()
    while True:
        search = Search.resume(run_dir)
        try:
            status = search.run(executor=Killing(search.answer))
            return status
        finally:
            search.close()


def _thresholds_rebuilt(run_dir, config) -> list[float]:
    """Check that every recorded hurdle threshold is the median (or, with `search.hurdle_gain`, the steered quantile)
    of the records before it (trials in flight included) by trainings with the run's training seed, the last
    `hurdles.window_at` of them; the quantile of each threshold checked."""
    checked = []
    with RunStore.open(run_dir) as store:
        for hurdle in range(config.search.hurdles):
            rows = store._db.execute("SELECT h.fitness, h.threshold, h.passed, i.training_seed FROM hurdles h JOIN "
                                     "individuals i ON i.id = h.individual_id WHERE hurdle = ? ORDER BY h.rowid",
                                     (hurdle,)).fetchall()
            window = hurdles.window_at(hurdle, config.search.hurdle_window)
            for n, (_, threshold, _, _) in enumerate(rows):
                earlier = [f for f, _, _, seed in rows[:n] if seed == config.training.seed][-window:]
                verdicts = [bool(p) for _, limit, p, _ in rows[:n] if limit is not None]
                q = hurdles.quantile(sum(verdicts), len(verdicts), window, config.search.hurdle_gain)
                assert threshold == hurdles.threshold(earlier, q)
                checked += [q] if threshold is not None else []
    return checked


def test_children_are_proposed_at_once_and_thresholds_are_taken_on_arrival(tmp_path, monkeypatch):
    _simulate(tmp_path / "run", monkeypatch)
    with RunStore.open(tmp_path / "run") as store:
        seed = store.individual(1)
        assert [store.individual(i).parent_id for i in (2, 3)] == [1, 1]    # proposed beside the seed
        assert store.individual(3).proposed_at < seed.finished_at
        assert any(not h.passed for r in store.completed() for h in r.hurdles)
    assert len(_thresholds_rebuilt(tmp_path / "run", _simulated_config())) > 0


def test_killed_at_every_trial_boundary_the_run_resumes_to_the_same_result(tmp_path, monkeypatch):
    _simulate(tmp_path / "whole", monkeypatch)
    whole = _everything(tmp_path / "whole")
    assert len(whole) == SIMULATED["num_individuals"] and any(r[6] == "stopped" for r in whole)
    for after in range(1, SIMULATED["num_individuals"]):
        _simulate(tmp_path / f"killed{after}", monkeypatch, kill_after=after)
        assert _everything(tmp_path / f"killed{after}") == whole, after
    for question in range(1, 20, 3):                            # mid-trial, right after a recorded verdict
        _simulate(tmp_path / f"question{question}", monkeypatch, kill_at_question=question)
        assert _everything(tmp_path / f"question{question}") == whole, question


def test_steered_hurdles_take_their_quantile_on_arrival_and_resume_exactly(tmp_path, monkeypatch):
    config = _simulated_config().replace(search={"hurdle_gain": 2.0, "num_individuals": 24})
    _simulate(tmp_path / "whole", monkeypatch, config=config)
    quantiles = _thresholds_rebuilt(tmp_path / "whole", config)
    assert 0.5 in quantiles and any(q != 0.5 for q in quantiles)     # steered once verdicts accumulate
    whole = _everything(tmp_path / "whole")
    for after in (3, 9, 17):
        _simulate(tmp_path / f"killed{after}", monkeypatch, kill_after=after, config=config)
        assert _everything(tmp_path / f"killed{after}") == whole, after
    for question in (2, 9, 16):                                  # mid-trial: the recorded threshold is reused
        _simulate(tmp_path / f"question{question}", monkeypatch, kill_at_question=question, config=config)
        assert _everything(tmp_path / f"question{question}") == whole, question


def test_a_trial_killed_mid_way_is_held_to_its_recorded_thresholds(tmp_path, monkeypatch):
    monkeypatch.setattr("primer_search.search.controller.run_trial", fake_trial)
    search = Search.start(_simulated_config(), tmp_path / "run")
    seed = search.store.add_proposal(None, None, None, search.evolution.seeds[0].to_dict(), "h")
    individual = search.store.add_proposal(seed, "insert", None, search.evolution.seeds[0].to_dict(), "h2")
    for other in range(4):                                       # four records: a threshold exists
        search.store.record_hurdle(search.store.add_proposal(None, None, None, {}, f"o{other}", training_seed=0), 0,
                                   0.1, 2.0 + other, True)
    assert search.answer(individual, {"hurdle": 0, "fraction": 0.1, "value": 3.4}) is True   # median 3.5
    for other in range(4):                                       # later records would lower the median
        search.store.record_hurdle(search.store.add_proposal(None, None, None, {}, f"p{other}", training_seed=0), 0,
                                   0.1, 1.0, True)
    assert search.answer(individual, {"hurdle": 0, "fraction": 0.1, "value": 3.4}) is True   # re-run: same limit
    assert search.store.hurdle_decision(individual, 0).threshold == 3.5
    search.close()


def test_resume_refuses_keys_that_would_mix_measurements(tmp_path, monkeypatch):
    _simulate(tmp_path / "run", monkeypatch)
    for item in ("training.budget=8", "search.hurdles=1", "model.num_layers=2", "search.reevaluations=0"):
        expected = rf"--set '{item}': .* cannot change when resuming.*search.num_individuals"
        with pytest.raises(ValueError, match=expected):
            Search.resume(tmp_path / "run", [item])
    search = Search.resume(tmp_path / "run", ["search.num_individuals=16", "search.max_in_flight=1"])
    assert search.config.search.num_individuals == 16
    search.close()


def test_the_hill_climber_mutates_the_best_program_so_far(tmp_path, monkeypatch):
    monkeypatch.setattr("primer_search.search.controller.run_trial", fake_trial)
    search = Search.start(_simulated_config().replace(search={"mode": "hill_climb", "max_in_flight": 1}),
                          tmp_path / "run")
    search.run(executor=Killing(search.answer))
    search.close()
    with RunStore.open(tmp_path / "run") as store:
        rows = sorted(store.completed(), key=lambda r: r.id)
    program, fitness, checked = {}, {}, 0     # id -> its program's first id; program -> fitness (mean of repeats)
    for row in rows:
        if row.parent_id is not None and fitness:  # the parent holds the best fitness measured so far
            assert fitness[program[row.parent_id]] == min(fitness.values()), (row.id, row.parent_id, fitness)
            checked += 1
        program[row.id] = program.get(row.repeat_of, row.repeat_of) or row.id
        if row.fitness is not None:
            fitness[program[row.id]] = row.fitness
    assert checked == len(rows) - 1


def test_seeds_evaluated_several_times_calibrate_the_run(tmp_path, monkeypatch):
    monkeypatch.setattr("primer_search.search.controller.run_trial", fake_trial)
    config = _simulated_config().replace(search={"seed_evaluations": 3, "num_individuals": 8})
    search = Search.start(config, tmp_path / "run")
    status = search.run(executor=Killing(search.answer))
    search.close()
    with RunStore.open(tmp_path / "run") as store:
        seeds = store.individuals_without_parent()
        calibration = store.meta_get("calibration")
        children = [row for row in store.completed() if row.parent_id is not None]
    assert [(s.id, s.training_seed, s.repeat_of) for s in seeds] == [(1, 0, None), (2, 1, 1), (3, 2, 1)]
    spent = sum(row.metrics["budget_fraction"] for row in children if row.cached_from is None)
    assert 0 < spent < len(children) and status.compute_factor < len(children) / spent   # calibration costs
    assert status.children_factor == (pytest.approx(len(children) / spent), 5, 3)
    assert "over the 5 children, the seed's 3 evaluations aside" in status_text(status)
    reached = [sum(len(row.hurdles) > h for row in children if row.cached_from is None) for h in range(2)]
    passed = [sum(len(row.hurdles) > h and row.hurdles[h].passed for row in children if row.cached_from is None)
              for h in range(2)]
    assert status.hurdle_passes == tuple(zip(reached, passed)) and reached[0] > passed[0] > 0
    assert all(s.status == "ok" for s in seeds)                  # a seed is never stopped at a hurdle
    finals = [s.metrics["fitness"] for s in seeds]
    assert seeds[-1].fitness == pytest.approx(sum(finals) / 3)     # the mean, which member 1 carried
    assert calibration["training_seeds"] == [0, 1, 2] and calibration["programs"][0]["final"]["runs"] == 3
    assert status.noise is not None and status.noise[1] == 3 and "noise" in status.line()


def test_a_calibration_lost_to_a_kill_after_the_last_seed_result_is_stored_on_resume(tmp_path, monkeypatch):
    monkeypatch.setattr("primer_search.search.controller.run_trial", fake_trial)
    search = Search.start(_simulated_config().replace(search={"seed_evaluations": 3, "num_individuals": 5}),
                          tmp_path / "run")
    search.run(executor=Killing(search.answer))
    calibration = search.store.meta_get("calibration")
    with search.store.transaction():                      # killed between the two commits
        search.store._db.execute("DELETE FROM meta WHERE key = 'calibration'")
    search.close()
    Search.resume(tmp_path / "run").close()
    with RunStore.open(tmp_path / "run") as store:
        assert calibration is not None and store.meta_get("calibration") == calibration


def test_a_trial_that_died_without_reporting_counts_as_a_whole_budget_spent():
    from types import SimpleNamespace

    from primer_search.search.status import _spent

    def row(status, **metrics):
        return SimpleNamespace(status=status, cached_from=None, attempts=1, metrics={"status": status, **metrics})
    rows = [row("stopped", budget_fraction=0.25), row("invalid", budget_fraction=0.0),
            row("timeout", error="timeout: no result after 1500 s"), row("oom", error="oom: killed")]
    assert _spent(rows) == 2.25


def test_the_summary_counts_failed_children_as_spent_not_as_saved(tmp_path, monkeypatch):
    """Invalid and quickly diverging children cost almost nothing: the factor over the children that trained
    counts their compute but not them."""
    from primer_search.program.graph import canonical_hash

    seed = []                                              # the first trial is the seed's evaluation

    def failing_trial(payload, ask=None):
        program = canonical_hash(DNA.from_dict(payload["dna"]))
        seed[:] = seed or [program]
        if program != seed[0] and int(program[:6], 16) % 3 == 0:
            return {"status": "diverged", "error": "loss is nan", "budget_fraction": 0.125}
        return fake_trial(payload, ask)

    monkeypatch.setattr("primer_search.search.controller.run_trial", failing_trial)
    search = Search.start(_simulated_config().replace(search={"num_individuals": 24}), tmp_path / "run")
    status = search.run(executor=Killing(search.answer))
    search.close()
    with RunStore.open(tmp_path / "run") as store:
        children = [row for row in store.completed() if row.parent_id is not None]
    trained = [row for row in children if row.status in ("ok", "stopped")]
    spent = sum(row.metrics["budget_fraction"] for row in children if row.cached_from is None)
    assert 0 < len(trained) < len(children)
    assert status.trained_factor == (pytest.approx(len(trained) / spent), len(trained))
    assert status.trained_factor[0] < status.children_factor[0]
    assert f"over the {len(trained)} children that trained" in status_text(status)


def test_hurdle_thresholds_count_only_trainings_with_the_runs_training_seed(tmp_path, monkeypatch):
    """Under common random numbers every child trains with `training.seed`: the calibration runs and re-evaluations
    (other seeds) are judged at hurdles but do not set the thresholds."""
    monkeypatch.setattr("primer_search.search.controller.run_trial", fake_trial)
    config = _simulated_config().replace(search={"seed_evaluations": 3})
    search = Search.start(config, tmp_path / "run")
    search.run(executor=Killing(search.answer))
    search.close()
    assert len(_thresholds_rebuilt(tmp_path / "run", config)) >= 3
    with RunStore.open(tmp_path / "run") as store:
        assert any(row.training_seed != config.training.seed for row in store.completed() if row.hurdles)


def test_the_status_counts_programs_better_than_the_seed_beyond_the_noise(tmp_path, monkeypatch):
    from primer_search.search.calibration import promotion_margin

    monkeypatch.setattr("primer_search.search.controller.run_trial", fake_trial)
    search = Search.start(_simulated_config().replace(search={"seed_evaluations": 3}), tmp_path / "run")
    status = search.run(executor=Killing(search.answer))
    search.close()
    with RunStore.open(tmp_path / "run") as store:
        final = store.meta_get("calibration")["programs"][0]["final"]
        latest = {}
        for row in store.completed():
            if row.parent_id is not None and row.status == "ok":
                n, _ = latest.get(row.repeat_of or row.id, (0, None))
                latest[row.repeat_of or row.id] = (n + (row.cached_from is None), row.fitness)
    expected = sum(1 for n, mean in latest.values()
                   if n and mean < final["mean"] - promotion_margin(final["std"], final["runs"], n))
    assert status.improvements == expected and f"better than the seed {expected}" in status.line()
    assert status.compared == sum(1 for n, _ in latest.values() if n)


def test_programs_are_compared_with_the_seeds_fitness_not_its_bare_metric():
    """Under `objective: inference` fitness adds a cost term the calibration (of the metric) leaves out."""
    from types import SimpleNamespace

    from primer_search.search.calibration import promotion_margin
    from primer_search.search.status import _improvements

    def row(id_, parent, fitness, cost):
        return SimpleNamespace(id=id_, parent_id=parent, status="ok", fitness=fitness, repeat_of=None,
                               cached_from=None, metrics={"validation_loss": fitness - cost})
    final, margin = {"mean": 4.0, "std": 0.01, "runs": 8}, promotion_margin(0.01, 8)
    rows = [row(1, None, 4.1, 0.1), row(2, 1, 4.1 - margin - 1e-3, 0.1), row(3, 1, 4.1 - margin + 1e-3, 0.2)]
    assert _improvements(rows, final, "validation_loss") == (1, 2)


@pytest.mark.slow
def test_discovery_config_runs_at_toy_scale(tmp_path, capsys):
    # Without XLA, which halves the test's time; the trainer under XLA is tests/test_training.py's.
    from primer_search.cli.main import main

    run_dir = tmp_path / "run"
    code = main(["run", "search_configs/discovery.yaml", "--run-dir", str(run_dir),
                 "--set", "search.num_individuals=5", "--set", "search.seed_evaluations=2",
                 "--set", "training.budget_kind=steps", "--set", "training.budget=4", "--set", "training.warmup_steps=0",
                 "--set", "search.hurdles=0", "--set", "search.executor=in_process",
                 "--set", "data.tokenizer_sample_bytes=100000", "--set", "data.validation_tokens=512",
                 "--set", "training.jit_compile=false",
                 "--set", f"data.cache_dir={tmp_path / 'cache'}", "--progress-every", "0"])
    assert code == 0, capsys.readouterr().err
    with RunStore.open(run_dir) as store:
        rows = store.completed()
        assert len(rows) == 5 and rows[0].status == "ok" and store.meta_get("calibration") is not None
