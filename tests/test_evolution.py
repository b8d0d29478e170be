"""Evolution on a synthetic fitness: the distance to a hidden target program (no TensorFlow, no training)."""

import dataclasses
import random

import primitives

from primer_search.config import MutationWeights, SearchConfig
from primer_search.program.dna import DNA, Instruction, Subprogram
from primer_search.program.seeds import load_seed
from primer_search.search.evolution import Evolution, Member
from primer_search.search.mutations import mutate

FIELDS = MutationWeights(delete=0, insert=0, delete_insert=0, swap=0, mutate_bank=0)
# A small program: a feed-forward block with a residual, so a target is a few specific field values away.
SMALL = DNA(subprograms=(Subprogram((
    Instruction("CONV_1X1", in1=0, dim=1), Instruction("MAX", in1=2, const=0),
    Instruction("CONV_1X1", in1=3, dim=0), Instruction("ADD", in1=4, in2=0))),),
    constants=(0.0, 1.0), dimensions=(8, 32, 1, 2, 4, 16))


def _read_fields(instruction):
    """The op and the fields it reads (unread fields do not change the program)."""
    reads = primitives.get(instruction.op).reads if primitives.is_primitive(instruction.op) else ("in1", "in2")
    return (instruction.op, *(getattr(instruction, field) for field in reads), instruction.branch)


def distance(dna, target) -> int:
    """Differing instructions (aligned by position, read fields only) plus differing bank entries."""
    total = sum(a != b for a, b in zip(dna.dimensions, target.dimensions))
    total += sum(a != b for a, b in zip(dna.constants, target.constants))
    for mine, theirs in zip(dna.subprograms, target.subprograms):
        a, b = mine.instructions, theirs.instructions
        total += sum(_read_fields(x) != _read_fields(y) for x, y in zip(a, b)) + abs(len(a) - len(b))
    return total


def hidden_target(seed_dna, rng):
    """One changed field and two changed relative dimensions."""
    target, _ = mutate(seed_dna, rng, FIELDS, 40)
    dimensions = list(target.dimensions)
    dimensions[0], dimensions[1] = 24, 12
    return target.replace(dimensions=tuple(dimensions))


def search(mode: str, target, budget: int, seed: int) -> int | None:
    """Evaluations until the target is found (None: not within the budget)."""
    config = SearchConfig(mode=mode, population_size=20, tournament_size=10, random_mutations=3,
                          mutation_weights=MutationWeights(delete=0, insert=0, delete_insert=0, swap=0))
    seed_dna = SMALL
    evolution = Evolution(config, [seed_dna], random.Random(seed))
    evolution.add(Member(0, seed_dna, distance(seed_dna, target)), is_seed=True)
    for evaluation in range(1, budget + 1):
        proposal = evolution.propose()
        fitness = distance(proposal.dna, target)
        if fitness == 0:
            return evaluation
        evolution.add(Member(evaluation, proposal.dna, fitness))
    return None


def test_evolution_finds_a_hidden_program_that_random_search_does_not():
    target = hidden_target(SMALL, random.Random(7))
    assert distance(SMALL, target) == 3
    found = [search("evolution", target, 3000, seed) for seed in range(3)]
    assert all(f is not None for f in found), found
    random_found = [search("random", target, max(found) * 2, seed) for seed in range(3)]
    assert random_found.count(None) >= 2, (found, random_found)


def test_seed_copies_fill_the_population_and_the_oldest_leaves():
    config = SearchConfig(population_size=5, tournament_size=2, seeds=("transformer", "primer_ez"))
    seeds = [load_seed("transformer"), load_seed("primer_ez")]
    evolution = Evolution(config, seeds, random.Random(0))
    assert [p.dna for p in evolution.initial_proposals()] == seeds and not evolution.ready
    evolution.add(Member(0, seeds[0], 2.0), is_seed=True)
    evolution.add(Member(1, seeds[1], 1.0), is_seed=True)
    assert [m.id for m in evolution.population] == [0, 0, 0, 1, 1] and evolution.ready
    evolution.add(Member(2, seeds[0], 3.0))
    assert [m.id for m in evolution.population] == [0, 0, 1, 1, 2]


def test_tournament_takes_the_best_of_the_sample_and_children_are_seeded():
    config = SearchConfig(population_size=4, tournament_size=4)
    seed_dna = load_seed("transformer")
    evolution = Evolution(config, [seed_dna], random.Random(0))
    for i, fitness in enumerate([3.0, 1.0, 2.0, 4.0]):
        evolution.add(Member(i, seed_dna, fitness))
    evolution.seed_members.append(Member(0, seed_dna, 3.0))
    assert evolution.select().id == 1                      # the whole population is sampled
    first = [evolution.propose() for _ in range(5)]
    again = Evolution(config, [seed_dna], random.Random(0))
    again.population, again.seed_members = evolution.population, evolution.seed_members
    again.select()                                         # the same draws as above
    assert [p.dna for p in first] == [again.propose().dna for _ in range(5)]
    assert all(p.parent_id == 1 and p.mutation is not None for p in first)


def test_proposals_follow_the_search_space_priors():
    from primer_search.program.search_space import OpFamilyWeights, SearchPriors

    only_dconv = SearchPriors(op_families=OpFamilyWeights(**{name: 0.0 for name in (
        "arithmetic", "math", "nonlinearity", "sequence", "reduction", "matmul", "dense", "conv", "scale_shift")},
        dconv=1.0), call_probability=0.0, branch_probability=0.0)
    config = SearchConfig(population_size=4, tournament_size=2, priors=only_dconv,
                          mutation_weights=MutationWeights(delete=0, delete_insert=0, mutate_field=0, swap=0,
                                                           mutate_bank=0))
    seed = load_seed("transformer")
    for mode in ("evolution", "random", "hill_climb"):
        evolution = Evolution(dataclasses.replace(config, mode=mode, random_mutations=2), [seed], random.Random(1))
        evolution.add(Member(0, seed, 1.0), is_seed=True)
        for _ in range(5):
            proposal = evolution.propose()
            assert proposal.mutation.detail.count("insert") >= 1 and "DCONV_" in proposal.mutation.detail, mode


def test_a_seed_that_fails_before_the_next_is_proposed_leaves_the_same_population_as_a_replay():
    config = SearchConfig(population_size=10, tournament_size=2, seeds=("a", "b", "c", "d"))
    seeds = [load_seed("transformer")] * 4
    live, replayed = (Evolution(config, seeds, random.Random(0)) for _ in range(2))
    for i in (1, 2):                                        # live: seed 1 fails before seeds 3 and 4 are proposed
        live.add(Member(i, seeds[0], None), is_seed=True)
    live.set_fitness([1], None)
    for i in (3, 4):
        live.add(Member(i, seeds[0], None), is_seed=True)
    for i in (1, 2, 3, 4):                                  # a replay: every proposal first, then the results
        replayed.add(Member(i, seeds[0], None), is_seed=True)
    replayed.set_fitness([1], None)
    assert [m.id for m in live.population] == [m.id for m in replayed.population] == [2, 2, 2, 3, 3, 4, 4]


def test_the_hill_climber_moves_to_another_member_when_the_best_ones_mean_gets_worse():
    config = SearchConfig(mode="hill_climb", population_size=3, tournament_size=2)
    seed_dna = load_seed("transformer")
    evolution = Evolution(config, [seed_dna], random.Random(0))
    evolution.add(Member(1, seed_dna, None), is_seed=True)
    evolution.set_fitness([1], 5.0)
    for i, fitness in ((2, 4.6), (3, 4.5), (4, 4.9), (5, 4.8)):   # 2 ages out of the population
        evolution.add(Member(i, seed_dna, fitness))
    assert evolution.best.id == 3 and evolution._parent().id == 3
    evolution.set_fitness([3], 4.55)                       # a re-evaluation: still the best
    assert (evolution.best.id, evolution.best.fitness, evolution.best.dna) == (3, 4.55, seed_dna)
    evolution.set_fitness([3], 4.7)                        # now 2, no longer in the population, is better
    assert (evolution.best.id, evolution.best.fitness, evolution.best.dna) == (2, 4.6, None)
    evolution.best = dataclasses.replace(evolution.best, dna=seed_dna)     # as the controller fills it in
    assert evolution._parent().id == 2
    evolution.set_fitness([2], None)
    assert evolution.best.id == 3
