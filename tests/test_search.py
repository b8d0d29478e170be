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
from primer_search.dna import save_dna
from primer_search.search import Search, read_status
from primer_search.store import RunStore
from test_training import exploding_dna

SEARCH = {"executor": "in_process", "num_individuals": 8, "population_size": 4, "tournament_size": 2,
          "max_in_flight": 2, "hurdles": 1, "hurdle_window": 10}


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


def test_identical_programs_reuse_the_result(tmp_path):
    search = Search.start(_config(seeds=["transformer", "transformer"], num_individuals=2, max_in_flight=1),
                          tmp_path / "run")
    status = search.run()
    search.close()
    assert status.cache_hits == 1
    with RunStore.open(tmp_path / "run") as store:
        assert store.individual(2).cached_from == 1 and store.individual(2).fitness == store.individual(1).fitness


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
    controller = subprocess.Popen([sys.executable, "-m", "primer_search.cli", "run", str(config_path),
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


def test_status_reads_a_run_while_nobody_holds_it(tmp_path):
    search = Search.start(_config(num_individuals=3), tmp_path / "run")
    search.run()
    search.close()
    with RunStore.open(tmp_path / "run") as store:
        status = read_status(store)
    assert status.done == 3 and status.best is not None and "done 3/3" in status.line()


@pytest.mark.slow
def test_tiny_config_runs_end_to_end_on_local_ray(tmp_path, ray_session, capsys):
    from primer_search.cli import main

    run_dir = tmp_path / "run"
    code = main(["run", "search_configs/tiny.yaml", "--run-dir", str(run_dir),
                 "--set", "search.num_individuals=4", "--set", "training.budget=3",
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
    from primer_search.cli import main

    run_dir = tmp_path / "run"
    code = main(["run", "search_configs/tiny_macro.yaml", "--run-dir", str(run_dir),
                 "--set", "search.num_individuals=8", "--set", "training.budget=2", "--set", "model.num_layers=2",
                 "--set", "search.executor=in_process", "--set", "search.hurdles=0",
                 "--set", f"data.cache_dir={tmp_path / 'cache'}", "--progress-every", "0"])
    assert code == 0, capsys.readouterr().err
    with RunStore.open(run_dir) as store:
        rows = store.completed()
        assert len(rows) == 8 and all(row.status == "ok" for row in rows)
        kinds = [row.metrics["architecture"] for row in rows]
        assert sorted(kinds[:4]) == ["calm", "megabyte", "token", "token"]     # the four seeds
        assert all(row.fitness == pytest.approx(row.metrics["bits_per_byte"] + 0.05 * math.log2(
            row.metrics["sampling_flops_per_token"] / 1e6)) for row in rows)
        assert any(row.mutation == "macro" for row in rows[4:]) or len({row.canonical_hash for row in rows}) == 8


def test_a_missing_seed_file_fails_before_the_run_exists(tmp_path):
    with pytest.raises(ValueError, match="no-such-seed.yaml"):
        Search.start(_config(seeds=[str(tmp_path / "no-such-seed.yaml")]), tmp_path / "run")
    assert not (tmp_path / "run" / "run.sqlite").exists()


def test_non_finite_fitness_never_enters_the_population():
    from primer_search.search import fitness_of

    assert fitness_of({"status": "ok", "fitness": float("nan")}) is None
    assert fitness_of({"status": "ok", "fitness": 2.0}) == 2.0
    assert fitness_of({"status": "diverged", "fitness": 2.0}) is None
