"""Random instructions and random DNAs over the full vocabulary (for insert mutations and property tests).

Every draw comes from the `random.Random` passed in; nothing here touches module-level random state.
"""

from __future__ import annotations

import random

import primitives
from primer_search.dna import BRANCHING, DNA, NUM_CONSTANTS, NUM_DIMENSIONS, RELATIVE_DIMENSIONS, Instruction, \
    Subprogram


def random_instruction(rng: random.Random, subprogram: int, position: int, num_subprograms: int,
                       call_probability: float = 0.2, branch_probability: float = 0.1,
                       ops=None, chain_probability: float = 0.0) -> Instruction:
    """A uniformly random instruction valid at `position` of subprogram `subprogram`.

    `ops` restricts the primitives drawn; with `chain_probability` input 1 is the previous state, which makes
    deeper programs (useful for property tests).
    """
    callees = [f"S{n}" for n in range(subprogram + 1, num_subprograms)]
    if callees and rng.random() < call_probability:
        op = rng.choice(callees)
    else:
        op = rng.choice(ops or primitives.names())
    branch = rng.choice(BRANCHING[1:]) if rng.random() < branch_probability else 1
    in1 = position + 1 if rng.random() < chain_probability else rng.randint(0, position + 1)
    return Instruction(op=op, in1=in1, in2=rng.randint(0, position + 1),
                       const=rng.randrange(NUM_CONSTANTS), dim=rng.randrange(NUM_DIMENSIONS), branch=branch)


def random_dna(rng: random.Random, num_subprograms: int = 3, max_instructions: int = 8,
               dimensions=RELATIVE_DIMENSIONS, **kwargs) -> DNA:
    """A random DNA: random instructions, calls of higher subprograms, banks drawn from their vocabularies."""
    subprograms = []
    for s in range(num_subprograms):
        length = rng.randint(1, max_instructions)
        subprograms.append(Subprogram(tuple(random_instruction(rng, s, i, num_subprograms, **kwargs)
                                            for i in range(length))))
    constants = tuple(round(rng.gauss(0.0, 1.0), 3) for _ in range(NUM_CONSTANTS))
    bank = tuple(rng.choice(dimensions) for _ in range(NUM_DIMENSIONS))
    return DNA(subprograms=tuple(subprograms), constants=constants, dimensions=bank, name="random")
