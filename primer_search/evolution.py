"""Regularized (aging) evolution, and random search as its baseline: which program to evaluate next.

Regularized evolution (Real et al. 2019), asynchronous and steady-state: every evaluated candidate with a fitness
enters the population and the oldest member leaves once it holds `population_size`; a parent is the best
(lowest fitness) of `tournament_size` members sampled uniformly without replacement, and its child is one mutation
away (`primer_search.mutations`). Candidates without a fitness (invalid, diverged, ...) never enter.

The initial population is copies of the seed DNAs: each distinct seed is evaluated once, and its result fills
`population_size / len(seeds)` places (evaluating identical copies would measure the same program again).
Children are proposed as soon as a seed has a fitness.

Random search proposes a seed (uniformly) mutated `random_mutations` times, with no selection.
All randomness comes from the `random.Random` passed in, so the controller can save and restore its state.
"""

from __future__ import annotations

import collections
import dataclasses
import random
from typing import Sequence

from primer_search.config import SearchConfig
from primer_search.dna import DNA
from primer_search.mutations import Mutation, mutate

PARENT_TRIES = 10


@dataclasses.dataclass(frozen=True)
class Member:
    id: int
    dna: DNA
    fitness: float
    hash: str | None = None               # canonical hash, so mutating it need not lower it again


@dataclasses.dataclass(frozen=True)
class Proposal:
    dna: DNA
    parent_id: int | None = None          # None for a seed
    mutation: Mutation | None = None


class Evolution:
    """The population and the proposal rule of one search (see the module docstring)."""

    def __init__(self, config: SearchConfig, seeds: Sequence[DNA], rng: random.Random):
        self.config, self.seeds, self.rng = config, list(seeds), rng
        self.population: collections.deque[Member] = collections.deque(maxlen=config.population_size)
        self.seed_members: list[Member] = []

    def initial_proposals(self) -> list[Proposal]:
        return [Proposal(seed) for seed in self.seeds]

    def add(self, member: Member, is_seed: bool = False) -> None:
        """A candidate evaluated with a fitness enters (a seed as its share of copies)."""
        if is_seed:
            self.seed_members.append(member)
            share, extra = divmod(self.config.population_size, len(self.seeds))
            copies = share + (len(self.seed_members) <= extra)
            self.population.extend([member] * copies)
        else:
            self.population.append(member)

    @property
    def ready(self) -> bool:
        """Whether children can be proposed: at least one seed has a fitness."""
        return bool(self.seed_members)

    def select(self) -> Member:
        """The best of `tournament_size` members sampled uniformly without replacement."""
        size = min(self.config.tournament_size, len(self.population))
        return min(self.rng.sample(list(self.population), size), key=lambda m: m.fitness)

    def propose(self) -> Proposal:
        if not self.ready:
            raise RuntimeError("no seed has been evaluated yet: propose children once `ready` is true")
        weights, limit = self.config.mutation_weights, self.config.max_instructions
        macro = self.config.macro_options
        if self.config.mode == "random":
            parent = self.rng.choice(self.seed_members)
            dna, details = parent.dna, []
            for _ in range(self.config.random_mutations):
                dna, mutation = mutate(dna, self.rng, weights, limit, macro_sections=macro)
                details.append(mutation.detail)
            return Proposal(dna, parent.id, Mutation("random", "; ".join(details), mutation.child_hash))
        for _ in range(PARENT_TRIES):
            parent = self.select()
            try:
                child, mutation = mutate(parent.dna, self.rng, weights, limit, parent_hash=parent.hash,
                                         macro_sections=macro)
            except ValueError:               # no mutation of this parent changes it: try another parent
                continue
            return Proposal(child, parent.id, mutation)
        raise ValueError(f"no mutation changed any of {PARENT_TRIES} parents drawn from the population: the "
                         f"mutation weights or max_instructions ({limit}) leave nothing to change")
