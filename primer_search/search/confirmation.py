"""Confirmation, the Primer paper's selection protocol: retrain a run's best programs and its seeds longer, with
several training seeds, on text the search never ranked on, and compare them with the seeds.

`confirm(run_dir, k, seeds, budget_multiplier)` takes the top `k` programs of a run (status ok, by search
fitness, one per finding as `select_programs` says, the seeds' own programs left out) and the run's seed programs
(the individuals without parent), and trains each with the same `seeds` training seeds (training.seed +
SEED_OFFSET + 1, + 2, ...: paired, and never the seed a search evaluated with) at `budget_multiplier` x the
search's budget (same kind), measuring the data config's test split (`data.evaluation: test`) at every 5% of the
budget and at the end.
Each training is stored in the run store (`RunStore.record_confirmation`) as it finishes, keyed by
(individual, training seed, multiplier, setup): the setup names the trial config apart from the seed (model,
data, training), so a re-run reuses what is stored and trains only what is missing. Under common random numbers a
program trains alike in every run of a setup, so `reuse` copies another run's trainings of the same program
(canonical hash) and training seed instead of repeating them (e.g. the seed, shared by several searches).

Reported per program: the mean and 95% t confidence interval of the final metric (`search.metric`) over the
training seeds; against each seed program, per training seed, the speedup factor (`primer_search.search.speedup`,
So et al. 2021 section 4), the factors' geometric mean and the 95% t interval of their logarithms (ratios average
on the log scale), and the two-sided paired t-test of the final metric (program against seed, paired by training
seed).
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
from typing import Callable, Sequence

from primer_search.config import Config, config_from_dict
from primer_search.program.dna import DNA
from primer_search.search import stats
from primer_search.search.run_database import RunInUse
from primer_search.search.speedup import Speedup, curve_of, speedup_factor
from primer_search.search.store import REUSABLE_STATUSES, ConfirmationRecord, RunStore
from primer_search.search.trial import run_evaluations

CURVE_FRACTIONS = tuple(i / 20 for i in range(1, 20))   # a test-split point every 5% of the budget
SEED_OFFSET = 10_000          # confirmation training seeds: training.seed + SEED_OFFSET + 1 ... + S
LEVEL = 0.95                  # of the confidence intervals
# Programs that differ only in ways that hardly change the function (a rescaled linear path, a swap of commuting
# ops) score alike to about 1e-5 under common random numbers, far below the training-seed noise (~1e-2 nats in
# discovery.yaml); confirming each would spend the budget on one finding. Distinct programs tie this closely
# rarely.
SAME_FINDING = 1e-4


# -- the summary -------------------------------------------------------------------------------------------------

@dataclasses.dataclass(frozen=True)
class Comparison:
    """A program against one seed program, paired by training seed."""

    seed_id: int
    speedups: tuple[Speedup | None, ...]     # per training seed (None: either training failed)
    speedup_mean: float | None               # geometric mean
    speedup_interval: tuple[float, float] | None   # 95% t interval of the log factors, exponentiated
    difference: float | None                 # mean of program - seed, final metric
    p_value: float | None                    # two-sided paired t-test

    @property
    def pairs(self) -> int:
        """Training seeds where both trainings finished (the factors and the test are over these)."""
        return sum(s is not None for s in self.speedups)

    @property
    def bounds(self) -> tuple[int, int]:
        """(lower bounds, upper bounds) among the speedups."""
        kinds = [s.kind for s in self.speedups if s is not None]
        return kinds.count("lower_bound"), kinds.count("upper_bound")


@dataclasses.dataclass(frozen=True)
class ProgramConfirmation:
    individual_id: int
    role: str                                # "seed" or "top"
    canonical_hash: str | None
    search_fitness: float | None
    values: tuple[float | None, ...]         # final metric per training seed (None: not ok)
    statuses: tuple[str | None, ...]         # per training seed (None: not trained yet)
    mean: float | None
    ci: float | None                         # half width of the 95% t interval
    comparisons: tuple[Comparison, ...]      # against each seed program (none for a seed itself)


@dataclasses.dataclass(frozen=True)
class Confirmation:
    metric: str
    budget_multiplier: float
    budget: float                            # the confirmation budget: search budget x multiplier
    budget_kind: str
    test_split: str                          # e.g. "data.test_fraction 0.1"
    training_seeds: tuple[int, ...]
    programs: tuple[ProgramConfirmation, ...]
    trained: int = 0                         # trainings run by this call
    reused: int = 0                          # stored trainings reused
    copied: int = 0                          # of those, copied from other runs by this call
    setup: str = ""                          # `setup_key` of what was measured

    def program(self, individual_id: int) -> ProgramConfirmation | None:
        return next((p for p in self.programs if p.individual_id == individual_id), None)


def _compare(program: dict, seed: dict, seed_id: int, metric: str, training_seeds) -> Comparison:
    """`program`, `seed`: training seed -> ConfirmationRecord."""
    speedups, a, b = [], [], []
    for s in training_seeds:
        p, q = program.get(s), seed.get(s)
        if p is None or q is None or p.status != "ok" or q.status != "ok" or not p.curve or not q.curve:
            speedups.append(None)
            continue
        speedups.append(speedup_factor(q.curve, p.curve, metric))
        a.append(getattr(p, metric))
        b.append(getattr(q, metric))
    values = [s.value for s in speedups if s is not None]
    centre, interval = stats.geometric_interval(values, LEVEL)
    test = stats.paired_t_test(a, b)
    return Comparison(seed_id, tuple(speedups), centre, interval,
                      stats.mean([x - y for x, y in zip(a, b)]) if a else None, None if test is None else test[1])


def summarize(records: Sequence[ConfirmationRecord], individuals, metric: str, training_seeds: Sequence[int],
              budget: tuple[float, float, str], test_split: str) -> Confirmation:
    """The confirmation of stored trainings of `individuals` (store Individuals; the seeds are those without a
    parent); `budget` is (multiplier, confirmation budget, budget kind)."""
    by_program: dict[int, dict[int, ConfirmationRecord]] = {}
    for record in records:
        by_program.setdefault(record.individual_id, {})[record.training_seed] = record
    seeds = [i.id for i in individuals if i.parent_id is None]
    programs = []
    for ind in individuals:
        runs = by_program.get(ind.id, {})
        values = [getattr(runs[s], metric) if s in runs and runs[s].status == "ok" else None for s in training_seeds]
        measured = [v for v in values if v is not None]
        comparisons = () if ind.parent_id is None else tuple(
            _compare(runs, by_program.get(seed, {}), seed, metric, training_seeds) for seed in seeds)
        programs.append(ProgramConfirmation(
            ind.id, "seed" if ind.parent_id is None else "top", ind.canonical_hash, ind.fitness, tuple(values),
            tuple(runs[s].status if s in runs else None for s in training_seeds),
            stats.mean(measured) if measured else None, stats.confidence_half_width(measured, LEVEL), comparisons))
    multiplier, amount, kind = budget
    return Confirmation(metric, multiplier, amount, kind, test_split, tuple(training_seeds), tuple(programs))


# -- running it ---------------------------------------------------------------------------------------------------

def describe_test_split(config: Config) -> str:
    data = config.data
    if data.test_files:
        return f"data.test_files {list(data.test_files)}"
    if data.test_split:
        return f"data.test_split {data.test_split!r}"
    return f"data.test_fraction {data.test_fraction:g}"


def trial_config(config: Config, multiplier: float, training_seed: int) -> Config:
    """The config a confirmation trains under: `multiplier` x the budget and its time limits, a point every 5%,
    measured on the test split; no hurdles (nothing is stopped)."""
    def scaled(limit):
        return None if limit is None else limit * multiplier

    return config.replace(
        training={"budget": config.training.budget * multiplier, "checkpoints": list(CURVE_FRACTIONS),
                  "seed": training_seed, "timeout_seconds": scaled(config.training.timeout_seconds)},
        data={"evaluation": "test"},
        search={"hurdles": 0, "trial_timeout_seconds": scaled(config.search.trial_timeout_seconds)})


def setup_key(config: Config) -> str:
    """A name of what a confirmation measures apart from the training seed: the model, data and training keys
    (where files are cached, the seed and the time limits left out)."""
    data = config.to_dict()
    for section, keys in (("data", ("cache_dir", "tfds_data_dir")),
                          ("training", ("seed", "timeout_seconds", "memory_limit_gb"))):
        for key in keys:
            data[section].pop(key, None)
    text = json.dumps({key: data[key] for key in ("model", "data", "training")}, sort_keys=True)
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def select_programs(store: RunStore, k: int) -> list:
    """The run's seed programs (distinct hashes, id order), then its top `k` other programs by fitness, one per
    finding: a program is left out when its fitness ties a chosen one's to SAME_FINDING, or when the two descend
    from a common program (or one from the other) that scored within the seed's calibrated standard deviation of
    both: edits the search could not tell from noise, which a converged population is full of."""
    chosen, hashes = [], set()
    for ind in store.individuals_without_parent():
        if ind.canonical_hash not in hashes:
            chosen.append(ind)
            hashes.add(ind.canonical_hash)
    calibration = store.meta_get("calibration")
    sigma = (calibration["programs"][0]["final"]["std"] if calibration else None) or 0.0
    lineage = _Lineage(store)
    seeds, n = len(chosen), 4 * k
    while True:
        rows = store.top(n)
        top, taken = [], set(hashes)
        for ind in rows:
            if ind.canonical_hash in taken or any(_same_finding(other, ind, sigma, lineage)
                                                  for other in chosen[:seeds] + top):
                continue
            top.append(ind)
            taken.add(ind.canonical_hash)
        if len(top) >= k or len(rows) < n:
            return chosen + top[:k]
        n *= 4


def _same_finding(a, b, sigma: float, lineage: "_Lineage") -> bool:
    if a.fitness is None or b.fitness is None:
        return False
    if abs(a.fitness - b.fitness) < SAME_FINDING:
        return True
    return any(abs(fitness - a.fitness) < sigma and abs(fitness - b.fitness) < sigma
               for fitness in lineage.common_ancestry(a, b))


class _Lineage:
    """Ancestry by parent links, each individual read from the store once."""

    def __init__(self, store: RunStore):
        self._store, self._read, self._lines = store, {}, {}

    def _line(self, individual) -> dict[int, float | None]:
        """The individual and its ancestors: id -> fitness (None unless its status is ok)."""
        if individual.id not in self._lines:
            line, at = {}, individual
            while at is not None and at.id not in line:
                line[at.id] = at.fitness if at.status == "ok" else None
                if at.parent_id is None:
                    break
                if at.parent_id not in self._read:
                    self._read[at.parent_id] = self._store.individual(at.parent_id)
                at = self._read[at.parent_id]
            self._lines[individual.id] = line
        return self._lines[individual.id]

    def common_ancestry(self, a, b) -> list[float]:
        """The fitnesses of the programs both descend from (themselves included), where known."""
        line_a, line_b = self._line(a), self._line(b)
        return [fitness for id_, fitness in line_a.items() if id_ in line_b and fitness is not None]


def _open(run_dir) -> RunStore:
    try:
        return RunStore.open(run_dir, lock=True)
    except RunInUse as err:
        raise ValueError(f"{err}; confirm writes to the run store, so it waits until the search has stopped") \
            from None


def confirm(run_dir, k: int = 5, seeds: int = 5, budget_multiplier: float = 1.0, overrides=(), executor=None,
            on_result: Callable[[int, int, dict], None] | None = None, reuse: Sequence = ()) -> Confirmation:
    """Retrain the top `k` programs of the run and its seeds (see the module docstring) and summarize;
    `on_result(individual_id, training_seed, result)` is called as each training finishes. Trainings that the
    runs in `reuse` hold for the same program, setup, multiplier and training seed are copied, not repeated."""
    for name, value, least in (("k", k, 1), ("seeds", seeds, 1)):
        if value < least:
            raise ValueError(f"{name}: found {value}, expected at least {least}")
    if not budget_multiplier > 0:
        raise ValueError(f"budget multiplier: found {budget_multiplier}, expected a positive number")
    with _open(run_dir) as store:
        config = config_from_dict(store.config, overrides)
        if not config.data.has_test_split:
            keys = " or ".join(f"--set data.{key}=..." for key in config.data.TEST_SPLIT_KEYS[config.data.source])
            example = "test" if config.data.source == "lm1b" else "0.1"
            raise ValueError(f"{run_dir}: its config (data.source: {config.data.source}) has no test split to confirm "
                             f"on; expected {keys} (e.g. {keys.split(' or ')[0].replace('...', example)})")
        programs = select_programs(store, k)
        training_seeds = [config.training.seed + SEED_OFFSET + i for i in range(1, seeds + 1)]
        configs = {s: trial_config(config, budget_multiplier, s) for s in training_seeds}
        setup = setup_key(configs[training_seeds[0]])
        stored = {(r.individual_id, r.training_seed) for r in store.confirmations(setup, budget_multiplier)
                  if r.status in REUSABLE_STATUSES}
        todo = [(ind, s) for s in training_seeds for ind in programs if (ind.id, s) not in stored]
        copied = copy_trainings(reuse, store, todo, setup, budget_multiplier)
        todo = [(ind, s) for ind, s in todo if (ind.id, s) not in copied]
        jobs = [(DNA.from_dict(ind.dna), configs[s]) for ind, s in todo]

        trial = configs[training_seeds[0]].training
        split = describe_test_split(config)
        if not any(store.config.get("data", {}).get(key) for key in ("test_fraction", "test_files", "test_split")):
            split += ", set for confirm: the search trained on it, never ranked on it"
        store.meta_set(f"confirmation:{setup}:{budget_multiplier:g}",
                       {"training_seeds": training_seeds, "test_split": split,
                        "budget": trial.budget, "budget_kind": trial.budget_kind, "metric": config.search.metric})

        def record(index: int, result: dict) -> None:
            ind, s = todo[index]
            store.record_confirmation(ind.id, s, budget_multiplier, setup, result, curve_of(result))
            if on_result is not None:
                on_result(ind.id, s, result)

        if jobs:
            run_evaluations(config.search, jobs, executor, record)
        summary = summarize(store.confirmations(setup, budget_multiplier), programs, config.search.metric,
                            training_seeds, (budget_multiplier, trial.budget, trial.budget_kind), split)
    return dataclasses.replace(summary, trained=len(todo), reused=len(programs) * seeds - len(todo),
                               copied=len(copied), setup=setup)


def copy_trainings(run_dirs: Sequence, store: RunStore, todo, setup: str, multiplier: float) -> set:
    """Copy into `store` the trainings of `todo` ((individual, training seed) pairs) that a run in `run_dirs`
    holds for the same program (canonical hash), setup and multiplier; the (individual id, training seed) copied."""
    wanted = {(ind.canonical_hash, s): ind.id for ind, s in todo}
    copied = set()
    for run_dir in run_dirs:
        with RunStore.open(run_dir) as other:
            hashes = {}
            for record in other.confirmations(setup, multiplier):
                if record.status not in REUSABLE_STATUSES:
                    continue
                if record.individual_id not in hashes:
                    hashes[record.individual_id] = other.individual(record.individual_id).canonical_hash
                target = wanted.get((hashes[record.individual_id], record.training_seed))
                if target is not None and (target, record.training_seed) not in copied:
                    store.record_confirmation(target, record.training_seed, multiplier, setup, record.metrics,
                                              record.curve)
                    copied.add((target, record.training_seed))
    return copied


def stored_confirmation(store: RunStore, setup: str | None = None,
                        budget_multiplier: float | None = None) -> Confirmation | None:
    """A confirmation stored in a run: of `setup` and `budget_multiplier`, else the latest (for `top` and `show`);
    None if there is none."""
    records = store.confirmations()
    if setup is None and records:
        setup, budget_multiplier = records[-1].setup, records[-1].budget_multiplier
    records = [r for r in records if (r.setup, r.budget_multiplier) == (setup, budget_multiplier)]
    info = store.meta_get(f"confirmation:{setup}:{budget_multiplier:g}") if records else None
    if info is None:
        return None
    ids = sorted({r.individual_id for r in records})
    individuals = sorted((store.individual(i) for i in ids),
                         key=lambda i: (i.parent_id is not None, i.fitness is None, i.fitness or 0.0, i.id))
    summary = summarize(records, individuals, info["metric"], info["training_seeds"],
                        (budget_multiplier, info["budget"], info["budget_kind"]), info["test_split"])
    return dataclasses.replace(summary, setup=setup)


def compare_best(confirmation: Confirmation, run_dir, reference_dir) -> tuple[int, int, Comparison]:
    """(best, reference best, comparison): the best program (lowest mean) of `confirmation`, a confirmation of
    `run_dir`, against the best program of `reference_dir` confirmed alike (same setup, multiplier and training
    seeds; e.g. random search against evolution), paired by training seed as a program against a seed. Each best is
    chosen on the trainings it is then compared on, so the figures favour the better of each run's top k a little."""
    c = confirmation
    with RunStore.open(reference_dir) as store:
        theirs = stored_confirmation(store, c.setup, c.budget_multiplier)
        other_records = store.confirmations(c.setup, c.budget_multiplier)
    with RunStore.open(run_dir) as store:
        records = store.confirmations(c.setup, c.budget_multiplier)
    if theirs is None or theirs.training_seeds != c.training_seeds:
        found = "none" if theirs is None else f"training seeds {list(theirs.training_seeds)}"
        raise ValueError(f"{reference_dir}: found {found} confirmed at {c.budget_multiplier:g}x of the same model, "
                         f"data and budget (setup {c.setup}), expected training seeds {list(c.training_seeds)}: "
                         f"`primer-search confirm {reference_dir}` with the same --seeds and --budget-multiplier")
    best = [_best(x, directory) for x, directory in ((c, run_dir), (theirs, reference_dir))]
    runs = [{r.training_seed: r for r in rs if r.individual_id == b} for rs, b in zip((records, other_records), best)]
    return best[0], best[1], _compare(*runs, best[1], c.metric, c.training_seeds)


def _best(confirmation: Confirmation, run_dir) -> int:
    top = [p for p in confirmation.programs if p.role == "top" and p.mean is not None]
    if not top:
        raise ValueError(f"{run_dir}: no confirmed program besides the seeds; expected a run whose top programs "
                         f"trained")
    return min(top, key=lambda p: p.mean).individual_id
