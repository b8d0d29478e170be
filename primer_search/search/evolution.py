"""Regularized (aging) evolution, and random search as its baseline: which program to evaluate next.

Regularized evolution (Real et al. 2019), asynchronous and steady-state: every evaluated candidate with a fitness
enters the population and the oldest member leaves once it holds `population_size`; a parent is the best
(lowest fitness) of `tournament_size` members sampled uniformly without replacement, and its child is one mutation
away (`primer_search.search.mutations`). Candidates without a fitness (invalid, diverged, ...) never enter.

The initial population is copies of the seed DNAs: each seed fills `population_size / len(seeds)` places as
soon as it is proposed, so children are proposed at once (every initial member is the same program, so selection
has nothing to wait for) while the seed itself is evaluated once. A member whose fitness is not known yet loses
every tournament against a measured one; a seed that produces no fitness leaves the population.

Baselines at equal compute: `random` proposes a seed mutated `random_mutations` times, with no selection;
`hill_climb` (a random-mutation hill climber) mutates the best program measured so far.
All randomness comes from the `random.Random` passed in, so the controller can save and restore its state.
"""

from __future__ import annotations

import collections
import dataclasses
import random
from typing import Sequence

from primer_search.config import SearchConfig
from primer_search.program.dna import DNA
from primer_search.search.mutations import Mutation, mutate

PARENT_TRIES = 10


@dataclasses.dataclass(frozen=True)
class Member:
    id: int
    dna: DNA
    fitness: float | None                 # None: not measured yet (a seed in flight)
    hash: str | None = None               # canonical hash, so mutating it need not lower it again


@dataclasses.dataclass(frozen=True)
class Proposal:
    dna: DNA
    parent_id: int | None = None          # None for a seed
    mutation: Mutation | None = None


def _rank(member: Member) -> tuple[bool, float]:
    return member.fitness is None, member.fitness if member.fitness is not None else 0.0


class Evolution:
    """The population and the proposal rule of one search (see the module docstring)."""

    def __init__(self, config: SearchConfig, seeds: Sequence[DNA], rng: random.Random):
        self.config, self.seeds, self.rng = config, list(seeds), rng
        self.population: collections.deque[Member] = collections.deque(maxlen=config.population_size)
        self.seed_members: list[Member] = []
        self.seeds_added = 0              # seeds proposed so far, those that produced no fitness included
        self.best: Member | None = None   # the best measured member so far (the hill climber's parent)
        self.measured: dict[int, Member] = {}   # every member with a fitness, by id (without its DNA)

    def initial_proposals(self) -> list[Proposal]:
        return [Proposal(seed) for seed in self.seeds]

    def add(self, member: Member, is_seed: bool = False) -> None:
        """A candidate enters: a child once measured with a fitness, a seed as its share of copies as soon as it
        is proposed (its fitness may still be None; `set_fitness` fills it in)."""
        if is_seed:
            self.seed_members.append(member)
            self.seeds_added += 1         # not len(seed_members): a seed that failed before this one left it
            share, extra = divmod(self.config.population_size, len(self.seeds))
            copies = share + (self.seeds_added <= extra)
            self.population.extend([member] * copies)
        else:
            self.population.append(member)
        self._consider(member)

    def set_fitness(self, ids, fitness: float | None) -> None:
        """Members `ids` now have this fitness (a seed's result, or a program's mean over re-evaluations);
        None removes them (a seed that produced no fitness)."""
        ids = set(ids)

        def update(members):
            return [dataclasses.replace(m, fitness=fitness) if m.id in ids else m
                    for m in members if m.id not in ids or fitness is not None]

        self.population = collections.deque(update(self.population), maxlen=self.population.maxlen)
        self.seed_members = update(self.seed_members)
        self.measured = {m.id: m for m in update(self.measured.values())}
        if self.best is not None and self.best.id in ids:        # its mean moved: the best may be another now
            kept = dataclasses.replace(self.best, fitness=fitness) if fitness is not None else None
            others = [m for m in self.measured.values() if m.id not in ids]
            rival = min(others, key=_rank) if others else None
            self.best = rival if kept is None or (rival is not None and rival.fitness < kept.fitness) else kept
        for member in self.population:
            if member.id in ids:
                self._consider(member)
                break

    def _consider(self, member: Member) -> None:
        if member.fitness is None:
            return
        self.measured.setdefault(member.id, dataclasses.replace(member, dna=None))
        if self.best is None or member.fitness < self.best.fitness:
            self.best = member

    @property
    def ready(self) -> bool:
        """Whether children can be proposed: the population holds a member (a seed once proposed)."""
        return bool(self.population)

    def select(self) -> Member:
        """The best of `tournament_size` members sampled uniformly without replacement (measured ones first)."""
        size = min(self.config.tournament_size, len(self.population))
        return min(self.rng.sample(list(self.population), size), key=_rank)

    def propose(self) -> Proposal:
        if not self.ready:
            raise RuntimeError("the population is empty: propose children once `ready` is true")
        weights, limit = self.config.mutation_weights, self.config.max_instructions
        macro, priors = self.config.macro_options, self.config.priors
        if self.config.mode == "random":
            parent = self.rng.choice(self.seed_members)
            dna, details = parent.dna, []
            for _ in range(self.config.random_mutations):
                dna, mutation = mutate(dna, self.rng, weights, limit, macro_sections=macro, priors=priors)
                details.append(mutation.detail)
            return Proposal(dna, parent.id, Mutation("random", "; ".join(details), mutation.child_hash))
        for _ in range(PARENT_TRIES):
            parent = self._parent()
            try:
                child, mutation = mutate(parent.dna, self.rng, weights, limit, parent_hash=parent.hash,
                                         macro_sections=macro, priors=priors)
            except ValueError:               # no mutation of this parent changes it: try another parent
                continue
            return Proposal(child, parent.id, mutation)
        raise RuntimeError(f"no mutation changed any of {PARENT_TRIES} parents drawn from the population: the "
                           f"mutation weights or max_instructions ({limit}) leave nothing to change")

    def _parent(self) -> Member:
        if self.config.mode == "hill_climb":
            if self.best is not None and self.best.dna is None:
                raise RuntimeError(f"the best member, {self.best.id}, has no DNA: the controller fills it in")
            return self.best if self.best is not None else self.rng.choice(self.seed_members)
        return self.select()
