"""The search controller: propose programs, evaluate them on an executor, record everything in the run store.

One loop, in `Search.run`: keep `max_in_flight` trials running. Each proposal is planned by the program cache
(`primer_search.search.cache`: train it with a training seed, or reuse a known program's result) and stored with that
plan and the random state that produced it, before it is submitted. A trial asks the controller at each hurdle
whether to go on; the verdict is taken then, from every hurdle record so far (trials still running included), and
recorded at once with its threshold. Each completion records its result and, with a fitness, enters the
population. Because the store holds every proposal, plan, verdict and result and the random state,
`Search.resume` rebuilds everything by replaying it, re-submits the proposals that were in flight (a re-run trial
meets the thresholds recorded for it), and goes on. A run may copy its seeds' evaluations from earlier runs of the
same setup instead of training them (`primer_search.search.seed_copies`).

Trials run `primer_search.search.trial.run_trial(payload, ask)` in whatever process the executor chooses.
"""

from __future__ import annotations

import dataclasses
import math
import random
import time
from typing import Callable

from primer_search.config import Config, config_from_dict
from primer_search.lm.corpora import check_files
from primer_search.program.dna import DNA
from primer_search.program.graph import canonical_hash
from primer_search.program.seeds import load_seed_or_file
from primer_search.search import hurdles
from primer_search.search.cache import ProgramCache
from primer_search.search.events import EventLog
from primer_search.search.evolution import Evolution, Member, Proposal
from primer_search.search.executors import make_executor
from primer_search.search.seed_copies import SeedCopies, check_reusable
from primer_search.search.status import SEARCH_CLOCK_EVERY, SEARCH_SECONDS, Status, read_status
from primer_search.search.store import MEASURED, RunStore
from primer_search.search.trial import failure_result, run_trial

__all__ = ["Search", "Status", "read_status", "run_trial", "load_seeds", "RESUMABLE_KEYS"]

REUSE = "reuse"     # store meta: the run directories whose seed evaluations a run copies

# What `resume --set` may change: how the run executes, and how long it goes on. Anything else would mix
# measurements taken under two settings (results and hurdle records are reused by program).
RESUMABLE_KEYS = ("search.num_individuals", "search.max_in_flight", "search.executor", "search.address",
                  "search.num_cpus", "search.cpus_per_trial", "search.gpus_per_trial",
                  "search.evaluations_per_worker", "search.trial_timeout_seconds", "search.max_retries")


def _cpu_only() -> None:
    """Keep the controller off the accelerators (its fingerprints run on the CPU; trials need the GPUs)."""
    import tensorflow as tf

    try:
        tf.config.set_visible_devices([], "GPU")
    except RuntimeError:                          # TensorFlow already started its devices in this process
        pass


def load_seeds(names, metric: str = "bits_per_byte") -> list[DNA]:
    """Seed names (transformer, primer_ez, primer, with any +option) or DNA files. A MEGABYTE seed needs the
    metric that compares it with the others: bits per byte."""
    seeds = [load_seed_or_file(name) for name in names]
    for name, dna in zip(names, seeds):
        if dna.macro_options.megabyte.enabled and metric != "bits_per_byte":
            raise ValueError(f"search.seeds: {name!r} enables megabyte, which predicts bytes, not tokens; expected "
                             f"search.metric: bits_per_byte (found {metric})")
    return seeds


def fitness_of(result: dict) -> float | None:
    value = result.get("fitness") if result.get("status") in MEASURED else None
    return value if value is not None and math.isfinite(value) else None


def _stored_seeds(config: Config, store: RunStore) -> list[DNA]:
    """The seeds as the run proposed them (seed i first as individual i x seed_evaluations + 1), the rest as the
    config names them."""
    k, proposed = config.search.seed_evaluations, store.proposed_count()
    seeds = []
    for i, name in enumerate(config.search.seeds):
        first = i * k + 1
        if first <= proposed:
            seeds.append(DNA.from_dict(store.individual(first).dna))
        else:
            seeds.append(load_seeds([name], config.search.metric)[0])
    return seeds


def check_hurdle_placement(config: Config, seeds: list[DNA]) -> None:
    """Refuse hurdles that fall before the warmup or `min_hurdle_steps`, in steps: a steps budget directly, a FLOPs
    budget for each seed (its steps depend on the program). A seconds budget is known only by measuring
    (`primer-search calibrate`)."""
    training, search = config.training, config.search
    if not search.hurdles or training.budget_kind == "seconds":
        return
    if training.budget_kind == "steps":
        error = hurdles.placement_error(search.hurdles, training.budget, training.warmup_steps,
                                        search.min_hurdle_steps)
        if error:
            raise ValueError(error)
        return
    from primer_search.lm.architecture import Architecture

    for dna in seeds:
        arch = Architecture.of(dna, config)
        per_step = arch.training_flops_per_token(arch.choose_unit()) * config.data.batch_tokens
        error = hurdles.placement_error(search.hurdles, training.budget / per_step, training.warmup_steps,
                                        search.min_hurdle_steps)
        if error:
            raise ValueError(f"{error} (seed {dna.name or 'program'}: {per_step:,} training FLOPs per step)")


def check_resume_overrides(overrides) -> None:
    """Refuse `resume --set` keys that would invalidate stored measurements, naming them and the allowed keys."""
    for item in overrides:
        key = item.partition("=")[0].strip()
        if key not in RESUMABLE_KEYS:
            raise ValueError(f"--set {item!r}: {key} cannot change when resuming, since the run's results and "
                             f"hurdle records were measured with its stored value; keys that may change: "
                             f"{', '.join(RESUMABLE_KEYS)}")


class Search:
    """A search bound to its run directory (create with `Search.start` or `Search.resume`)."""

    def __init__(self, config: Config, store: RunStore, rng: random.Random, seeds: list[DNA]):
        self.config, self.store, self.rng = config, store, rng
        self.evolution = Evolution(config.search, seeds, rng)
        self.cache = ProgramCache(config.search.reevaluations, config.training.seed)
        fractions = hurdles.hurdle_fractions(config.search.hurdles)
        self.trial_config = config.replace(training={"checkpoints": list(fractions)}).to_dict()
        in_process = config.search.executor == "in_process"
        self.threads = None if in_process else max(1, int(config.search.cpus_per_trial))
        if not in_process:
            _cpu_only()
        self.started = time.time()
        self.done_at_start = 0
        self.events = EventLog(store)
        reused = store.meta_get(REUSE, [])
        self.copies = SeedCopies(config, reused) if reused else None

    @classmethod
    def start(cls, config: Config, run_dir, reuse=()) -> "Search":
        """A new search in `run_dir`; `reuse`: run directories of the same setup whose seed evaluations it copies
        instead of training them again (`primer_search.search.seed_copies`)."""
        seeds = load_seeds(config.search.seeds, config.search.metric)   # a bad seed fails before the run exists
        check_hurdle_placement(config, seeds)
        check_files(config.data)
        reuse = check_reusable(config, reuse)
        store = RunStore.create(run_dir, config.to_dict())
        if reuse:
            store.meta_set(REUSE, reuse)
        return cls(config, store, random.Random(config.search.seed), seeds)

    @classmethod
    def resume(cls, run_dir, overrides=()) -> "Search":
        check_resume_overrides(overrides)
        with RunStore.open(run_dir) as reader:          # a bad value is refused before the run is touched
            config_from_dict(reader.config, overrides)
        store = RunStore.open(run_dir, lock=True)
        try:
            config = config_from_dict(store.config, overrides)
            if overrides:
                store.meta_set("config", config.to_dict())         # e.g. a larger num_individuals
            rng = random.Random(config.search.seed)
            state = store.rng_state()
            if state is not None:
                rng.setstate(state)
            search = cls(config, store, rng, _stored_seeds(config, store))
            search._replay()
        except BaseException:
            store.close()
            raise
        return search

    def _replay(self) -> None:
        """Rebuild the cache and the population from the store: every proposal in id order, then every result in
        completion order, through the same steps as a live run (decoding only the survivors' DNA)."""
        for row in self.store.proposals():
            self.cache.proposed(row.id, row.canonical_hash, row.fingerprint, row.repeat_of, row.training_seed)
            if row.parent_id is None and not self._is_seed_repeat(None, row.id):
                dna = DNA.from_dict(self.store.individual(row.id).dna)
                self.evolution.add(Member(row.id, dna, None, row.canonical_hash), is_seed=True)
        for row in self.store.completed():
            self.done_at_start += 1
            self._enter(row, None, row.status, fitness_of(row.metrics), row.cached_from)
        members = (*self.evolution.population, self.evolution.best)
        survivors = {m.id for m in members if m is not None and m.dna is None}
        dnas = {i: DNA.from_dict(self.store.individual(i).dna) for i in survivors}
        fill = lambda m: m if m is None or m.dna is not None else dataclasses.replace(m, dna=dnas[m.id])  # noqa: E731
        self.evolution.population = type(self.evolution.population)(
            map(fill, self.evolution.population), maxlen=self.evolution.population.maxlen)
        self.evolution.best = fill(self.evolution.best)
        self._store_calibration()            # a kill between the last seed's result and its calibration

    # -- proposing -----------------------------------------------------------------------------------------

    def _is_seed(self, individual: int) -> bool:
        """Whether this individual is a seed's evaluation: the seeds are the run's first proposals."""
        return individual <= len(self.evolution.seeds) * self.config.search.seed_evaluations

    def _is_seed_repeat(self, parent_id: int | None, individual: int) -> bool:
        """Whether this individual is a seed's 2nd, 3rd... evaluation (`seed_evaluations`): always trained."""
        return parent_id is None and (individual - 1) % self.config.search.seed_evaluations != 0

    def _next_proposal(self) -> Proposal | None:
        """The next program to evaluate, or None when the run is fully proposed (or nothing is left to mutate)."""
        proposed = self.store.proposed_count()
        seeds, k = self.evolution.initial_proposals(), self.config.search.seed_evaluations
        if proposed >= self.config.search.num_individuals:
            return None
        if proposed < len(seeds) * k:                              # the seeds are the first individuals
            return seeds[proposed // k]
        return self.evolution.propose() if self.evolution.ready else None

    def _submit(self, executor, proposal: Proposal) -> None:
        dna, mutation = proposal.dna, proposal.mutation
        hash_ = mutation.child_hash if mutation and mutation.child_hash else canonical_hash(dna)
        program, key = self.cache.find(hash_), None
        if program is None and self.config.search.fec:
            from primer_search.search.fec import fingerprint

            key = fingerprint(dna, self.config.model.width_units)
            program = self.cache.find(fingerprint=key)
        calibration = self._is_seed_repeat(proposal.parent_id, self.store.proposed_count() + 1)
        plan = self.cache.plan(program, calibration=calibration)
        individual = self.store.add_proposal(
            proposal.parent_id, mutation.kind if mutation else None, mutation.detail if mutation else None,
            dna.to_dict(), hash_, fingerprint=key, rng_state=self.rng.getstate(),
            training_seed=plan.training_seed, repeat_of=plan.repeat_of)
        self.cache.proposed(individual, hash_, key, plan.repeat_of, plan.training_seed)
        if proposal.parent_id is None and not calibration:
            self.evolution.add(Member(individual, dna, None, hash_), is_seed=True)
        self._dispatch(executor, self.store.individual(individual), dna)

    def _dispatch(self, executor, row, dna: DNA) -> None:
        """Train the proposal `row` with its training seed, or record the result it reuses: a known program's, or
        for a seed's evaluation, the same evaluation in a run it reuses."""
        if row.training_seed is None:
            reused = self.store.individual(self.cache.by_id[row.id].result)
            self._finish(row, dna, reused.metrics, cached_from=reused.id)
            return
        copy = self.copies and row.parent_id is None
        found = self.copies.find(row.canonical_hash, row.training_seed) if copy else None
        if found is not None:
            run_dir, source = found
            for record in source.hurdles:
                self.store.record_hurdle(row.id, record.hurdle, record.fraction, record.fitness, record.passed)
            self._finish(row, dna, source.metrics, worker=f"copy of {run_dir} #{source.id}", attempts=0)
            return
        executor.submit(row.id, run_trial, {"dna": dna.to_dict(), "config": self.trial_config,
                                            "training_seed": row.training_seed, "threads": self.threads})

    def answer(self, individual: int, question: dict) -> bool:
        """A trial at a hurdle: compare its value with the threshold recorded for it (a re-run after a crash), or
        else with one taken now from every record so far (trainings with the run's training seed); record the
        verdict before answering."""
        i, value = question["hurdle"], question["value"]
        if self._is_seed(individual):                             # a seed is the baseline: never stopped
            self.store.record_hurdle(individual, i, question["fraction"], value, True)
            return True
        recorded = self.store.hurdle_decision(individual, i)
        if recorded is not None:
            limit = recorded.threshold
        else:
            window = hurdles.window_at(i, self.config.search.hurdle_window)
            limit = hurdles.limit(self.store.hurdle_records(i, window, training_seed=self.config.training.seed),
                                  self.store.hurdle_tally(i), window, self.config.search.hurdle_gain)
        passed = hurdles.passes(value, limit)
        self.store.record_hurdle(individual, i, question["fraction"], value, passed, threshold=limit)
        return passed

    # -- recording -----------------------------------------------------------------------------------------

    def _enter(self, row, dna: DNA | None, status: str, own: float | None, cached_from: int | None):
        """Apply a result to the cache and the population; returns the fitness the individual holds."""
        fitness, others = self.cache.completed(row.id, status, own, cached_from)
        if row.parent_id is None:
            self.evolution.set_fitness([row.id], fitness)
        elif fitness is not None:
            self.evolution.add(Member(row.id, dna, fitness, row.canonical_hash))
        if others:
            self.evolution.set_fitness(others, fitness)
        best = self.evolution.best
        if dna is not None and best is not None and best.dna is None:   # a mean moved: an older member is best
            self.evolution.best = dataclasses.replace(best, dna=DNA.from_dict(self.store.individual(best.id).dna))
        return fitness

    def _finish(self, row, dna: DNA, result: dict, cached_from=None, worker=None, attempts=1,
                started_at=None) -> None:
        """Store the result of the proposal `row`; a fitness enters the population."""
        fitness = self._enter(row, dna, result["status"], fitness_of(result), cached_from)
        self.store.record_result(row.id, result["status"], fitness, result, worker=worker, attempts=attempts,
                                 cached_from=cached_from, started_at=started_at)
        if row.parent_id is None:
            self._store_calibration()
        self.events.log(fitness, result, self.evolution.population)

    def _store_calibration(self) -> None:
        """Once every seed evaluation has a result, the noise they show goes into the store (`calibration`)."""
        k, names = self.config.search.seed_evaluations, self.config.search.seeds
        seeds = self.store.individuals_without_parent()
        complete = len(seeds) >= k * len(names) and all(s.done for s in seeds)
        if k < 2 or not complete or self.store.meta_get("calibration"):
            return
        from primer_search.search.calibration import summarize

        results = {name: [s.metrics for s in seeds[i * k:(i + 1) * k]] for i, name in enumerate(names)}
        training_seeds = [s.training_seed for s in seeds[:k]]
        self.store.meta_set("calibration", summarize(results, self.config, training_seeds).to_dict())

    def _complete(self, completion) -> None:
        row = self.store.individual(completion.trial_id)
        result = completion.value if completion.failure is None else failure_result(completion.failure)
        self._finish(row, DNA.from_dict(row.dna), result, worker=completion.worker, attempts=completion.attempts,
                     started_at=completion.started_at)

    # -- the loop ------------------------------------------------------------------------------------------

    def status(self) -> Status:
        return read_status(self.store, self.started, self.done_at_start)

    def run(self, on_progress: Callable[[Status], None] | None = None, progress_every: float = 10.0,
            executor=None) -> Status:
        """Search until `num_individuals` have results; returns the final status. `on_progress` gets the status
        every `progress_every` seconds (never when it is 0) and at the end."""
        counts = self.store.counts()
        if counts["in_flight"] == 0 and counts["proposed"] >= self.config.search.num_individuals:
            return self.status()                                     # finished: no executor to start
        executor = executor or make_executor(self.config.search, answer=self.answer)
        last, wait = 0.0, progress_every if progress_every > 0 else 10.0     # a wait ends at a completion anyway
        clock = time.monotonic()
        try:
            for row in self.store.pending():                      # in flight when the last controller stopped
                self._dispatch(executor, row, DNA.from_dict(row.dna))
            while True:
                while executor.in_flight < self.config.search.max_in_flight:
                    proposal = self._next_proposal()                # stored with the random state right after it
                    if proposal is None:
                        break
                    self._submit(executor, proposal)
                if executor.in_flight == 0:
                    if self.store.proposed_count() >= self.config.search.num_individuals:
                        break
                    if not self.evolution.ready:
                        raise RuntimeError("no seed produced a fitness, so there is nothing to evolve: see "
                                           "`primer-search top RUN_DIR` for their statuses and errors")
                    continue                                        # every proposal was a cache hit
                for completion in executor.wait(timeout=wait):
                    self._complete(completion)
                if time.monotonic() - clock >= SEARCH_CLOCK_EVERY:
                    clock = self._add_search_time(clock)
                if on_progress is not None and progress_every > 0 and time.monotonic() - last >= progress_every:
                    on_progress(self.status())
                    last = time.monotonic()
        finally:
            executor.shutdown()
            self._add_search_time(clock)
            self.events.flush()
        status = self.status()
        if on_progress is not None:
            on_progress(status)
        return status

    def _add_search_time(self, since: float) -> float:
        """Add the time since `since` (monotonic) to the run's `search_seconds`, which `status` rates by."""
        now = time.monotonic()
        self.store.meta_set(SEARCH_SECONDS, self.store.meta_get(SEARCH_SECONDS, 0.0) + now - since)
        return now

    def close(self) -> None:
        self.store.close()
