"""The run store: one SQLite database in the run directory, the single source of truth of a search.

Every event is committed when it happens: a proposal (with the controller's random state after drawing it), a
hurdle result, a final result. `resume` rebuilds everything from here: the population from `completed()` in
completion order, the counters from `counts()`, the random state from `rng_state()`, and re-submits `pending()`
(proposals in flight at the crash). Nothing evaluated is lost and nothing counts twice: a result is recorded once
per individual (`AlreadyRecorded` otherwise) and numbered by `seq` in completion order.

The file, its schema, durability and locking: `primer_search.search.run_database`.

This module imports no TensorFlow: sqlite3, json and the standard library only.
"""

from __future__ import annotations

import dataclasses
import functools
import heapq
import json
import math
import time
from typing import Any

from primer_search.search.run_database import CONFIRMATIONS_SCHEMA, RunDatabase, to_json

STATUSES = ("ok", "stopped", "invalid", "diverged", "oom", "timeout", "error")   # of primer_search.lm.fitness
MEASURED = ("ok", "stopped")                   # the statuses whose result carries a fitness
# Measurements of the program itself, reusable by the cache. timeout, oom and error depend on the machine, the
# load and the infrastructure: a later equivalent program is evaluated again.
REUSABLE_STATUSES = ("ok", "stopped", "invalid", "diverged")

_COLUMNS = ("i.id, i.parent_id, i.mutation, i.mutation_detail, i.dna, i.canonical_hash, i.fingerprint, "
            "i.proposed_at, i.training_seed, i.repeat_of, r.seq, r.status, r.fitness, r.metrics, r.worker, "
            "r.attempts, r.cached_from, r.started_at, r.finished_at")
_SELECT = f"SELECT {_COLUMNS} FROM individuals i LEFT JOIN results r ON r.individual_id = i.id"
_SELECT_DONE = f"SELECT {_COLUMNS} FROM results r JOIN individuals i ON i.id = r.individual_id"


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
    attempts: int | None = None          # 0: copied from another run (`worker` names it), not trained here
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


class RunStore(RunDatabase):
    """The events of one run: `create` a run, `open` one to resume or read it (`RunDatabase`), then record and read
    proposals, hurdle verdicts, results and confirmations."""

    # -- writing ------------------------------------------------------------------------------------------

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
                (parent_id, mutation, _to_json_or_none(mutation_detail), to_json(dna), canonical_hash,
                 fingerprint, time.time(), training_seed, repeat_of))
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
                             (individual_id, seq, status, _real(fitness), to_json(metrics), worker, attempts,
                              cached_from, started_at, time.time()))
        return seq

    def _require_individual(self, individual_id: int, what: str = "individual_id") -> None:
        if self._db.execute("SELECT 1 FROM individuals WHERE id = ?", (individual_id,)).fetchone() is None:
            raise ValueError(f"{what} {individual_id!r}: no such individual in {self.run_dir} "
                             f"(ids 1..{self.proposed_count()})")

    def proposed_count(self) -> int:
        """Individuals proposed so far (ids are 1..n, so the largest id; one cheap query)."""
        return self._db.execute("SELECT COALESCE(MAX(id), 0) FROM individuals").fetchone()[0]

    # -- reading ------------------------------------------------------------------------------------------

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

    def hurdle_records(self, hurdle: int, limit: int, training_seed: int | None = None) -> list[float]:
        """The fitnesses of the most recent `limit` records at `hurdle` (NULL fitness left out), newest first; with
        `training_seed`, only those of trainings with that seed."""
        rows = self._db.execute("SELECT h.fitness FROM hurdles h JOIN individuals i ON i.id = h.individual_id "
                                "WHERE h.hurdle = ? AND h.fitness IS NOT NULL AND (? IS NULL OR i.training_seed = ?) "
                                "ORDER BY h.rowid DESC LIMIT ?", (hurdle, training_seed, training_seed, limit))
        return [fitness for (fitness,) in rows]

    def hurdle_tally(self, hurdle: int) -> tuple[int, int]:
        """(passed, judged): how many candidates judged against a threshold at `hurdle` passed it, and how many
        were judged."""
        passed, judged = self._db.execute("SELECT COALESCE(SUM(passed), 0), COUNT(*) FROM hurdles WHERE hurdle = ? "
                                          "AND threshold IS NOT NULL", (hurdle,)).fetchone()
        return int(passed), int(judged)

    def hurdle_history(self, hurdle: int) -> list[tuple[int, int | None, int | None, HurdleRecord]]:
        """Every record at `hurdle` in recording order: (individual id, its parent id, its training seed, record)."""
        rows = self._db.execute("SELECT h.individual_id, i.parent_id, i.training_seed, h.hurdle, h.fraction, "
                                "h.fitness, h.passed, h.recorded_at, h.threshold FROM hurdles h JOIN individuals i "
                                "ON i.id = h.individual_id WHERE h.hurdle = ? ORDER BY h.rowid", (hurdle,))
        return [(row[0], row[1], row[2], HurdleRecord(row[3], row[4], row[5], bool(row[6]), *row[7:]))
                for row in rows]

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
        column, or a numeric key of the metrics (e.g. bits_per_byte); ties by seq. By fitness, a program evaluated
        more than once (re-evaluations, cache hits) is one entry: its first evaluation that trained to the end,
        holding the fitness its latest one recorded, the mean over all (so a lucky first draw is not its score)."""
        marks = ", ".join("?" * len(statuses))
        if metric == "fitness":
            scored, programs = [], {}        # programs: root -> [first ok seq, its individual, latest fitness]
            for seq, individual_id, root, status, fitness in self._db.execute(
                    f"SELECT r.seq, i.id, COALESCE(i.repeat_of, i.id), r.status, r.fitness FROM results r JOIN "
                    f"individuals i ON i.id = r.individual_id WHERE r.status IN ({marks}) AND r.fitness IS NOT NULL "
                    f"ORDER BY r.seq", statuses):
                if status != "ok":
                    scored.append((fitness, seq, individual_id))
                elif root in programs:
                    programs[root][2] = fitness
                else:
                    programs[root] = [seq, individual_id, fitness]
            scored += [(fitness, seq, individual_id) for seq, individual_id, fitness in programs.values()]
            best = heapq.nsmallest(n, scored)
            found = {ind.id: ind for ind in self._individuals(self._db.execute(
                f"{_SELECT} WHERE i.id IN (SELECT value FROM json_each(?))", (json.dumps([i for *_, i in best]),)))}
            return [dataclasses.replace(found[i], fitness=fitness) for fitness, _, i in best]
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
                              to_json(result), to_json(curve), time.time()))

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


def _individual(row, hurdles: tuple[HurdleRecord, ...]) -> Individual:
    detail, metrics = row[3], row[13]
    return Individual(*row[:3], None if detail is None else json.loads(detail), *row[4:13],
                      None if metrics is None else json.loads(metrics), *row[14:], hurdles=hurdles)


def _to_json_or_none(value) -> str | None:
    return None if value is None else to_json(value)


def _real(value: float | None) -> float | None:
    return None if value is None or math.isnan(value) else float(value)


def _tuples(value):
    """JSON lists back to tuples, recursively (random.Random.getstate() is tuples all the way)."""
    return tuple(_tuples(item) for item in value) if isinstance(value, list) else value


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
