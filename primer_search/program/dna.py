"""The DNA: an indexed list of subprograms of instructions, with shared value banks and macro-options.

Subprogram 0 is MAIN. An instruction's op is a primitive (see `primitives/README.md`) or a call `S<n>` of a
subprogram with a higher index n (so there are no cycles). Every instruction carries the whole argument set:
`in1`, `in2` (hidden-state indices; a subprogram's inputs are states 0 and 1, instruction i writes state i + 2),
`const` (index into the 2-value constants bank), `dim` (index into the 6-value bank of relative dimensions) and
`branch` (how many parallel copies run, concatenated on the feature axis). Ops ignore the fields they do not read.

Files: `primer_search.program.dna_files`. Validation is strict and every error names the subprogram, instruction
and field.
"""

from __future__ import annotations

import dataclasses
import functools
import json
import math
import re

import primitives
from primer_search.program.macro_options import MacroOptions

FORMAT_VERSION = 1
RELATIVE_DIMENSIONS = (1, 2, 4, 8, 12, 16, 24, 32, 48, 64)
BRANCHING = (1, 2, 4, 8, 16)
NUM_CONSTANTS = 2
NUM_DIMENSIONS = 6
FIELDS = ("in1", "in2", "const", "dim", "branch")
_CALL = re.compile(r"^S(\d+)$")


class DNAError(ValueError):
    """A DNA (file, dict or object) that breaks the schema; the message names where and what is allowed."""


@dataclasses.dataclass(frozen=True)
class Instruction:
    op: str
    in1: int = 0
    in2: int = 0
    const: int = 0
    dim: int = 0
    branch: int = 1

    @property
    def callee(self) -> int | None:
        """The subprogram index this instruction calls, or None for a primitive."""
        return _callee(self.op)

    def reads(self) -> tuple[str, ...]:
        """The argument fields this instruction's op reads (a call reads both inputs)."""
        return _reads(self.op)

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)


# `Instruction.callee` and `reads` depend only on the op, and lowering and mutations ask for them at every
# instruction of every child the search proposes: cached by op name.

@functools.lru_cache(maxsize=1024)
def _callee(op: str) -> int | None:
    match = _CALL.match(op)
    return int(match.group(1)) if match else None


@functools.lru_cache(maxsize=1024)
def _reads(op: str) -> tuple[str, ...]:
    if _callee(op) is not None:
        return ("in1", "in2", "branch")
    return primitives.get(op).reads + ("branch",)


@dataclasses.dataclass(frozen=True)
class Subprogram:
    instructions: tuple[Instruction, ...]
    name: str = ""

    @property
    def memo(self) -> dict:
        """Results derived from this subprogram (where it passed validation here, its liveness in `graph`), each
        under its own key. Children share most subprograms with their parent, so the search computes these once per
        subprogram instead of once per child. Kept only while `instructions` is a tuple (a list could change); not
        part of the value (equality, hashing and files ignore it). Values should be tuples of plain values, which
        the garbage collector stops tracking: a search keeps many subprograms alive."""
        if not isinstance(self.instructions, tuple):
            return {}
        if "_memo" not in self.__dict__:
            self.__dict__["_memo"] = {}
        return self.__dict__["_memo"]


@dataclasses.dataclass(frozen=True)
class DNA:
    subprograms: tuple[Subprogram, ...]
    constants: tuple[float, ...] = (0.0, 0.125)
    dimensions: tuple[int, ...] = (1, 2, 4, 8, 16, 32)
    macro_options: MacroOptions = MacroOptions()
    name: str = ""

    def __post_init__(self):
        validate(self)

    def to_dict(self) -> dict:
        return {
            "format_version": FORMAT_VERSION,
            "name": self.name,
            "constants": [float(c) for c in self.constants],
            "dimensions": list(self.dimensions),
            "macro_options": self.macro_options.to_dict(),
            "subprograms": [{"name": sp.name, "instructions": [ins.to_dict() for ins in sp.instructions]}
                            for sp in self.subprograms],
        }

    @classmethod
    def from_dict(cls, data) -> "DNA":
        return from_dict(data)

    def replace(self, **changes) -> "DNA":
        return dataclasses.replace(self, **changes)

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), indent=1)


def _where(s: int, i: int | None = None, sp: Subprogram | None = None) -> str:
    label = f"S{s}" + (f" ({sp.name})" if sp is not None and sp.name else "")
    return label if i is None else f"{label} instruction {i} (writes h{i + 2})"


# The integer fields of an instruction at position i: (field, ok(value, i), allowed(i)). `allowed` formats the
# message only when a check fails (validation runs for every child the search proposes, so it must be cheap).
_INT_FIELDS = (
    ("in1", lambda v, i: 0 <= v <= i + 1, lambda i: f"0..{i + 1} (h0, h1 and states written before it)"),
    ("in2", lambda v, i: 0 <= v <= i + 1, lambda i: f"0..{i + 1} (h0, h1 and states written before it)"),
    ("const", lambda v, i: 0 <= v < NUM_CONSTANTS,
     lambda i: f"0..{NUM_CONSTANTS - 1} (index into the constants bank)"),
    ("dim", lambda v, i: 0 <= v < NUM_DIMENSIONS,
     lambda i: f"0..{NUM_DIMENSIONS - 1} (index into the dimensions bank)"),
    ("branch", lambda v, i: v in BRANCHING, lambda i: f"one of {list(BRANCHING)}"),
)


def validate(dna: DNA) -> None:
    """Check every field of every instruction and both banks; raise DNAError naming the first problem."""
    if len(dna.constants) != NUM_CONSTANTS or not all(
            isinstance(c, (int, float)) and not isinstance(c, bool) and math.isfinite(c) for c in dna.constants):
        raise DNAError(f"constants bank: found {list(dna.constants)!r}, allowed exactly {NUM_CONSTANTS} finite "
                       "numbers")
    if len(dna.dimensions) != NUM_DIMENSIONS or not all(
            d in RELATIVE_DIMENSIONS and not isinstance(d, bool) for d in dna.dimensions):
        raise DNAError(f"dimensions bank: found {list(dna.dimensions)!r}, allowed exactly {NUM_DIMENSIONS} values "
                       f"from {list(RELATIVE_DIMENSIONS)}")
    if not dna.subprograms:
        raise DNAError("subprograms: found none, allowed one or more (S0 is MAIN)")
    if not isinstance(dna.macro_options, MacroOptions):
        raise DNAError(f"macro_options: found {type(dna.macro_options).__name__}, expected MacroOptions")
    n = len(dna.subprograms)
    for s, sp in enumerate(dna.subprograms):
        memo = sp.memo
        if memo.get("valid_at") != (s, n):          # its checks depend on nothing but s and n
            _check_subprogram(sp, s, n)
            memo["valid_at"] = (s, n)


def _check_subprogram(sp: Subprogram, s: int, n: int) -> None:
    """Raise DNAError for the first problem of subprogram s of n."""
    if not sp.instructions:
        raise DNAError(f"{_where(s, sp=sp)}: found no instructions, allowed one or more (the last "
                       "instruction's state is the subprogram's output)")
    for i, ins in enumerate(sp.instructions):
        problem = _op_problem(ins, s, n) or _field_problem(ins, i)
        if problem:
            raise DNAError(f"{_where(s, i, sp)}, {problem}")


def _op_problem(ins: Instruction, s: int, n: int) -> str | None:
    """What is wrong with the op of an instruction in subprogram s of n, or None."""
    if not isinstance(ins.op, str):
        return f"field op: found {ins.op!r}, allowed a primitive name or S<n>"
    callee = ins.callee
    if callee is None:
        try:
            primitives.get(ins.op)
        except ValueError as err:
            return f"field op: {err}"
    elif not s < callee < n:
        allowed = f"S{s + 1}..S{n - 1}" if s + 1 < n else "none (no subprogram has a higher index)"
        return (f"field op: found call {ins.op}, allowed calls of subprograms with a higher index than S{s}: "
                f"{allowed}")
    return None


def _field_problem(ins: Instruction, i: int) -> str | None:
    """What is wrong with the integer fields of instruction i (each must be an int, not a bool, in range), or None."""
    for field, ok, allowed in _INT_FIELDS:
        value = getattr(ins, field)
        if isinstance(value, bool) or not isinstance(value, int) or not ok(value, i):
            return f"field {field}: found {value!r}, allowed {allowed(i)}"
    return None


_TOP_KEYS = ("format_version", "name", "constants", "dimensions", "macro_options", "subprograms")


def _unknown_keys(data: dict, allowed, where: str) -> None:
    unknown = sorted(set(data) - set(allowed), key=str)
    if unknown:
        raise DNAError(f"{where}: unknown key {unknown[0]!r}, allowed keys: {', '.join(allowed)}")


def from_dict(data) -> DNA:
    """Build and validate a DNA from plain data (as parsed from YAML or JSON)."""
    if not isinstance(data, dict):
        raise DNAError(f"DNA: found {type(data).__name__}, expected a mapping with keys {', '.join(_TOP_KEYS)}")
    _unknown_keys(data, _TOP_KEYS, "DNA")
    version = data.get("format_version", FORMAT_VERSION)
    if version != FORMAT_VERSION:
        raise DNAError(f"format_version: found {version!r}, this version of primer-search reads {FORMAT_VERSION}")
    subprograms = data.get("subprograms")
    if not isinstance(subprograms, list):
        raise DNAError(f"subprograms: found {type(subprograms).__name__}, expected a list of subprograms")
    built = []
    for s, sp in enumerate(subprograms):
        if not isinstance(sp, dict):
            raise DNAError(f"S{s}: found {type(sp).__name__}, expected a mapping with keys name, instructions")
        _unknown_keys(sp, ("name", "instructions"), f"S{s}")
        instructions = sp.get("instructions")
        if not isinstance(instructions, list):
            raise DNAError(f"S{s}, instructions: found {type(instructions).__name__}, expected a list")
        built.append(Subprogram(tuple(_instruction(ins, f"S{s} instruction {i}")
                                      for i, ins in enumerate(instructions)), str(sp.get("name", ""))))
    banks = {}
    for key in ("constants", "dimensions"):
        if key in data:
            if not isinstance(data[key], list):
                raise DNAError(f"{key} bank: found {data[key]!r}, expected a list")
            banks[key] = tuple(data[key])
    try:
        macro = MacroOptions.from_dict(data.get("macro_options") or {})
    except ValueError as err:
        raise DNAError(str(err)) from None
    return DNA(subprograms=tuple(built), macro_options=macro, name=str(data.get("name") or ""), **banks)


def _instruction(data, where: str) -> Instruction:
    if not isinstance(data, dict) or "op" not in data:
        raise DNAError(f"{where}: found {data!r}, expected a mapping with an 'op' and fields {', '.join(FIELDS)}")
    _unknown_keys(data, ("op",) + FIELDS, where)
    return Instruction(**data)


# ----------------------------------------------------------------------------------------------------- files
