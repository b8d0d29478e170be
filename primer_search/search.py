"""The search controller: propose programs, evaluate them on an executor, record everything in the run store.

One loop, in `Search.run`: keep `max_in_flight` trials running; each proposal is stored before it is submitted
(with the random state that produced it); a proposal whose program is already known (same canonical hash, or the
same functional fingerprint, see `primer_search.fec`) reuses the recorded result without training; each completion
records its hurdle fitnesses and its result and, with a fitness, enters the population. Because the store holds
every proposal, result and the random state, `Search.resume` rebuilds the population by replaying the results in
completion order, re-submits the proposals that were in flight, and goes on.

Trials run `run_trial(payload)`, a plain function of JSON data, in whatever process the executor chooses.
"""

from __future__ import annotations

import dataclasses
import math
import pathlib
import random
import time
from typing import Callable

from primer_search import hurdles
from primer_search.config import Config, config_from_dict
from primer_search.dna import DNA
from primer_search.evolution import Evolution, Member, Proposal
from primer_search.executors import make_executor
from primer_search.graph import canonical_hash
from primer_search.seeds import load_seed_or_file
from primer_search.store import MEASURED, RunStore



def _limit_threads(threads: int | None) -> None:
    """Keep a worker's TensorFlow to the CPUs its trial reserved (TF uses every core by default, so parallel
    trials would fight over them). Possible only before TF starts in the process; a recycled worker's later
    trials keep the setting of its first."""
    import tensorflow as tf

    if threads:
        try:
            tf.config.threading.set_intra_op_parallelism_threads(threads)
            tf.config.threading.set_inter_op_parallelism_threads(threads)
        except RuntimeError:
            pass


def run_trial(payload: dict) -> dict:
    """Evaluate one candidate: `payload` holds its DNA, the config, the fitness limit at each hurdle, and the
    CPU threads it may use (None: leave TensorFlow's default)."""
    from primer_search.fitness import evaluate

    _limit_threads(payload.get("threads"))
    config = config_from_dict(payload["config"])
    limits = payload["hurdle_limits"]
    fractions = config.training.checkpoints

    def on_checkpoint(checkpoint) -> bool:
        quality = getattr(checkpoint, config.search.metric)
        return hurdles.passes(quality, limits[fractions.index(checkpoint.fraction)])

    return evaluate(DNA.from_dict(payload["dna"]), config, on_checkpoint=on_checkpoint).to_dict()


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


@dataclasses.dataclass
class Status:
    """What `primer-search status` and the progress line show."""

    done: int
    in_flight: int
    target: int
    by_status: dict
    best: tuple[int, float] | None           # (id, fitness)
    evaluations_per_hour: float
    cache_hits: int
    hurdle_stops: int
    hurdle_compute_saved: float              # share of training compute

    def line(self) -> str:
        failed = sum(n for s, n in self.by_status.items() if s not in MEASURED)
        best = f"{self.best[1]:.4f} (#{self.best[0]})" if self.best else "-"
        return (f"search: done {self.done}/{self.target}  in flight {self.in_flight}  failed {failed}  "
                f"best {best}  {self.evaluations_per_hour:.0f} evals/h  cache hits {self.cache_hits}  "
                f"hurdle stops {self.hurdle_stops} (saved {self.hurdle_compute_saved:.0%})")


class Search:
    """A search bound to its run directory (create with `Search.start` or `Search.resume`)."""

    def __init__(self, config: Config, store: RunStore, rng: random.Random, seeds: list[DNA]):
        self.config, self.store, self.rng = config, store, rng
        self.evolution = Evolution(config.search, seeds, rng)
        fractions = hurdles.hurdle_fractions(config.search.hurdles)
        self.trial_config = config.replace(training={"checkpoints": list(fractions)}).to_dict()
        in_process = config.search.executor == "in_process"
        self.threads = None if in_process else max(1, int(config.search.cpus_per_trial))
        self.started = time.time()
        self.done_at_start = 0
        self._writer = None

    @classmethod
    def start(cls, config: Config, run_dir) -> "Search":
        seeds = load_seeds(config.search.seeds, config.search.metric)   # a bad seed fails before the run exists
        store = RunStore.create(run_dir, config.to_dict())
        return cls(config, store, random.Random(config.search.seed), seeds)

    @classmethod
    def resume(cls, run_dir, overrides=()) -> "Search":
        store = RunStore.open(run_dir, lock=True)
        try:
            config = config_from_dict(store.config, overrides)
            if overrides:
                store.meta_set("config", config.to_dict())         # e.g. a larger num_individuals
            rng = random.Random(config.search.seed)
            state = store.rng_state()
            if state is not None:
                rng.setstate(state)
            stored = [DNA.from_dict(row.dna) for row in store.individuals_without_parent()]
            seeds = stored + load_seeds(config.search.seeds[len(stored):], config.search.metric)   # as evaluated
            search = cls(config, store, rng, seeds)
            search._replay()
        except BaseException:
            store.close()
            raise
        return search

    def _replay(self) -> None:
        """Rebuild the population from the results in completion order (decoding only the survivors' DNA)."""
        rows = {}
        for row in self.store.completed():
            self.done_at_start += 1
            if row.fitness is not None:
                rows[row.id] = row
                self.evolution.add(Member(row.id, None, row.fitness, row.canonical_hash),
                                   is_seed=row.parent_id is None)
        survivors = {*self.evolution.population, *self.evolution.seed_members}
        dnas = {m.id: DNA.from_dict(rows[m.id].dna) for m in survivors}
        self.evolution.population = type(self.evolution.population)(
            (dataclasses.replace(m, dna=dnas[m.id]) for m in self.evolution.population),
            maxlen=self.evolution.population.maxlen)
        self.evolution.seed_members = [dataclasses.replace(m, dna=dnas[m.id]) for m in self.evolution.seed_members]

    def _enter(self, row, dna: DNA, fitness: float | None) -> None:
        if fitness is not None:
            self.evolution.add(Member(row.id, dna, fitness, row.canonical_hash), is_seed=row.parent_id is None)

    # -- proposing -----------------------------------------------------------------------------------------

    def _next_proposal(self) -> Proposal | None:
        """The next program to evaluate, or None (the run is fully proposed, or children wait for a seed)."""
        proposed = self.store.proposed_count()
        seeds = self.evolution.initial_proposals()
        if proposed >= self.config.search.num_individuals:
            return None
        if proposed < len(seeds):                                  # the seeds are the first individuals
            return seeds[proposed]
        return self.evolution.propose() if self.evolution.ready else None

    def _submit(self, executor, proposal: Proposal) -> None:
        dna, mutation = proposal.dna, proposal.mutation
        hash_ = mutation.child_hash if mutation and mutation.child_hash else canonical_hash(dna)
        individual = self.store.add_proposal(
            proposal.parent_id, mutation.kind if mutation else None, mutation.detail if mutation else None,
            dna.to_dict(), hash_, rng_state=self.rng.getstate())
        self._dispatch(executor, individual, dna, hash_)

    def _dispatch(self, executor, individual: int, dna: DNA, hash_: str) -> None:
        """Reuse a known result, or submit the trial."""
        cached = self.store.lookup(canonical_hash=hash_)
        if cached is None and self.config.search.fec:
            from primer_search.fec import fingerprint

            key = fingerprint(dna, self.config.model.width_units)
            if key is not None:
                self.store.set_fingerprint(individual, key)
                cached = self.store.lookup(fingerprint=key)
        if cached is not None:
            self._record(self.store.individual(individual), dna, cached.metrics, cached_from=cached.measured_id)
            return
        limits = [hurdles.threshold(self.store.hurdle_records(i, self.config.search.hurdle_window))
                  for i in range(self.config.search.hurdles)]
        executor.submit(individual, run_trial, {"dna": dna.to_dict(), "config": self.trial_config,
                                                "hurdle_limits": limits, "threads": self.threads})

    # -- recording -----------------------------------------------------------------------------------------

    def _record(self, row, dna: DNA, result: dict, cached_from=None, worker=None, attempts=1,
                started_at=None) -> None:
        """Store the hurdle records and the result of the proposal `row`; a fitness enters the population."""
        individual = row.id
        if cached_from is None:
            stopped = result.get("status") == "stopped"
            for i, checkpoint in enumerate(result.get("checkpoints", [])):
                passed = not (stopped and i == len(result["checkpoints"]) - 1)
                self.store.record_hurdle(individual, i, checkpoint["fraction"],
                                         checkpoint[self.config.search.metric], passed)
        fitness = fitness_of(result)
        self.store.record_result(individual, result["status"], fitness, result, worker=worker,
                                 attempts=attempts, cached_from=cached_from, started_at=started_at)
        self._enter(row, dna, fitness)
        self._log(individual, fitness, result)

    def _complete(self, completion) -> None:
        row = self.store.individual(completion.trial_id)
        dna = DNA.from_dict(row.dna)
        result = completion.value
        if completion.failure is not None:
            status = "timeout" if completion.failure.startswith("timeout") else "error"
            result = {"status": status, "error": completion.failure}
        self._record(row, dna, result, worker=completion.worker, attempts=completion.attempts,
                     started_at=completion.started_at)

    # -- progress ------------------------------------------------------------------------------------------

    def status(self) -> Status:
        return read_status(self.store, self.started, self.done_at_start)

    def _log(self, individual: int, fitness: float | None, result: dict) -> None:
        """TensorBoard scalars in RUN_DIR/tensorboard, one point per completed individual: savings, fitness, and
        the individual's quality and sampling cost when measured.

        Written with TensorFlow's own `tf.summary.write` and the scalars plugin's metadata, so viewing them needs
        TensorBoard but writing them does not."""
        import tensorflow as tf
        from tensorflow.core.framework import summary_pb2

        if self._writer is None:
            self._writer = tf.summary.create_file_writer(str(pathlib.Path(self.store.run_dir) / "tensorboard"))
        counts = self.store.counts()
        fitnesses = [m.fitness for m in self.evolution.population]
        scalars = {"savings/cache_hits": counts["cache_hits"], "savings/hurdle_stops": counts["hurdle_stops"]}
        if fitness is not None:
            scalars["fitness/individual"] = fitness
            scalars["quality/validation_loss"] = result["validation_loss"]
            scalars["quality/bits_per_byte"] = result["bits_per_byte"]
            if result.get("sampling_flops_per_token"):
                scalars["cost/sampling_mflops_per_token"] = result["sampling_flops_per_token"] / 1e6
        if fitnesses:
            scalars["fitness/population_best"] = min(fitnesses)
            scalars["fitness/population_mean"] = sum(fitnesses) / len(fitnesses)
        metadata = summary_pb2.SummaryMetadata(
            plugin_data=summary_pb2.SummaryMetadata.PluginData(plugin_name="scalars"))
        with self._writer.as_default():
            for tag, value in scalars.items():
                tf.summary.write(tag, tf.constant(float(value)), step=counts["done"], metadata=metadata)

    # -- the loop ------------------------------------------------------------------------------------------

    def run(self, on_progress: Callable[[Status], None] | None = None, progress_every: float = 10.0,
            executor=None) -> Status:
        """Search until `num_individuals` have results; returns the final status."""
        counts = self.store.counts()
        if counts["in_flight"] == 0 and counts["proposed"] >= self.config.search.num_individuals:
            return self.status()                                     # finished: no executor to start
        executor = executor or make_executor(self.config.search)
        last = 0.0
        try:
            for row in self.store.pending():                      # in flight when the last controller stopped
                self._dispatch(executor, row.id, DNA.from_dict(row.dna), row.canonical_hash)
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
                for completion in executor.wait(timeout=progress_every):
                    self._complete(completion)
                if on_progress is not None and time.monotonic() - last >= progress_every:
                    on_progress(self.status())
                    last = time.monotonic()
        finally:
            executor.shutdown()
            if self._writer is not None:
                self._writer.flush()
        status = self.status()
        if on_progress is not None:
            on_progress(status)
        return status

    def close(self) -> None:
        self.store.close()


def read_status(store: RunStore, since: float | None = None, done_before: int = 0) -> Status:
    """The status of a run from its store (works while a controller runs)."""
    counts = store.counts()
    config = config_from_dict(store.config)
    top = store.top(1)
    elapsed = time.time() - (since if since is not None else store.meta_get("created_at"))
    rate = (counts["done"] - done_before) / elapsed * 3600 if elapsed > 0 else 0.0
    stopped = store.stopped_fractions()
    trained = sum(1 for row in store.completed() if row.status == "ok" and row.cached_from is None)
    return Status(done=counts["done"], in_flight=counts["proposed"] - counts["done"],
                  target=config.search.num_individuals, by_status=counts["by_status"],
                  best=(top[0].id, top[0].fitness) if top else None, evaluations_per_hour=rate,
                  cache_hits=counts["cache_hits"], hurdle_stops=counts["hurdle_stops"],
                  hurdle_compute_saved=hurdles.compute_saved(stopped, trained))
