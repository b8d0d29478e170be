"""Random instructions and random DNAs: what an insert mutation draws, under the priors of `search.priors`.

`OP_FAMILIES` groups the primitives as the registry's modules do (pointwise, sequence, parametric), finer where
the priors weigh groups differently. `live_wires` says where an inserted instruction would be read, so inserts
can land only there (`insert_placement: live`). Every draw comes from the `random.Random` passed in; nothing here
touches module-level random state.
"""

from __future__ import annotations

import dataclasses
import functools
import itertools
import random

import primitives
from primer_search.program.dna import BRANCHING, DNA, NUM_CONSTANTS, NUM_DIMENSIONS, RELATIVE_DIMENSIONS, Instruction, \
    Subprogram
from primer_search.program.schema import between, choice

# Every primitive in exactly one family (tests/test_search_space.py checks this against the registry).
OP_FAMILIES: dict[str, tuple[str, ...]] = {
    "arithmetic": ("ADD", "DIFFERENCE", "DIVIDE", "MULTIPLY"),                      # pointwise, binary
    "math": ("ABS_ROOT", "SQUARE", "EXP", "LOG", "C_MUL", "ABS", "RECIP", "SIGN"),   # pointwise, unary
    "nonlinearity": ("COS", "SIN", "TANH", "MAX", "MIN", "SIGMOID"),                # pointwise, unary
    "sequence": ("MASK", "CUM_PROD", "CUM_SUM"),                                    # along the sequence, same shape
    "reduction": ("RED_MEAN", "RED_SUM", "RED_MIN", "RED_MAX", "RED_PROD"),         # to one column
    "matmul": ("MAT_MUL", "T_MAT_MUL"),
    "dense": ("CONV_1X1",),
    "conv": ("CONV_3X1", "CONV_7X1", "CONV_15X1", "CONV_31X1"),
    "dconv": ("DCONV_3X1", "DCONV_7X1", "DCONV_15X1", "DCONV_31X1"),
    "scale_shift": ("SCALE", "SHIFT"),
}


# How an insert draws its new instruction (README, "Search-space priors"). `uniform` is the paper's draw (So et al.
# 2021, A.4: "selections and decisions are performed uniform randomly"): every primitive alike, anywhere.
OP_FAMILY_NAMES = tuple(OP_FAMILIES)
PRIOR_PRESETS = {
    "default": {"op_families": {"arithmetic": 1.0, "math": 2.0, "nonlinearity": 2.0, "sequence": 1.0,
                                "reduction": 0.5, "matmul": 1.0, "dense": 1.0, "conv": 1.0, "dconv": 2.0,
                                "scale_shift": 2.0},
                "call_probability": 0.1, "branch_probability": 0.05, "insert_placement": "live"},
    "uniform": {"op_families": dict.fromkeys(OP_FAMILY_NAMES, 1.0),
                "call_probability": 0.2, "branch_probability": 0.1, "insert_placement": "anywhere"},
}


@dataclasses.dataclass(frozen=True)
class OpFamilyWeights:
    """The weight of each primitive of a family when an insert draws a new instruction's op (relative; every op of a
    family weighs the same; `primer_search.program.search_space.OP_FAMILIES` lists the members). Unset: the preset's."""

    arithmetic: float | None = between(None, 0.0)     # ADD DIFFERENCE DIVIDE MULTIPLY
    math: float | None = between(None, 0.0)           # ABS_ROOT SQUARE EXP LOG C_MUL ABS RECIP SIGN
    nonlinearity: float | None = between(None, 0.0)   # COS SIN TANH MAX MIN SIGMOID
    sequence: float | None = between(None, 0.0)       # MASK CUM_PROD CUM_SUM
    reduction: float | None = between(None, 0.0)      # RED_MEAN RED_SUM RED_MIN RED_MAX RED_PROD
    matmul: float | None = between(None, 0.0)         # MAT_MUL T_MAT_MUL
    dense: float | None = between(None, 0.0)          # CONV_1X1
    conv: float | None = between(None, 0.0)           # CONV_3X1 CONV_7X1 CONV_15X1 CONV_31X1
    dconv: float | None = between(None, 0.0)          # DCONV_3X1 DCONV_7X1 DCONV_15X1 DCONV_31X1
    scale_shift: float | None = between(None, 0.0)    # SCALE SHIFT


@dataclasses.dataclass(frozen=True)
class SearchPriors:
    """How an insert mutation draws its instruction: the op mix by family, how often a new instruction calls a
    higher subprogram or is branched, and where it lands (`live`: only on a wire that a live instruction reads, so
    it is never dead code; `anywhere`: any position and input, as the paper). `preset` fills every key left unset;
    once built, every key holds the value in effect."""

    preset: str = choice("default", "default", "uniform")
    op_families: OpFamilyWeights = OpFamilyWeights()
    call_probability: float | None = between(None, 0.0, 1.0)     # where the subprogram has higher subprograms
    branch_probability: float | None = between(None, 0.0, 1.0)   # branched: k drawn from 2, 4, 8, 16
    insert_placement: str | None = None                            # live or anywhere

    def __post_init__(self):
        if self.preset not in PRIOR_PRESETS:
            raise ValueError(f"preset: found {self.preset!r}, expected one of {list(PRIOR_PRESETS)}")
        preset = PRIOR_PRESETS[self.preset]
        families = {name: preset["op_families"][name] if value is None else value
                    for name, value in dataclasses.asdict(self.op_families).items()}
        if not any(families.values()):
            raise ValueError("op_families: found all weights zero, expected at least one positive weight")
        if self.insert_placement not in (None, "live", "anywhere"):
            raise ValueError(f"insert_placement: found {self.insert_placement!r}, expected one of ['live', 'anywhere']")
        object.__setattr__(self, "op_families", OpFamilyWeights(**families))
        for key in ("call_probability", "branch_probability", "insert_placement"):
            if getattr(self, key) is None:
                object.__setattr__(self, key, preset[key])


def family_of(op: str) -> str:
    """The family of a primitive; a ValueError for a primitive no family lists."""
    for family, members in OP_FAMILIES.items():
        if op in members:
            return family
    raise ValueError(f"primitive {op!r} has no family, expected it in one of search_space.OP_FAMILIES "
                     f"({', '.join(OP_FAMILIES)})")


@functools.lru_cache(maxsize=64)
def op_draw(priors: SearchPriors) -> tuple[tuple[str, ...], tuple[float, ...] | None]:
    """The primitives an insert may draw under `priors` (catalogue order) and their cumulative weights, or None
    when every primitive weighs the same (then the draw is `rng.choice`, the paper's uniform draw)."""
    weights = {op: getattr(priors.op_families, family_of(op)) for op in primitives.names()}
    ops = tuple(op for op, weight in weights.items() if weight > 0)
    if len({weights[op] for op in ops}) == 1 and len(ops) == len(weights):
        return ops, None
    return ops, tuple(itertools.accumulate(weights[op] for op in ops))


def random_instruction(rng: random.Random, subprogram: int, position: int, num_subprograms: int,
                       call_probability: float = 0.2, branch_probability: float = 0.1,
                       ops=None, chain_probability: float = 0.0, cum_weights=None, inputs=None) -> Instruction:
    """A random instruction valid at `position` of subprogram `subprogram`.

    With probability `call_probability` (where higher subprograms exist) it calls one of them, uniformly; else its
    op is drawn from `ops` (default: every primitive), uniformly or by `cum_weights` (cumulative, aligned with
    `ops`). It is branched (k uniform in 2..16) with probability `branch_probability`. Input 1 is drawn from
    `inputs` (default: any state 0..position+1); with `chain_probability` it is the previous state instead, which
    makes deeper programs (useful for property tests). The other fields are uniform.
    """
    callees = [f"S{n}" for n in range(subprogram + 1, num_subprograms)]
    if callees and rng.random() < call_probability:
        op = rng.choice(callees)
    elif cum_weights is not None:
        op = rng.choices(ops, cum_weights=cum_weights)[0]
    else:
        op = rng.choice(ops or primitives.names())
    branch = rng.choice(BRANCHING[1:]) if rng.random() < branch_probability else 1
    if inputs is not None:
        in1 = rng.choice(inputs)
    else:
        in1 = position + 1 if rng.random() < chain_probability else rng.randint(0, position + 1)
    return Instruction(op=op, in1=in1, in2=rng.randint(0, position + 1),
                       const=rng.randrange(NUM_CONSTANTS), dim=rng.randrange(NUM_DIMENSIONS), branch=branch)


def new_instruction(rng: random.Random, priors: SearchPriors, subprogram: int, position: int,
                    num_subprograms: int, inputs=None) -> Instruction:
    """The instruction an insert draws under `priors` (see `random_instruction`)."""
    ops, cum_weights = op_draw(priors)
    return random_instruction(rng, subprogram, position, num_subprograms, priors.call_probability,
                              priors.branch_probability, ops=ops, cum_weights=cum_weights, inputs=inputs)


def _read_states(ins: Instruction, uses) -> list[int]:
    """The states an instruction's result depends on (a call: the inputs its callee's output uses)."""
    callee = ins.callee
    if callee is not None:
        return [state for state, slot in ((ins.in1, 0), (ins.in2, 1)) if slot in uses[callee]]
    return [ins.in1, ins.in2][:primitives.get(ins.op).arity]


def _subprogram_wires(instructions, uses) -> tuple:
    """A subprogram's inputs (0, 1) that reach its output, the subprograms its live instructions call, and its live
    wires at each position 0..len (see `live_wires`), given what the subprograms after it use."""
    needed, alive = {len(instructions) + 1}, []
    for i in range(len(instructions) - 1, -1, -1):
        if i + 2 in needed:
            states = _read_states(instructions[i], uses)
            alive.append((i, states))
            needed.update(states)
    last_reader: dict[int, int] = {}              # state -> the last live instruction that reads it
    for i, states in alive:                       # last instruction first
        for state in states:
            last_reader.setdefault(state, i)
    wires: list[list[int]] = [[] for _ in range(len(instructions))]
    for state in sorted(last_reader):             # state x is a wire at positions x - 1 .. its last reader
        for p in range(max(0, state - 1), last_reader[state] + 1):
            wires[p].append(state)
    calls = tuple(instructions[i].callee for i, _ in alive if instructions[i].callee is not None)
    return (tuple(sorted(needed & {0, 1})), calls,
            tuple(tuple(w) for w in wires) + ((len(instructions) + 1,),))      # at the end: the output's wire


def live_wires(programs, memos=None) -> list[tuple[tuple[int, ...], ...] | None]:
    """Where an insert changes the computation, for instruction lists `programs` (one tuple per subprogram).

    An insert at position p with input 1 on state x is spliced into x's wire: later readers of x read the new
    state instead. x is a live wire at p when a live instruction at p or later reads it; at the end (p = len)
    the live wire is the output, which the subprogram's caller reads (the new instruction becomes the output and
    reads the old one). An insert on a live wire is always read, and every instruction that was live stays live
    (an insert at the end reading another state would make the old output dead instead). For each subprogram:
    None when it never runs (no live instruction of a running subprogram calls it; MAIN runs), else for each
    position 0..len the live wires there.
    `memos` (optional, one dict or None per subprogram, e.g. `Subprogram.memo`) keeps each subprogram's part,
    which depends only on its instructions and on what the subprograms after it use.
    """
    n = len(programs)
    uses: list[tuple[int, ...]] = [()] * n
    calls: list[tuple[int, ...]] = [()] * n
    wires: list[tuple] = [()] * n
    for s in reversed(range(n)):                  # calls go to higher subprograms: callees first
        memo = memos[s] if memos is not None else None
        key = ("live_wires", s, tuple(uses[s + 1:]))
        part = memo.get(key) if memo is not None else None
        if part is None:
            part = _subprogram_wires(programs[s], uses)
            if memo is not None:
                memo[key] = part
        uses[s], calls[s], wires[s] = part
    runs = [s == 0 for s in range(n)]
    for s in range(n):
        if runs[s]:
            for callee in calls[s]:
                runs[callee] = True
    return [wires[s] if runs[s] else None for s in range(n)]


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
