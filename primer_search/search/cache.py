"""The search's memory of programs: which proposals are the same program, which to train, which reuse a result.

A program is a function: proposals with the same canonical hash, or matching functional fingerprints
(`primer_search.search.fec`), are one program, named by its first individual (its root). Each proposal of a program
is trained until the program has `1 + reevaluations` trained evaluations, each with a training seed of its own (the
root `training.seed`, the k-th re-evaluation `training.seed + k`); later proposals reuse its result without training
(a cache hit): an evaluation that trained to the end where it has one, else its first. A program's fitness is the
mean over its evaluations that trained to the end (`ok`): every member of the population that holds it, earlier or
new, carries that mean, so a lucky initialization or data order is averaged away instead of copied into the
population by every duplicate. An evaluation stopped at a hurdle keeps its own fitness there. Everything is decided
from what was proposed and completed, in order, so replaying a run store rebuilds the same state.
"""

from __future__ import annotations

import dataclasses

from primer_search.search.fec import FingerprintIndex
from primer_search.search.store import REUSABLE_STATUSES


@dataclasses.dataclass(frozen=True)
class Plan:
    """What to do with a proposal: train it with `training_seed`, or (None) reuse its program's `result`."""

    repeat_of: int | None = None        # the program's root, unless the proposal is a new program
    training_seed: int | None = None


@dataclasses.dataclass
class Program:
    root: int
    trained: int = 0                                                    # evaluations planned for training
    finals: dict[int, float] = dataclasses.field(default_factory=dict)  # ok evaluations: id -> own fitness
    followers: list[int] = dataclasses.field(default_factory=list)      # ids whose fitness is the mean
    result: int | None = None                                           # a reusable completed evaluation
    result_status: str | None = None

    @property
    def fitness(self) -> float | None:
        return sum(self.finals.values()) / len(self.finals) if self.finals else None


class ProgramCache:
    """Programs by canonical hash, fingerprint and individual id (see the module docstring)."""

    def __init__(self, reevaluations: int, base_seed: int):
        self.reevaluations, self.base_seed = reevaluations, base_seed
        self.by_hash: dict[str, Program] = {}
        self.by_id: dict[int, Program] = {}
        self.fingerprints = FingerprintIndex()

    def find(self, canonical_hash: str | None = None, fingerprint: str | None = None) -> Program | None:
        """The known program with this hash, else with a matching fingerprint."""
        program = self.by_hash.get(canonical_hash) if canonical_hash is not None else None
        if program is None and fingerprint is not None:
            root = self.fingerprints.find(fingerprint)
            program = self.by_id[root] if root is not None else None
        return program

    def plan(self, program: Program | None, calibration: bool = False) -> Plan:
        """Train a new program with the base seed; train a known one again with its next seed while it has fewer
        than 1 + reevaluations, or always for a `calibration` (a seed's repeated evaluation); else reuse its
        result (or train again while it has none yet)."""
        if program is None:
            return Plan(training_seed=self.base_seed)
        if calibration:
            return Plan(program.root, self.base_seed + program.trained)
        if program.result_status == "invalid":                 # cannot be built: no seed changes that
            return Plan(program.root)
        if program.trained <= self.reevaluations or program.result is None:
            return Plan(program.root, self.base_seed + program.trained)
        return Plan(program.root)

    def proposed(self, individual: int, canonical_hash: str | None, fingerprint: str | None,
                 repeat_of: int | None, training_seed: int | None) -> None:
        """Register a stored proposal under its program (a new one when `repeat_of` is None)."""
        if repeat_of is None:
            program = Program(individual)
            if canonical_hash is not None:
                self.by_hash.setdefault(canonical_hash, program)
            if fingerprint is not None:
                self.fingerprints.add(individual, fingerprint)
        else:
            program = self.by_id[repeat_of]
            if canonical_hash is not None:
                self.by_hash.setdefault(canonical_hash, program)
        self.by_id[individual] = program
        program.trained += training_seed is not None

    def completed(self, individual: int, status: str, own_fitness: float | None,
                  cached_from: int | None = None) -> tuple[float | None, list[int]]:
        """Register a result; returns the individual's fitness and the other individuals whose fitness became
        the program's new mean."""
        program = self.by_id[individual]
        if cached_from is not None:                              # a cache hit: the program's current fitness
            if status == "ok" and program.fitness is not None:
                program.followers.append(individual)
                return program.fitness, []
            return own_fitness, []
        if status in REUSABLE_STATUSES and (program.result is None
                                            or (status == "ok" and program.result_status != "ok")):
            program.result, program.result_status = individual, status
        if status != "ok" or own_fitness is None:
            return own_fitness, []
        program.finals[individual] = own_fitness
        others = list(program.followers)
        program.followers.append(individual)
        return program.fitness, others
