"""The run store: one SQLite database in the run directory, the single source of truth of a search.

Every event is committed when it happens: a proposal (with the controller's random state after drawing it), a
hurdle result, a final result. `resume` rebuilds everything from here: the population from `completed()` in
completion order, the counters from `counts()`, the random state from `rng_state()`, and re-submits `pending()`
(proposals in flight at the crash). Nothing evaluated is lost and nothing counts twice: a result is recorded once
per individual (`AlreadyRecorded` otherwise) and numbered by `seq` in completion order.

Files in RUN_DIR:
    run.sqlite          the store (with run.sqlite-wal and run.sqlite-shm next to it while in use)
    controller.lock     flock'ed by the one controller writing the run; holds its pid@host

Schema (JSON columns hold `json.dumps` text; NaN and infinities round-trip through Python's json):
    meta(key TEXT PRIMARY KEY, value TEXT)       JSON values: format_version, config (the resolved config dict),
                                                 created_at (Unix seconds), rng_state (random.Random.getstate())
    individuals(id INTEGER PRIMARY KEY,          1, 2, 3... in proposal order
                parent_id INTEGER NULL,          None for seeds
                mutation TEXT NULL, mutation_detail TEXT NULL (JSON),
                dna TEXT (JSON of DNA.to_dict()), canonical_hash TEXT, fingerprint TEXT NULL (JSON, see fec),
                proposed_at REAL,
                training_seed INTEGER NULL,      the seed it is trained with (NULL: reuses a result, no training)
                repeat_of INTEGER NULL)          the first individual of the same program, when this one is a
                                                 re-evaluation or a cache hit of it
    hurdles(individual_id, hurdle INTEGER, fraction REAL, fitness REAL NULL, passed INTEGER, recorded_at REAL,
            threshold REAL NULL,             the limit it was held to (NULL: too few records, everyone passes)
            PRIMARY KEY (individual_id, hurdle))     rowid order = decision order (a trial's verdict is recorded
                                                     the moment it reaches the hurdle)
    results(individual_id INTEGER PRIMARY KEY,
            seq INTEGER UNIQUE,                  completion order 1, 2, 3... (dense: never deleted)
            status TEXT, fitness REAL NULL,      a NaN fitness is stored as NULL
            metrics TEXT (JSON of FitnessResult.to_dict()), worker TEXT NULL, attempts INTEGER,
            cached_from INTEGER NULL,            the individual whose result a cache hit reused
            started_at REAL NULL, finished_at REAL)
    indexes: individuals(canonical_hash), hurdles(hurdle); results(seq) by UNIQUE

Durability: WAL journal with synchronous=FULL, so the WAL is fsynced at every commit and a committed event
survives a SIGKILL of the controller and also an OS crash or power loss (NORMAL would survive a killed process but
could lose the last commits on power loss). It costs one fsync per event, a few milliseconds against evaluations
that take seconds to hours; `transaction()` groups events into one commit where that matters (bulk imports).

Concurrency: one controller writes a run. `lock()` (taken by `create`, and by `open(run_dir, lock=True)`) takes an
exclusive non-blocking flock on controller.lock; a second controller gets `RunInUse` naming the holder. The kernel
releases the lock when the holder dies, however it dies. Writes without the lock are refused. Readers (status, top,
show) open without the lock and read while the controller runs (WAL: readers and the writer do not block each
other). Keep RUN_DIR on a local filesystem: WAL's shared memory needs every reader on the controller's host, and
flock over a network filesystem is only as good as its lock support. A RunStore is for one thread.

This module imports no TensorFlow: sqlite3, json and the standard library only.
"""

from __future__ import annotations

import contextlib
import dataclasses
import fcntl
import functools
import heapq
import json
import math
import os
import pathlib
import shutil
import socket
import sqlite3
import time
from collections.abc import Iterator
from typing import Any

FORMAT_VERSION = 2
STORE_FILE = "run.sqlite"
LOCK_FILE = "controller.lock"
STATUSES = ("ok", "stopped", "invalid", "diverged", "oom", "timeout", "error")   # of primer_search.lm.fitness
MEASURED = ("ok", "stopped")                   # the statuses whose result carries a fitness
# Measurements of the program itself, reusable by the cache. timeout, oom and error depend on the machine, the
# load and the infrastructure: a later equivalent program is evaluated again.
REUSABLE_STATUSES = ("ok", "stopped", "invalid", "diverged")

SCHEMA = """
CREATE TABLE meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE individuals (
    id INTEGER PRIMARY KEY,
    parent_id INTEGER REFERENCES individuals(id),
    mutation TEXT,
    mutation_detail TEXT,
    dna TEXT NOT NULL,
    canonical_hash TEXT,
    fingerprint TEXT,
    proposed_at REAL NOT NULL,
    training_seed INTEGER,
    repeat_of INTEGER REFERENCES individuals(id));
CREATE TABLE hurdles (
    individual_id INTEGER NOT NULL REFERENCES individuals(id),
    hurdle INTEGER NOT NULL,
    fraction REAL NOT NULL,
    fitness REAL,
    passed INTEGER NOT NULL,
    recorded_at REAL NOT NULL,
    threshold REAL,
    PRIMARY KEY (individual_id, hurdle));
CREATE TABLE results (
    individual_id INTEGER PRIMARY KEY REFERENCES individuals(id),
    seq INTEGER NOT NULL UNIQUE,
    status TEXT NOT NULL,
    fitness REAL,
    metrics TEXT NOT NULL,
    worker TEXT,
    attempts INTEGER NOT NULL,
    cached_from INTEGER REFERENCES individuals(id),
    started_at REAL,
    finished_at REAL NOT NULL);
CREATE INDEX individuals_by_canonical_hash ON individuals(canonical_hash);
CREATE INDEX hurdles_by_hurdle ON hurdles(hurdle)
"""

_COLUMNS = ("i.id, i.parent_id, i.mutation, i.mutation_detail, i.dna, i.canonical_hash, i.fingerprint, "
            "i.proposed_at, i.training_seed, i.repeat_of, r.seq, r.status, r.fitness, r.metrics, r.worker, "
            "r.attempts, r.cached_from, r.started_at, r.finished_at")
_SELECT = f"SELECT {_COLUMNS} FROM individuals i LEFT JOIN results r ON r.individual_id = i.id"
_SELECT_DONE = f"SELECT {_COLUMNS} FROM results r JOIN individuals i ON i.id = r.individual_id"


class RunInUse(ValueError):
    """Another controller holds the run directory's lock."""


class AlreadyRecorded(ValueError):
    """A second result for an individual that has one: results are recorded once."""


@dataclasses.dataclass(frozen=True)
class HurdleRecord:
    hurdle: int                  # 0-based index of the hurdle
    fraction: float              # of the training budget
    fitness: float | None
    passed: bool
    recorded_at: float
    threshold: float | None = None   # the limit the verdict compared with (None: everyone passed)


@dataclasses.dataclass(frozen=True)
class Proposed:
    """A proposal's identity and plan (see `RunStore.proposals`)."""

    id: int
    parent_id: int | None
    canonical_hash: str | None
    fingerprint: str | None
    training_seed: int | None
    repeat_of: int | None


@dataclasses.dataclass(frozen=True)
class Individual:
    """A proposal and, once it has one, its result (the result fields are None while it is in flight)."""

    id: int
    parent_id: int | None
    mutation: str | None
    mutation_detail: Any
    dna_json: str = dataclasses.field(repr=False)   # decoded by `dna` on first use
    canonical_hash: str | None
    fingerprint: str | None
    proposed_at: float
    training_seed: int | None = None     # None: a cache hit, not trained
    repeat_of: int | None = None         # the program's first individual, for a re-evaluation or a cache hit
    seq: int | None = None               # completion order, 1, 2, 3...
    status: str | None = None
    fitness: float | None = None         # lower is better
    metrics: dict | None = None          # FitnessResult.to_dict()
    worker: str | None = None
    attempts: int | None = None
    cached_from: int | None = None       # a cache hit: the individual whose result this is
    started_at: float | None = None
    finished_at: float | None = None
    hurdles: tuple[HurdleRecord, ...] = ()   # in hurdle order

    @property
    def done(self) -> bool:
        return self.seq is not None

    @functools.cached_property
    def dna(self) -> dict:
        """DNA.to_dict() (primer_search.program.dna.from_dict rebuilds the DNA). Decoded lazily: it is most of the
        cost of reading a run, and a resume reads every result but needs the DNA of a population's worth."""
        return json.loads(self.dna_json)

    @property
    def measured_id(self) -> int:
        """The individual whose evaluation measured this one's result (itself unless a cache hit)."""
        return self.id if self.cached_from is None else self.cached_from


class RunStore:
    """The SQLite store of one run directory: `create` a run, `open` one to resume or read it."""

    def __init__(self, run_dir: pathlib.Path, db: sqlite3.Connection | None = None):
        """Use `RunStore.create` or `RunStore.open`."""
        self.run_dir = run_dir
        self.path = run_dir / STORE_FILE
        self._db = db
        self._lock_file = None

    # -- opening, locking, closing --------------------------------------------------------------------------

    @classmethod
    def create(cls, run_dir: str | os.PathLike, config: dict) -> RunStore:
        """Create the store of a new run in `run_dir` (made if missing), holding the controller lock."""
        _dumps(config)                      # a config JSON cannot hold fails here, before any file is made
        store = cls(pathlib.Path(run_dir))
        store._refuse_existing()
        made = not store.run_dir.exists()
        store.run_dir.mkdir(parents=True, exist_ok=True)
        store.lock()                        # before looking again: two controllers may race to create the same run
        if store.path.exists():
            store.close()
            store._refuse_existing()
        try:
            store._db = _connect(store.path)
            with store.transaction():
                for statement in SCHEMA.split(";"):
                    store._db.execute(statement)
                for key, value in (("format_version", FORMAT_VERSION), ("config", config),
                                   ("created_at", time.time())):
                    store._meta_put(key, value)
        except BaseException:
            store.close()
            for suffix in ("", "-wal", "-shm"):     # ours: it did not exist, and we held the lock
                pathlib.Path(f"{store.path}{suffix}").unlink(missing_ok=True)
            if made:
                shutil.rmtree(store.run_dir, ignore_errors=True)
            raise
        store._claim()
        return store

    def _refuse_existing(self) -> None:
        if self.path.exists():
            raise ValueError(f"{self.run_dir} already holds a run ({self.path}); "
                             f"use `primer-search resume {self.run_dir}` to go on with it")

    @classmethod
    def open(cls, run_dir: str | os.PathLike, *, lock: bool = False) -> RunStore:
        """Open an existing run: with `lock=True` to write it (resume), else to read it (status, top, show)."""
        store = cls(pathlib.Path(run_dir))
        if not store.path.is_file():
            raise ValueError(f"no run in {store.run_dir}: expected {STORE_FILE} there, written by a search")
        try:
            if lock:
                store.lock()
            store._connect_existing()
        except BaseException:
            store.close()
            raise
        if lock:
            store._claim()
        return store

    def _connect_existing(self) -> None:
        try:
            self._db = _connect(self.path)
            version = self.meta_get("format_version")
        except sqlite3.DatabaseError as err:
            raise ValueError(f"{self.path} is not a primer-search run store ({err})") from None
        if version == 1:
            self._migrate_from_1()
            version = FORMAT_VERSION
        if version != FORMAT_VERSION:
            raise ValueError(f"{self.path} has store format_version {version!r}; this primer-search reads "
                             f"format_version {FORMAT_VERSION}")

    def _migrate_from_1(self) -> None:
        """Format 1 had no training seeds, program groups or hurdle thresholds: add the columns. Every proposal was
        trained with the config's training seed, except cache hits, which repeat the individual they reused."""
        self._db.execute("BEGIN IMMEDIATE")
        try:
            self._db.execute("ALTER TABLE individuals ADD COLUMN training_seed INTEGER")
            self._db.execute("ALTER TABLE individuals ADD COLUMN repeat_of INTEGER REFERENCES individuals(id)")
            self._db.execute("ALTER TABLE hurdles ADD COLUMN threshold REAL")
            seed = (self.config.get("training") or {}).get("seed", 0)
            self._db.execute("UPDATE individuals SET repeat_of = (SELECT cached_from FROM results "
                             "WHERE individual_id = individuals.id)")
            self._db.execute("UPDATE individuals SET training_seed = ? WHERE repeat_of IS NULL", (seed,))
            self._meta_put("format_version", FORMAT_VERSION)
            self._db.execute("COMMIT")
        except BaseException:
            self._db.rollback()
            raise

    def lock(self) -> None:
        """Become the run's one controller: flock controller.lock, or raise `RunInUse` naming the holder. The
        holder's name is written once the command is accepted (`_claim`): a refused one leaves the file as it was."""
        if self._lock_file is not None:
            return
        path = self.run_dir / LOCK_FILE
        created = not path.exists()
        lock_file = open(path, "a+")   # no truncation before holding the lock
        try:
            fcntl.flock(lock_file, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            lock_file.seek(0)
            holder = lock_file.read().strip() or "unknown pid"
            lock_file.close()
            raise RunInUse(f"{self.run_dir} is in use by another controller ({holder}); stop it before resuming "
                           f"(reading the run needs no lock)") from None
        self._lock_file, self._lock_created, self._claimed = lock_file, created, False

    def _claim(self) -> None:
        """Write this controller's pid@host into the held lock file, for a second controller's error message."""
        self._lock_file.seek(0)
        self._lock_file.truncate()
        self._lock_file.write(f"{os.getpid()}@{socket.gethostname()}\n")
        self._lock_file.flush()
        self._claimed = True

    @property
    def locked(self) -> bool:
        return self._lock_file is not None

    def close(self) -> None:
        """Close the database and release the lock (idempotent)."""
        if self._db is not None:
            self._db.close()
            self._db = None
        if self._lock_file is not None:
            if self._lock_created and not self._claimed:      # refused: remove the file this command made
                (self.run_dir / LOCK_FILE).unlink(missing_ok=True)
            self._lock_file.close()         # closing the file releases the flock
            self._lock_file = None

    def __enter__(self) -> RunStore:
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"RunStore({str(self.run_dir)!r}, {'locked' if self.locked else 'read-only'})"

    # -- writing ------------------------------------------------------------------------------------------

    @contextlib.contextmanager
    def transaction(self) -> Iterator[None]:
        """Commit the events inside as one (all or none); nested uses join the outer transaction."""
        if not self.locked:
            raise ValueError(f"{self.run_dir} was opened for reading: writing needs the controller lock "
                             f"(RunStore.open(run_dir, lock=True))")
        if self._db.in_transaction:
            yield
            return
        self._db.execute("BEGIN IMMEDIATE")
        try:
            yield
            self._db.execute("COMMIT")
        except BaseException:
            if self._db.in_transaction:     # also when COMMIT itself failed (disk full)
                self._db.rollback()
            raise

    @contextlib.contextmanager
    def _snapshot(self) -> Iterator[None]:
        """Several reads that see one state while a controller writes (a WAL read transaction)."""
        if self._db.in_transaction:
            yield
            return
        self._db.execute("BEGIN")
        try:
            yield
        finally:
            self._db.execute("COMMIT")

    def add_proposal(self, parent_id: int | None, mutation: str | None, mutation_detail: Any, dna: dict,
                     canonical_hash: str | None, fingerprint: str | None = None, rng_state=None,
                     training_seed: int | None = None, repeat_of: int | None = None) -> int:
        """Store a proposal and return its id; `rng_state` (the controller's `random.Random.getstate()` after
        drawing it) is stored in the same commit, so after a crash it matches the last stored proposal."""
        if not isinstance(dna, dict):
            raise TypeError(f"dna must be a dict (DNA.to_dict()), got {type(dna).__name__}")
        with self.transaction():
            for other, what in ((parent_id, "parent_id"), (repeat_of, "repeat_of")):
                if other is not None:
                    self._require_individual(other, what)
            cursor = self._db.execute(
                "INSERT INTO individuals (parent_id, mutation, mutation_detail, dna, canonical_hash, fingerprint, "
                "proposed_at, training_seed, repeat_of) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
                (parent_id, mutation, _dumps_or_none(mutation_detail), _dumps(dna), canonical_hash, fingerprint,
                 time.time(), training_seed, repeat_of))
            if rng_state is not None:
                self._meta_put("rng_state", rng_state)
        return cursor.lastrowid

    def record_hurdle(self, individual_id: int, hurdle: int, fraction: float, fitness: float | None,
                      passed: bool, threshold: float | None = None) -> None:
        """Record a hurdle's verdict and the threshold it compared with. A trial run again (after a crash) updates
        its record in place: it keeps its place in the decision order."""
        with self.transaction():
            self._require_individual(individual_id)
            values = (fraction, _real(fitness), int(bool(passed)), time.time(), _real(threshold))
            updated = self._db.execute(
                "UPDATE hurdles SET fraction = ?, fitness = ?, passed = ?, recorded_at = ?, threshold = ? "
                "WHERE individual_id = ? AND hurdle = ?", (*values, individual_id, hurdle)).rowcount
            if not updated:
                self._db.execute("INSERT INTO hurdles (fraction, fitness, passed, recorded_at, threshold, "
                                 "individual_id, hurdle) VALUES (?, ?, ?, ?, ?, ?, ?)",
                                 (*values, individual_id, hurdle))

    def record_result(self, individual_id: int, status: str, fitness: float | None, metrics: dict,
                      worker: str | None = None, attempts: int = 1, cached_from: int | None = None,
                      started_at: float | None = None) -> int:
        """Record an individual's final result and return its `seq` (completion order); a second result for the
        same individual raises `AlreadyRecorded` and changes nothing."""
        if status not in STATUSES:
            raise ValueError(f"status {status!r} is not one of {', '.join(STATUSES)}")
        with self.transaction():
            self._require_individual(individual_id)
            if cached_from is not None:
                self._require_individual(cached_from, "cached_from")
            row = self._db.execute("SELECT seq FROM results WHERE individual_id = ?", (individual_id,)).fetchone()
            if row is not None:
                raise AlreadyRecorded(f"individual {individual_id} already has a result (seq {row[0]}) in "
                                      f"{self.run_dir}; a result is recorded once")
            seq = self._db.execute("SELECT COALESCE(MAX(seq), 0) + 1 FROM results").fetchone()[0]
            self._db.execute("INSERT INTO results VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                             (individual_id, seq, status, _real(fitness), _dumps(metrics), worker, attempts,
                              cached_from, started_at, time.time()))
        return seq

    def meta_set(self, key: str, value) -> None:
        """Store a JSON-able value under `key` (controller state, notes)."""
        with self.transaction():
            self._meta_put(key, value)

    def _meta_put(self, key: str, value) -> None:
        self._db.execute("INSERT OR REPLACE INTO meta VALUES (?, ?)", (key, _dumps(value)))

    def _require_individual(self, individual_id: int, what: str = "individual_id") -> None:
        if self._db.execute("SELECT 1 FROM individuals WHERE id = ?", (individual_id,)).fetchone() is None:
            raise ValueError(f"{what} {individual_id!r}: no such individual in {self.run_dir} "
                             f"(ids 1..{self.proposed_count()})")

    def proposed_count(self) -> int:
        """Individuals proposed so far (ids are 1..n, so the largest id; one cheap query)."""
        return self._db.execute("SELECT COALESCE(MAX(id), 0) FROM individuals").fetchone()[0]

    # -- reading ------------------------------------------------------------------------------------------

    def meta_get(self, key: str, default=None):
        row = self._db.execute("SELECT value FROM meta WHERE key = ?", (key,)).fetchone()
        return default if row is None else json.loads(row[0])

    @property
    def config(self) -> dict:
        """The resolved config dict the run was created with."""
        return self.meta_get("config")

    def rng_state(self) -> tuple | None:
        """The stored `random.Random.getstate()`, ready for `setstate` (JSON lists made tuples again)."""
        state = self.meta_get("rng_state")
        return None if state is None else _tuples(state)

    def individual(self, individual_id: int) -> Individual:
        """One individual with its result (if it has one) and hurdle records."""
        rows = self._db.execute(f"{_SELECT} WHERE i.id = ?", (individual_id,)).fetchall()
        if not rows:
            raise ValueError(f"no individual {individual_id!r} in {self.run_dir} (ids 1..{self.proposed_count()})")
        return self._individuals(rows)[0]

    def proposals(self) -> list[Proposed]:
        """Every proposal's identity and plan, in id order (no DNA or metrics: cheap for a whole run)."""
        return [Proposed(*row) for row in self._db.execute(
            "SELECT id, parent_id, canonical_hash, fingerprint, training_seed, repeat_of FROM individuals ORDER BY id")]

    def pending(self) -> list[Individual]:
        """Proposals without a result, in id order: those in flight at a crash, to re-submit on resume."""
        return self._individuals(self._db.execute(f"{_SELECT} WHERE r.individual_id IS NULL ORDER BY i.id"))

    def individuals_without_parent(self) -> list[Individual]:
        """The seeds, in id order."""
        return self._individuals(self._db.execute(f"{_SELECT} WHERE i.parent_id IS NULL ORDER BY i.id"))

    def completed(self, last: int | None = None) -> list[Individual]:
        """Individuals with a result in completion (seq) order; `last`: only the most recent `last` of them."""
        where = "" if last is None else "WHERE r.seq > (SELECT COALESCE(MAX(seq), 0) FROM results) - ?"
        rows = self._db.execute(f"{_SELECT_DONE} {where} ORDER BY r.seq", () if last is None else (last,))
        return self._individuals(rows)

    def hurdle_decision(self, individual_id: int, hurdle: int) -> HurdleRecord | None:
        """The verdict recorded for an individual at a hurdle, if any."""
        return next((h for h in self._hurdles([individual_id]).get(individual_id, ()) if h.hurdle == hurdle), None)

    def hurdle_records(self, hurdle: int, limit: int) -> list[float]:
        """The fitnesses of the most recent `limit` records at `hurdle` (NULL fitness left out), newest first."""
        rows = self._db.execute("SELECT fitness FROM hurdles WHERE hurdle = ? AND fitness IS NOT NULL "
                                "ORDER BY rowid DESC LIMIT ?", (hurdle, limit))
        return [fitness for (fitness,) in rows]

    def counts(self) -> dict:
        """{proposed, done, in_flight (proposed without a result), by_status {status: n}, cache_hits (results
        reused from an equivalent individual), hurdle_stops (hurdle records that did not pass: cache hits of
        stopped results are not among them)}."""
        with self._snapshot():
            proposed = self._db.execute("SELECT COUNT(*) FROM individuals").fetchone()[0]
            by_status = dict(self._db.execute("SELECT status, COUNT(*) FROM results GROUP BY status ORDER BY status"))
            cache_hits = self._db.execute("SELECT COUNT(*) FROM results WHERE cached_from IS NOT NULL").fetchone()[0]
            stops = self._db.execute("SELECT COUNT(*) FROM hurdles WHERE passed = 0").fetchone()[0]
        done = sum(by_status.values())
        return {"proposed": proposed, "done": done, "in_flight": proposed - done, "by_status": by_status,
                "cache_hits": cache_hits, "hurdle_stops": stops}

    def stopped_fractions(self) -> list[float]:
        """The budget fraction of every hurdle stop (records that did not pass), in recording order."""
        return [fraction for (fraction,) in
                self._db.execute("SELECT fraction FROM hurdles WHERE passed = 0 ORDER BY rowid")]

    def top(self, n: int = 10, metric: str = "fitness", statuses: tuple[str, ...] = ("ok",)) -> list[Individual]:
        """The best `n` completed individuals with one of `statuses`, lowest `metric` first: the `fitness`
        column, or a numeric key of the metrics (e.g. bits_per_byte); ties by seq."""
        marks = ", ".join("?" * len(statuses))
        if metric == "fitness":
            rows = self._db.execute(f"{_SELECT} WHERE r.status IN ({marks}) AND r.fitness IS NOT NULL "
                                    f"ORDER BY r.fitness, r.seq LIMIT ?", (*statuses, n))
            return self._individuals(rows)
        scored = []   # metrics may hold NaN, which SQLite's JSON functions refuse: rank in Python
        for seq, individual_id, text in self._db.execute(
                f"SELECT seq, individual_id, metrics FROM results WHERE status IN ({marks})", statuses):
            value = json.loads(text).get(metric)
            if isinstance(value, (int, float)) and not math.isnan(value):
                scored.append((value, seq, individual_id))
        return [self.individual(individual_id) for _, _, individual_id in heapq.nsmallest(n, scored)]

    def _individuals(self, rows) -> list[Individual]:
        rows = list(rows)
        hurdles = self._hurdles([row[0] for row in rows])
        return [_individual(row, tuple(hurdles.get(row[0], ()))) for row in rows]

    def _hurdles(self, ids: list[int]) -> dict[int, list[HurdleRecord]]:
        by_id: dict[int, list[HurdleRecord]] = {}
        if not ids:
            return by_id
        rows = self._db.execute("SELECT individual_id, hurdle, fraction, fitness, passed, recorded_at, threshold "
                                "FROM hurdles "
                                "WHERE individual_id IN (SELECT value FROM json_each(?)) "
                                "ORDER BY individual_id, hurdle", (json.dumps(ids),))
        for individual_id, hurdle, fraction, fitness, passed, recorded_at, threshold in rows:
            by_id.setdefault(individual_id, []).append(
                HurdleRecord(hurdle, fraction, fitness, bool(passed), recorded_at, threshold))
        return by_id

    # -- confirmations (primer_search.search.confirmation) ----------------------------------------------------------
    # A table of its own, created on the first write (CONFIRMATIONS_SCHEMA), so stores written before it open as
    # they are and a run without confirmations reads as having none.

    def record_confirmation(self, individual_id: int, training_seed: int, budget_multiplier: float, setup: str,
                            result: dict, curve: list) -> None:
        """Store one confirmation training of an individual (its FitnessResult dict and its validation curve),
        replacing an earlier one with the same (individual, training seed, multiplier, setup)."""
        if result.get("status") not in STATUSES:
            raise ValueError(f"status {result.get('status')!r} is not one of {', '.join(STATUSES)}")
        with self.transaction():
            self._require_individual(individual_id)
            self._db.execute(CONFIRMATIONS_SCHEMA)
            self._db.execute("INSERT OR REPLACE INTO confirmations VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                             (individual_id, training_seed, float(budget_multiplier), setup, result["status"],
                              _real(result.get("validation_loss")), _real(result.get("bits_per_byte")),
                              _dumps(result), _dumps(curve), time.time()))

    def confirmations(self, setup: str | None = None,
                      budget_multiplier: float | None = None) -> list[ConfirmationRecord]:
        """The stored confirmation trainings (all, or those of one setup and multiplier), oldest first."""
        exists = self._db.execute("SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = 'confirmations'")
        if exists.fetchone() is None:
            return []
        where, args = [], []
        if setup is not None:
            where, args = where + ["setup = ?"], args + [setup]
        if budget_multiplier is not None:
            where, args = where + ["budget_multiplier = ?"], args + [float(budget_multiplier)]
        rows = self._db.execute("SELECT * FROM confirmations" + (f" WHERE {' AND '.join(where)}" if where else "")
                                + " ORDER BY recorded_at, rowid", args)
        return [ConfirmationRecord(*row[:7], json.loads(row[7]), json.loads(row[8]), row[9]) for row in rows]


def _connect(path: pathlib.Path) -> sqlite3.Connection:
    db = sqlite3.connect(path, isolation_level=None, timeout=30.0)   # transactions are explicit
    db.execute("PRAGMA journal_mode = WAL")
    db.execute("PRAGMA synchronous = FULL")
    db.execute("PRAGMA foreign_keys = ON")
    return db


def _individual(row, hurdles: tuple[HurdleRecord, ...]) -> Individual:
    detail, metrics = row[3], row[13]
    return Individual(*row[:3], None if detail is None else json.loads(detail), *row[4:13],
                      None if metrics is None else json.loads(metrics), *row[14:], hurdles=hurdles)


def _dumps(value) -> str:
    return json.dumps(value, separators=(",", ":"))


def _dumps_or_none(value) -> str | None:
    return None if value is None else _dumps(value)


def _real(value: float | None) -> float | None:
    return None if value is None or math.isnan(value) else float(value)


def _tuples(value):
    """JSON lists back to tuples, recursively (random.Random.getstate() is tuples all the way)."""
    return tuple(_tuples(item) for item in value) if isinstance(value, list) else value


# -- confirmations: the table and its rows -------------------------------------------------------------------------

CONFIRMATIONS_SCHEMA = """
CREATE TABLE IF NOT EXISTS confirmations (
    individual_id INTEGER NOT NULL REFERENCES individuals(id),
    training_seed INTEGER NOT NULL,
    budget_multiplier REAL NOT NULL,
    setup TEXT NOT NULL,
    status TEXT NOT NULL,
    validation_loss REAL,
    bits_per_byte REAL,
    metrics TEXT NOT NULL,
    curve TEXT NOT NULL,
    recorded_at REAL NOT NULL,
    PRIMARY KEY (individual_id, training_seed, budget_multiplier, setup))
"""


@dataclasses.dataclass(frozen=True)
class ConfirmationRecord:
    """One retraining of an individual by `primer-search confirm`, measured on the test split."""

    individual_id: int
    training_seed: int
    budget_multiplier: float
    setup: str                   # names the trial config apart from the seed (primer_search.search.confirmation)
    status: str
    validation_loss: float | None
    bits_per_byte: float | None
    metrics: dict                # FitnessResult.to_dict()
    curve: list                  # [{step, flops, train_seconds, validation_loss, bits_per_byte}], the end last
    recorded_at: float
