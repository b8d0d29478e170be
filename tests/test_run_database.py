"""The run database: creating and opening a run, the one-controller lock, transactions, kills, migration."""

import contextlib
import os
import signal
import socket
import sqlite3
import subprocess
import sys
import textwrap

import pytest

from conftest import STORE_CONFIG as CONFIG, metrics, propose
from primer_search.search.run_database import RunInUse
from primer_search.search.store import RunStore


def test_create_stores_the_config_and_refuses_an_existing_run(tmp_path):
    run_dir = tmp_path / "new" / "run"
    RunStore.create(run_dir, CONFIG).close()
    assert sorted(p.name for p in run_dir.iterdir()) == ["controller.lock", "run.sqlite"]
    with pytest.raises(ValueError, match=r"already holds a run .*use `primer-search resume .*run`"):
        RunStore.create(run_dir, CONFIG)
    with RunStore.open(run_dir) as store:
        assert store.config == CONFIG and store.meta_get("format_version") == 2
        assert store.meta_get("created_at") > 0 and store.rng_state() is None and not store.locked
    with contextlib.closing(sqlite3.connect(run_dir / "run.sqlite")) as db:
        assert db.execute("PRAGMA journal_mode").fetchone() == ("wal",)    # persistent in the file


def test_the_store_file_appears_only_whole(tmp_path, monkeypatch):
    run_dir, seen = tmp_path / "run", []
    run_dir.mkdir()
    (run_dir / "run.sqlite.new").write_text("left by a controller killed while creating")
    put = RunStore._meta_put

    def watch(self, key, value):                    # a reader polling for run.sqlite finds nothing until it is whole
        seen.append((run_dir / "run.sqlite").exists())
        put(self, key, value)

    monkeypatch.setattr(RunStore, "_meta_put", watch)
    RunStore.create(run_dir, CONFIG).close()
    assert seen == [False, False, False]
    assert sorted(p.name for p in run_dir.iterdir()) == ["controller.lock", "run.sqlite"]
    with RunStore.open(run_dir) as store:
        assert store.config == CONFIG


def test_a_config_json_cannot_hold_leaves_no_run_behind(tmp_path):
    with pytest.raises(TypeError, match="not JSON serializable"):
        RunStore.create(tmp_path / "run", {"data": {"path": tmp_path}})
    assert not (tmp_path / "run" / "run.sqlite").exists()
    RunStore.create(tmp_path / "run", CONFIG).close()


def test_open_refuses_a_directory_without_a_run_or_with_another_file(tmp_path):
    with pytest.raises(ValueError, match=r"no run in .*nothere: expected run.sqlite there"):
        RunStore.open(tmp_path / "nothere")
    (tmp_path / "run.sqlite").write_text("not a database, just text" * 100)
    with pytest.raises(ValueError, match=r"run.sqlite is not a primer-search run store"):
        RunStore.open(tmp_path)


def test_a_second_controller_is_refused_naming_the_holder(store):
    with pytest.raises(RunInUse, match=rf"in use by another controller \({os.getpid()}@{socket.gethostname()}\)"):
        RunStore.open(store.run_dir, lock=True)    # another open file description of the lock file: flock conflicts
    assert issubclass(RunInUse, ValueError)
    with RunStore.open(store.run_dir) as reader:   # readers need no lock, and cannot write
        assert reader.counts()["proposed"] == 0
        propose(store, 2)
        assert reader.counts()["proposed"] == 2       # sees the controller's commits while it runs
        with pytest.raises(ValueError, match="opened for reading: writing needs the controller lock"):
            propose(reader, 1)
    store.close()
    with RunStore.open(store.run_dir, lock=True) as second:
        assert second.locked


def test_a_transaction_is_all_or_nothing(store):
    with pytest.raises(RuntimeError, match="boom"), store.transaction():
        propose(store, 2)
        store.meta_set("note", "half")
        raise RuntimeError("boom")
    assert store.counts()["proposed"] == 0 and store.meta_get("note") is None
    with store.transaction():
        propose(store, 2)
    assert store.counts()["proposed"] == 2


CHILD = textwrap.dedent("""
    import random, sys, time
    from primer_search.search.store import RunStore
    store = RunStore.create(sys.argv[1], {"search": {"seed": 7}})
    rng = random.Random(7)
    ids = []
    for i in range(4):
        rng.random()
        ids.append(store.add_proposal(ids[-1] if ids else None, "mutate", None, {"n": i}, f"h{i}",
                                      rng_state=rng.getstate()))
    store.record_hurdle(ids[2], 0, 0.1, 3.5, True)
    store.record_result(ids[2], "ok", 3.0, {"fitness": 3.0})
    store.record_result(ids[0], "invalid", None, {"error": "bad"})
    print(repr(rng.getstate()), flush=True)
    with store.transaction():           # killed inside: none of this is stored
        rng.random()
        store.add_proposal(ids[3], "mutate", None, {"n": 9}, "h9", rng_state=rng.getstate())
        store.record_result(ids[1], "ok", 2.0, {"fitness": 2.0})
        print("in transaction", flush=True)
        time.sleep(60)
""")


def test_a_killed_controller_loses_nothing_committed_and_frees_the_lock(tmp_path):
    run_dir = tmp_path / "run"
    child = subprocess.Popen([sys.executable, "-c", CHILD, str(run_dir)], stdout=subprocess.PIPE, text=True,
                             env={**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)})
    try:
        committed_state = child.stdout.readline()
        assert child.stdout.readline() == "in transaction\n"
        with pytest.raises(RunInUse, match=rf"\({child.pid}@"):
            RunStore.open(run_dir, lock=True)
    finally:
        child.send_signal(signal.SIGKILL)
        child.wait()
        child.stdout.close()
    assert child.returncode == -signal.SIGKILL
    with RunStore.open(run_dir, lock=True) as store:           # the kernel released the dead holder's lock
        assert [(i.id, i.seq, i.status) for i in store.completed()] == [(3, 1, "ok"), (1, 2, "invalid")]
        assert store.individual(3).hurdles[0].fitness == 3.5
        assert [i.id for i in store.pending()] == [2, 4]         # re-submitted on resume
        assert [i.dna for i in store.pending()] == [{"n": 1}, {"n": 3}] and store.individual(4).parent_id == 3
        assert repr(store.rng_state()) == committed_state.strip()   # the state after the last stored proposal
        assert store.record_result(2, "ok", 2.0, {"fitness": 2.0}) == 3   # resume goes on: next seq, next id
        assert store.add_proposal(4, "mutate", None, {"n": 5}, "h5") == 5


def test_a_format_1_store_is_migrated_on_open(tmp_path):
    """Format 1 had no training seeds, program groups or hurdle thresholds."""
    import sqlite3

    with RunStore.create(tmp_path, CONFIG) as store:
        a, b = propose(store, 2)
        store.record_result(a, "ok", 3.0, metrics(fitness=3.0))
        store.record_result(b, "ok", 3.0, metrics(fitness=3.0), cached_from=a)
        store.record_hurdle(a, 0, 0.1, 4.0, True)
    db = sqlite3.connect(tmp_path / "run.sqlite")
    for table, column in (("individuals", "training_seed"), ("individuals", "repeat_of"), ("hurdles", "threshold")):
        db.execute(f"ALTER TABLE {table} DROP COLUMN {column}")
    db.execute("UPDATE meta SET value = '1' WHERE key = 'format_version'")
    db.commit()
    db.close()
    with RunStore.open(tmp_path) as store:
        assert store.meta_get("format_version") == 2
        assert [(p.training_seed, p.repeat_of) for p in store.proposals()] == [(0, None),
                                                                             (None, a)]
        assert store.hurdle_decision(a, 0).threshold is None
