"""The six mutation types of the Primer search (So et al. 2021, appendix A.4), and one for the macro-options.

Every mutation takes `(dna, rng, max_instructions)` (insert and delete_insert also `priors`) and returns
`(child, detail)`: the child DNA (validated by its constructor) or None when the mutation does not apply to this
DNA, and a one-line detail such as "insert S2.3 CONV_1X1 in1=1 dim=d[2]" (or why it does not apply). All
randomness comes from the `random.Random` passed in. Subprograms, instructions, fields and bank entries are picked
uniformly (the paper: "selections and decisions are performed uniform randomly unless specified otherwise"),
except where `search.priors` (`SearchPriors`) shapes an insert; `SearchPriors(preset="uniform")` is the paper's
uniform draw. States are numbered as in `primer_search.program.dna`: a subprogram's inputs are h0 and h1, instruction i
writes h(i + 2), the last state is the output. A child has the parent's banks, macro-options and subprogram names
unless the mutation changes them, and the name "" (it is a new program; naming candidates is the controller's
job).

Each type's rule is its function's docstring; `mutate` draws a type by `MutationWeights` and retries no-ops.
"""

from __future__ import annotations

import collections
import dataclasses
import functools
import math
import random
from typing import Callable

import primitives
from primer_search.config import MutationWeights
from primer_search.program.dna import BRANCHING, DNA, NUM_CONSTANTS, NUM_DIMENSIONS, RELATIVE_DIMENSIONS, DNAError, \
    Instruction
from primer_search.program.graph import canonical_hash
from primer_search.program.macro_options import MUTATION_GRIDS, SECTIONS, mutable_knobs
from primer_search.program.search_space import SearchPriors, live_wires, new_instruction

Result = tuple["DNA | None", str]
Programs = list[tuple[Instruction, ...]]     # the instructions of each subprogram, replaced one subprogram at a time


@dataclasses.dataclass(frozen=True)
class Mutation:
    """What `mutate` did: the type (a key of MUTATIONS), a one-line detail, and the child's canonical hash."""

    kind: str
    detail: str
    child_hash: str = ""


# ----------------------------------------------------------------------------------------------------- helpers


def _describe(ins: Instruction) -> str:
    """The op and the fields it reads, e.g. "CONV_1X1 in1=1 dim=d[2]"."""
    parts = [ins.op]
    for field in ins.reads():
        value = getattr(ins, field)
        if field == "const":
            parts.append(f"const=c[{value}]")
        elif field == "dim":
            parts.append(f"dim=d[{value}]")
        elif field != "branch" or value != 1:
            parts.append(f"{field}={value}")
    return " ".join(parts)


def _programs(dna: DNA) -> Programs:
    return [sp.instructions for sp in dna.subprograms]


def _child(dna: DNA, programs: Programs) -> DNA:
    """The child DNA with these instructions (validated by the DNA constructor)."""
    subprograms = tuple(sp if sp.instructions is ins else dataclasses.replace(sp, instructions=tuple(ins))
                        for sp, ins in zip(dna.subprograms, programs))
    return dna.replace(subprograms=subprograms, name="")


def _renumber(ins: Instruction, remap) -> Instruction:
    in1, in2 = remap(ins.in1), remap(ins.in2)
    if in1 == ins.in1 and in2 == ins.in2:
        return ins
    return Instruction(ins.op, in1, in2, ins.const, ins.dim, ins.branch)


def _remove(instructions: tuple, p: int) -> tuple:
    """Remove instruction p; later reads of its state go to its input 1, later states shift down."""
    removed, fallback = p + 2, instructions[p].in1

    def remap(state: int) -> int:
        return state if state < removed else fallback if state == removed else state - 1

    return instructions[:p] + tuple(_renumber(ins, remap) for ins in instructions[p + 1:])


def _add(instructions: tuple, p: int, new: Instruction) -> tuple:
    """Insert `new` at p, spliced into the wire of its input 1; later states shift up."""
    added, wire = p + 2, new.in1

    def remap(state: int) -> int:
        return added if state == wire else state if state < added else state + 1

    return instructions[:p] + (new,) + tuple(_renumber(ins, remap) for ins in instructions[p:])


def _where(priors: SearchPriors) -> str:
    return "running " if priors.insert_placement == "live" else ""


def _pick(rng: random.Random, candidates: list):
    return rng.choice(candidates) if candidates else None


def _delete_in(programs: Programs, rng: random.Random) -> str | None:
    s = _pick(rng, [s for s, ins in enumerate(programs) if len(ins) > 1])
    if s is None:
        return None
    p = rng.randrange(len(programs[s]))
    detail = f"delete S{s}.{p} {_describe(programs[s][p])}"
    programs[s] = _remove(programs[s], p)
    return detail


def _insert_in(programs: Programs, rng: random.Random, max_instructions: int | None, priors: SearchPriors,
               dna: DNA) -> str | None:
    def room(s: int) -> bool:
        return max_instructions is None or len(programs[s]) < max_instructions

    if priors.insert_placement == "anywhere":
        s = _pick(rng, [s for s in range(len(programs)) if room(s)])
        if s is None:
            return None
        p = rng.randint(0, len(programs[s]))
        new = new_instruction(rng, priors, s, p, len(programs))
    else:
        wires = live_wires(programs, [sp.memo if sp.instructions is ins else None     # unchanged: memoized
                                      for sp, ins in zip(dna.subprograms, programs)])
        s = _pick(rng, [s for s in range(len(programs)) if wires[s] is not None and room(s)])
        if s is None:
            return None
        p = rng.choice([p for p, states in enumerate(wires[s]) if states])     # the end always qualifies
        new = new_instruction(rng, priors, s, p, len(programs), inputs=wires[s][p])
    rewired = sum(getattr(ins, field) == new.in1 for ins in programs[s][p:] for field in ins.reads()
                  if field in ("in1", "in2"))
    programs[s] = _add(programs[s], p, new)
    return f"insert S{s}.{p} {_describe(new)}" + (f" (rewires {rewired} reads of h{new.in1})" if rewired else "")


# --------------------------------------------------------------------------------------------------- mutations


def delete(dna: DNA, rng: random.Random, max_instructions: int | None = None) -> Result:
    """Remove an instruction (a subprogram keeps at least one). Later reads of the removed state are redirected to the
    removed instruction's input 1, so the graph stays connected: the instruction is cut out of its wire (x -> op ->
    y becomes x -> y). Later states shift down by one."""
    programs = _programs(dna)
    detail = _delete_in(programs, rng)
    if detail is None:
        return None, "delete: not applicable, every subprogram has a single instruction"
    return _child(dna, programs), detail


def insert(dna: DNA, rng: random.Random, max_instructions: int | None = None,
           priors: SearchPriors = SearchPriors()) -> Result:
    """Insert a new instruction (`search_space.new_instruction`, drawn under the `SearchPriors`) into a subprogram that
    has fewer than `max_instructions` instructions, splicing it into the wire of its input 1: later reads of that
    state x now read the new state (like an in-place update `x = op(x, ...)` in a register machine), and later
    states shift up by one. Without the splice a new instruction before the end could never be read (no existing
    reference can name a new state), so it would always be dead code and rejected as a no-op; with it, delete
    exactly undoes insert. Where it lands: `insert_placement: anywhere` (the paper) draws the subprogram, a position
    0..len and input 1 uniformly, so many inserts splice into a wire no live instruction reads and are rejected as
    no-ops; `live` draws them uniformly among the subprograms that run, the positions with a live wire and the live
    wires there (`search_space.live_wires`; at the end, the output's), so an insert is never dead code and every
    instruction that was live stays live."""
    programs = _programs(dna)
    detail = _insert_in(programs, rng, max_instructions, priors, dna)
    if detail is None:
        return None, f"insert: not applicable, every {_where(priors)}subprogram has max_instructions={max_instructions}"
    return _child(dna, programs), detail


def delete_insert(dna: DNA, rng: random.Random, max_instructions: int | None = None,
                  priors: SearchPriors = SearchPriors()) -> Result:
    """A delete followed by an insert (Helmuth et al.), each in its own uniformly drawn subprogram."""
    programs = _programs(dna)
    removed = _delete_in(programs, rng)
    if removed is None:
        return None, "delete_insert: not applicable, every subprogram has a single instruction"
    added = _insert_in(programs, rng, max_instructions, priors, dna)
    if added is None:
        return None, (f"delete_insert: not applicable, no {_where(priors)}subprogram below "
                      f"max_instructions={max_instructions}")
    return _child(dna, programs), f"delete_insert: {removed}; {added}"


def _new_value(rng: random.Random, field: str, ins: Instruction, s: int, i: int, num_subprograms: int):
    if field == "op":
        vocabulary = primitives.names() + tuple(f"S{n}" for n in range(s + 1, num_subprograms))
    elif field in ("in1", "in2"):
        vocabulary = range(i + 2)
    elif field == "const":
        vocabulary = range(NUM_CONSTANTS)
    elif field == "dim":
        vocabulary = range(NUM_DIMENSIONS)
    else:
        vocabulary = BRANCHING
    current = getattr(ins, field)
    return rng.choice([v for v in vocabulary if v != current])


def _show(field: str, value) -> str:
    return f"c[{value}]" if field == "const" else f"d[{value}]" if field == "dim" else str(value)


def mutate_field(dna: DNA, rng: random.Random, max_instructions: int | None = None) -> Result:
    """Change one field the instruction reads (its op always; in1/in2/const/dim as its op reads them, calls read in1
    and in2; and branch) to a different valid value: a state 0..i+1, a bank index, a branching from `BRANCHING`, or
    an op from the primitives and the calls of higher subprograms."""
    s = rng.randrange(len(dna.subprograms))
    instructions = dna.subprograms[s].instructions
    i = rng.randrange(len(instructions))
    ins = instructions[i]
    field = rng.choice(("op",) + ins.reads())
    value = _new_value(rng, field, ins, s, i, len(dna.subprograms))
    programs = _programs(dna)
    programs[s] = instructions[:i] + (dataclasses.replace(ins, **{field: value}),) + instructions[i + 1:]
    old = getattr(ins, field)
    return _child(dna, programs), f"mutate_field S{s}.{i} {field} {_show(field, old)}->{_show(field, value)}"


def _operation(ins: Instruction) -> tuple:
    return ins.op, ins.const, ins.dim, ins.branch


def _has_two_operations(instructions: tuple) -> bool:
    """Whether two of the instructions have different operations (stops at the first that differs)."""
    first = _operation(instructions[0])
    return any(_operation(ins) != first for ins in instructions[1:])


def swap(dna: DNA, rng: random.Random, max_instructions: int | None = None) -> Result:
    """Exchange two instructions' places in the compute graph. Paper: "Swap the position of two instructions ... The
    input tensors for each instruction are also swapped so that the net effect is switching the positions of the
    instructions in the compute graph." Read here as: the two instructions' operations (op, const, dim, branch)
    change places while in1/in2 stay with the positions, so each position keeps its input wiring and its readers. A
    chain x -> A -> B -> y becomes x -> B -> A -> y; independent A and B each take the other's inputs and readers.
    The child is always valid and is a no-op only when the two operations are equal (such pairs are not drawn).
    Moving A and B with their own inputs and renumbering readers to follow them would be the identity on the graph
    (always rejected as a no-op), so it cannot be what the paper means."""
    s = _pick(rng, [s for s, sp in enumerate(dna.subprograms) if _has_two_operations(sp.instructions)])
    if s is None:
        return None, "swap: not applicable, no subprogram has two instructions with different operations"
    instructions = dna.subprograms[s].instructions
    while True:                      # terminates: the subprogram has two different operations
        a, b = sorted(rng.sample(range(len(instructions)), 2))
        if _operation(instructions[a]) != _operation(instructions[b]):
            break
    x, y = instructions[a], instructions[b]
    programs = _programs(dna)
    edited = list(instructions)
    edited[a] = Instruction(y.op, x.in1, x.in2, y.const, y.dim, y.branch)
    edited[b] = Instruction(x.op, y.in1, y.in2, x.const, x.dim, x.branch)
    programs[s] = tuple(edited)
    return _child(dna, programs), f"swap S{s}.{a}<->S{s}.{b} ({x.op}<->{y.op})"


def mutate_bank(dna: DNA, rng: random.Random, max_instructions: int | None = None) -> Result:
    """Change a relative dimension to another value of `RELATIVE_DIMENSIONS`, or a constant by c_new = c_prev * 10**X +
    Y with X, Y ~ N(0, 1) (drawn in that order with `rng.gauss`). The bank (dimensions or constants) is drawn first,
    then the entry."""
    if rng.random() < 0.5:
        k = rng.randrange(NUM_DIMENSIONS)
        old = dna.dimensions[k]
        new = rng.choice([v for v in RELATIVE_DIMENSIONS if v != old])
        bank = dna.dimensions[:k] + (new,) + dna.dimensions[k + 1:]
        return dna.replace(dimensions=bank, name=""), f"mutate_bank d[{k}] {old}->{new}"
    k = rng.randrange(NUM_CONSTANTS)
    old = dna.constants[k]
    x = rng.gauss(0.0, 1.0)
    y = rng.gauss(0.0, 1.0)
    try:
        new = old * 10.0 ** x + y
    except OverflowError:
        new = math.inf
    if not math.isfinite(new):
        return None, f"mutate_bank c[{k}]: {old!r} * 10**{x:.3g} + {y:.3g} is not finite"
    bank = dna.constants[:k] + (new,) + dna.constants[k + 1:]
    return dna.replace(constants=bank, name=""), f"mutate_bank c[{k}] {old:.4g}->{new:.4g}"


def mutate_macro(dna: DNA, rng: random.Random, max_instructions: int | None = None,
                 sections: tuple[str, ...] = SECTIONS) -> Result:
    """Toggle a macro-option (`primer_search.program.macro_options`) or change one knob of an enabled one to another
    value of its `MUTATION_GRIDS` entry, drawn uniformly among the legal moves: disable an enabled section, enable a
    disabled one that the search allows (`sections`) and that combines with those enabled, or set a knob. Enabling
    keeps the section's knobs (defaults for a new DNA). Not in the paper: its weight defaults to 0."""
    options = dna.macro_options
    moves = [("disable", s) for s in SECTIONS if options.enabled(s)]
    for section in sections:
        if not options.enabled(section):
            try:
                options.replace(section, enabled=True)
                moves.append(("enable", section))
            except ValueError:              # does not combine with an enabled section
                pass
    moves += [("set", knob) for knob in mutable_knobs(options)]
    if not moves:
        return None, "macro not applicable: no macro-option is enabled and none may be (search.macro_options)"
    action, target = _pick(rng, moves)
    if action != "set":
        child = options.replace(target, enabled=action == "enable")
        return dna.replace(macro_options=child, name=""), f"macro {action} {target}"
    section, knob = target
    old = getattr(getattr(options, section), knob)
    new = rng.choice([v for v in MUTATION_GRIDS[target] if v != old])
    child = options.replace(section, **{knob: new})
    return dna.replace(macro_options=child, name=""), f"macro {section}.{knob} {old}->{new}"


MutationFn = Callable[[DNA, random.Random, "int | None"], Result]
MUTATIONS: dict[str, MutationFn] = {
    "delete": delete,
    "insert": insert,
    "delete_insert": delete_insert,
    "mutate_field": mutate_field,
    "swap": swap,
    "mutate_bank": mutate_bank,
    "macro": mutate_macro,
}


# ------------------------------------------------------------------------------------------------------ mutate


def _check_arguments(weights, priors, max_instructions, max_tries) -> None:
    if not isinstance(weights, MutationWeights):
        raise TypeError(f"mutate: weights must be a MutationWeights, found {type(weights).__name__}")
    if not isinstance(priors, SearchPriors):
        raise TypeError(f"mutate: priors must be a SearchPriors, found {type(priors).__name__}")
    for name, value in (("max_instructions", max_instructions), ("max_tries", max_tries)):
        if isinstance(value, bool) or not isinstance(value, int) or value < 1:
            raise ValueError(f"mutate: {name} must be an integer >= 1, found {value!r}")


def mutate(dna: DNA, rng: random.Random, weights: MutationWeights, max_instructions: int, max_tries: int = 1000,
           parent_hash: str | None = None, macro_sections: tuple[str, ...] = SECTIONS,
           priors: SearchPriors = SearchPriors()) -> tuple[DNA, Mutation]:
    """One mutation that changes the computation: a type drawn by `weights`, retried on no-ops.

    A try fails when the type does not apply, the child is invalid (DNAError) or its canonical hash equals the
    parent's. `parent_hash` (the parent's `canonical_hash`, when the caller keeps it) saves lowering the parent.
    `macro_sections` are the macro-options a `macro` mutation may switch on; `priors` (the config's
    `search.priors`) how inserts draw their instruction.
    After `max_tries` failed tries, raise a ValueError that counts what happened.

    The returned `Mutation` carries the child's hash, so a caller need not lower the child again, and a caller that
    keeps its members' hashes passes `parent_hash` so the parent is not lowered either (each lowering is a few
    hundred microseconds for a Transformer-sized program). `max_tries` defaults to 1000: in a program whose output
    depends on few of its instructions most mutations hit dead code; such programs arise by drift and can need
    dozens of tries (one seen with ~3% of tries changing the graph, where 100 tries fail about 5% of the time).
    """
    _check_arguments(weights, priors, max_instructions, max_tries)
    functions = dict(MUTATIONS, insert=functools.partial(insert, priors=priors),
                     delete_insert=functools.partial(delete_insert, priors=priors),
                     macro=functools.partial(mutate_macro, sections=macro_sections))
    kinds = list(functions)
    probabilities = [getattr(weights, kind) for kind in kinds]
    if parent_hash is None:
        parent_hash = canonical_hash(dna)
    failures = collections.Counter()
    for _ in range(max_tries):
        kind = rng.choices(kinds, probabilities)[0]
        try:
            child, detail = functions[kind](dna, rng, max_instructions)
        except DNAError:
            failures[f"{kind} invalid"] += 1
            continue
        if child is None:
            failures[f"{kind} not applicable"] += 1
            continue
        child_hash = canonical_hash(child)
        if child_hash == parent_hash:
            failures[f"{kind} no-op"] += 1
            continue
        return child, Mutation(kind, detail, child_hash)
    counts = ", ".join(f"{what}: {n}" for what, n in sorted(failures.items()))
    raise ValueError(f"mutate: no mutation of DNA {dna.name or '<unnamed>'!r} changed its computation in "
                     f"{max_tries} tries ({counts}); expected a positive weight on a mutation type that applies "
                     f"(weights: {dataclasses.asdict(weights)}, max_instructions={max_instructions}, "
                     f"insert_placement={priors.insert_placement})")
