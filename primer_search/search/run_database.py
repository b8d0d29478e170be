"""The run directory's SQLite database: its files, schema, durability and the one-controller lock.

Files in RUN_DIR:
    run.sqlite          the store (with run.sqlite-wal and run.sqlite-shm next to it while in use)
    controller.lock     flock'ed by the one controller writing the run; holds its pid@host

How it works: `RunDatabase`.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import pathlib
import shutil
import socket
import sqlite3
import time
from collections.abc import Iterator

FORMAT_VERSION = 2
STORE_FILE = "run.sqlite"
LOCK_FILE = "controller.lock"


def is_run_dir(path) -> bool:
    """Whether `path` is a run directory (holds a run store)."""
    return os.path.isfile(os.path.join(path, STORE_FILE))


def split_run_spec(spec: str) -> tuple[str, str] | None:
    """`RUN_DIR:WHICH` (an individual's id, `topK`...) as (RUN_DIR, WHICH) where RUN_DIR is a run directory;
    None for anything else (a seed name, a file)."""
    run_dir, sep, which = spec.rpartition(":")
    return (run_dir, which) if sep and is_run_dir(run_dir) else None

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


class RunInUse(ValueError):
    """Another controller holds the run directory's lock."""


class RunDatabase:
    """A run directory's database, opened to write (holding the lock) or to read; `RunStore` adds the events.

    Schema (JSON columns hold `json.dumps` text; NaN and infinities round-trip through Python's json):
        meta(key TEXT PRIMARY KEY, value TEXT)       JSON values: format_version, config (the resolved config dict),
                                                     created_at (Unix seconds), rng_state (random.Random.getstate()),
                                                     reuse (run directories whose seed evaluations it copies)
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
                                                     0: a seed evaluation copied from another run, which
                                                     worker names (primer_search.search.seed_copies)
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

    def __init__(self, run_dir: pathlib.Path, db: sqlite3.Connection | None = None):
        """Use `create` or `open`."""
        self.run_dir = run_dir
        self.path = run_dir / STORE_FILE
        self._db = db
        self._lock_file = None

    # -- opening, locking, closing ---------------------------------------------------------------------------

    @classmethod
    def create(cls, run_dir: str | os.PathLike, config: dict):
        """Create the store of a new run in `run_dir` (made if missing), holding the controller lock."""
        to_json(config)                      # a config JSON cannot hold fails here, before any file is made
        store = cls(pathlib.Path(run_dir))
        store._refuse_existing()
        made = not store.run_dir.exists()
        store.run_dir.mkdir(parents=True, exist_ok=True)
        store.lock()                        # before looking again: two controllers may race to create the same run
        if store.path.exists():
            store.close()
            store._refuse_existing()
        draft = store.path.with_name(store.path.name + ".new")    # the store appears whole: readers never see
        try:                                                        # a file without its tables
            _remove_database(draft)                 # a draft left by a controller killed while creating
            store._db = _connect(draft)
            with store.transaction():
                for statement in SCHEMA.split(";"):
                    store._db.execute(statement)
                for key, value in (("format_version", FORMAT_VERSION), ("config", config),
                                   ("created_at", time.time())):
                    store._meta_put(key, value)
            store._db.close()                       # the last connection: its WAL goes into the file
            os.replace(draft, store.path)
            store._db = _connect(store.path)
        except BaseException:
            store.close()
            _remove_database(draft)
            _remove_database(store.path)            # ours: it did not exist, and we held the lock
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
    def open(cls, run_dir: str | os.PathLike, *, lock: bool = False):
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

    def __enter__(self):
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"{type(self).__name__}({str(self.run_dir)!r}, {'locked' if self.locked else 'read-only'})"

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

    def meta_set(self, key: str, value) -> None:
        """Store a JSON-able value under `key` (controller state, notes)."""
        with self.transaction():
            self._meta_put(key, value)

    def _meta_put(self, key: str, value) -> None:
        self._db.execute("INSERT OR REPLACE INTO meta VALUES (?, ?)", (key, to_json(value)))

    def meta_get(self, key: str, default=None):
        row = self._db.execute("SELECT value FROM meta WHERE key = ?", (key,)).fetchone()
        return default if row is None else json.loads(row[0])

    @property
    def config(self) -> dict:
        """The resolved config dict the run was created with."""
        return self.meta_get("config")


def _connect(path: pathlib.Path) -> sqlite3.Connection:
    db = sqlite3.connect(path, isolation_level=None, timeout=30.0)   # transactions are explicit
    db.execute("PRAGMA journal_mode = WAL")
    db.execute("PRAGMA synchronous = FULL")
    db.execute("PRAGMA foreign_keys = ON")
    return db


def _remove_database(path: pathlib.Path) -> None:
    for suffix in ("", "-wal", "-shm"):
        pathlib.Path(f"{path}{suffix}").unlink(missing_ok=True)


def to_json(value) -> str:
    """Compact JSON text (NaN and infinities as Python's json writes them)."""
    return json.dumps(value, separators=(",", ":"))
