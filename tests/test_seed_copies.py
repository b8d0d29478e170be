import pytest

from primer_search.search.controller import Search
from primer_search.search.reports import describe_individual, status_text
from primer_search.search.status import read_status
from primer_search.search.store import RunStore
from test_controller import Killing, _simulated_config, fake_trial

CALIBRATED = {"seed_evaluations": 3, "num_individuals": 10}


def _search(run_dir, monkeypatch, config=None, reuse=(), kill_after=None):
    """Run (or resume) a simulated search to the end, or until `kill_after` completions; the trials it trained."""
    trained = []

    def counting_trial(payload, ask=None):
        trained.append(payload["training_seed"])
        return fake_trial(payload, ask)

    monkeypatch.setattr("primer_search.search.controller.run_trial", counting_trial)
    exists = (run_dir / "run.sqlite").exists()
    search = (Search.resume(run_dir) if exists else
              Search.start(config or _simulated_config().replace(search=CALIBRATED), run_dir, reuse=reuse))
    try:
        search.run(executor=Killing(search.answer, kill_after))
    except KeyboardInterrupt:
        pass
    finally:
        search.close()
    return trained


def _seeds(run_dir):
    with RunStore.open(run_dir) as store:
        return store.individuals_without_parent(), store.meta_get("calibration")


def _measured(rows):
    return [(r.canonical_hash, r.training_seed, r.status, r.metrics,
             [(h.hurdle, h.fraction, h.fitness, h.passed) for h in r.hurdles]) for r in rows]


def test_a_run_copies_the_seed_evaluations_of_a_run_of_the_same_setup(tmp_path, monkeypatch):
    _search(tmp_path / "first", monkeypatch)
    trained = _search(tmp_path / "second", monkeypatch, reuse=[tmp_path / "first"])
    (first, calibration), (second, copied_calibration) = _seeds(tmp_path / "first"), _seeds(tmp_path / "second")
    assert _measured(second) == _measured(first) and len(second) == 3
    assert [(r.attempts, r.worker) for r in second] == [(0, f"copy of {tmp_path / 'first'} #{r.id}") for r in first]
    assert copied_calibration == calibration
    with RunStore.open(tmp_path / "second") as store:
        status = read_status(store)
        children = [r for r in store.completed() if r.parent_id is not None]
    assert len(trained) == sum(r.cached_from is None for r in children)       # the children alone trained
    spent = sum(r.metrics["budget_fraction"] for r in children if r.cached_from is None)
    assert status.copied == 3 and status.compute_factor == pytest.approx(status.done / spent)
    assert "3 of the seed's evaluations copied from other runs" in status_text(status)
    with RunStore.open(tmp_path / "second") as store:
        assert describe_individual(store, 2).startswith(f"individual 2: status ok, fitness {second[1].fitness}, "
                                                        f"copy of {tmp_path / 'first'} #2\n")


def test_a_run_of_another_setup_is_refused_before_the_run_exists(tmp_path, monkeypatch):
    _search(tmp_path / "first", monkeypatch)
    other = _simulated_config().replace(search={**CALIBRATED, "hurdles": 3}, training={"budget": 8})
    with pytest.raises(ValueError, match=r"--reuse .*first: its evaluations were measured with other model, data and "
                                         r"training; search.hurdles; expected a run of the same setup"):
        Search.start(other, tmp_path / "second", reuse=[tmp_path / "first"])
    with pytest.raises(ValueError, match="no run in"):
        Search.start(_simulated_config(), tmp_path / "second", reuse=[tmp_path / "nothing"])
    assert not (tmp_path / "second").exists()


def test_a_copying_run_killed_at_every_boundary_resumes_to_the_same_result(tmp_path, monkeypatch):
    _search(tmp_path / "first", monkeypatch)
    _search(tmp_path / "whole", monkeypatch, reuse=[tmp_path / "first"])
    with RunStore.open(tmp_path / "whole") as store:
        whole = _measured(sorted(store.completed(), key=lambda r: r.id))
    for after in (1, 4, 7):
        run_dir = tmp_path / f"killed{after}"
        _search(run_dir, monkeypatch, reuse=[tmp_path / "first"], kill_after=after)
        _search(run_dir, monkeypatch)
        with RunStore.open(run_dir) as store:
            assert _measured(sorted(store.completed(), key=lambda r: r.id)) == whole, after


def test_a_source_run_moved_away_means_training_the_seed_again(tmp_path, monkeypatch):
    _search(tmp_path / "first", monkeypatch)
    config = _simulated_config().replace(search=CALIBRATED)
    search = Search.start(config, tmp_path / "second", reuse=[tmp_path / "first"])
    search.close()
    (tmp_path / "first").rename(tmp_path / "moved")
    trained = _search(tmp_path / "second", monkeypatch)
    second, _ = _seeds(tmp_path / "second")
    first, _ = _seeds(tmp_path / "moved")
    assert trained[:3] == [0, 1, 2] and [r.attempts for r in second] == [1, 1, 1]
    assert _measured(second) == _measured(first)                  # the same results, trained again
