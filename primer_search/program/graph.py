"""Lowering a DNA to a flat graph: calls inlined, branching made explicit, dead code removed, softmax fused.

The graph is pure Python (no tensors): the compiler runs it, and it also gives the canonical hash, the parameter
count for any size unit, and a readable resolved listing. Nodes are in topological order; node 0 is INPUT, the
last node is OUTPUT. Each node knows its signature (kind and symbolic width) and its multiplicity `mult`, the
number of branch copies it runs as (its weights get a leading axis of that size).

Pseudo-ops beside the primitives (the paper's BRANCH_k_INPUT / BRANCH_MERGE):
    INPUT    the block input [B, S, d], as states h0 and h1 of MAIN
    SPLIT    enter a branched instruction: k copies of the input (shared, so nothing is copied until it differs)
    MERGE    leave it: concatenate the k copies on the feature axis (a positions tensor is collapsed first)
    SOFTMAX  fused DIVIDE(MASK(EXP(x)), RED_SUM(MASK(EXP(x)))) on positions, computed stably (see compiler docs)
    OUTPUT   the final state brought to width d (collapse positions; a single column broadcasts; else cut/pad)
"""

from __future__ import annotations

import dataclasses
import hashlib
import json

import primitives
from primitives import FEATURES, POSITIONS, SINGLE, Sig, Width, features
from primer_search.program.dna import DNA, Instruction


@dataclasses.dataclass(frozen=True)
class Node:
    id: int
    op: str
    inputs: tuple[int, ...]
    sig: Sig
    mult: int = 1
    const: float | None = None
    dim: Width | None = None
    k: int = 1
    path: str = ""                       # the instruction it comes from, e.g. "S0.1-S1.3-S3.0"
    input_sigs: tuple[Sig, ...] = ()

    def weight_specs(self):
        if not primitives.is_primitive(self.op):
            return {}
        return primitives.get(self.op).weight_specs(self.input_sigs[0], self.dim)


@dataclasses.dataclass(frozen=True)
class Graph:
    """Nodes in topological order, each node's id its position; INPUT first, OUTPUT last."""

    nodes: tuple[Node, ...]
    width_units: int
    macro_options: dict

    @property
    def output(self) -> Node:
        return self.nodes[-1]

    def parameter_count(self, unit: int) -> int:
        total = 0
        for node in self.nodes:
            for spec in node.weight_specs().values():
                size = node.mult
                for d in spec.absolute_shape(unit):
                    size *= d
                total += size
        return total

    def canonical_hash(self) -> str:
        """Hash of the computation: op records in a canonical (depth-first from the output) order."""
        return _hash_nodes(self.nodes, self.macro_options)

    def listing(self) -> str:
        lines = []
        for n in self.nodes:
            args = ", ".join(f"n{i}" for i in n.inputs)
            extra = "".join([f" c={n.const!r}" if n.const is not None else "",
                             f" dim={n.dim}" if n.dim is not None else "",
                             f" k={n.k}" if n.op in ("SPLIT", "MERGE") else "",
                             f" x{n.mult}" if n.mult > 1 else ""])
            lines.append(f"n{n.id} = {n.op}({args}){extra}  {n.sig}  # {n.path}")
        return "\n".join(lines)


def _hash_nodes(nodes, macro_options: dict) -> str:
    """The canonical hash of a node list whose last node is OUTPUT and whose node ids are list positions.

    Records are numbered in depth-first order from the output, so nodes the output does not reach (dead code, the
    leftovers of softmax fusion) and the nodes' own ids do not change the hash: pruned or not, it is the same.
    """
    records = _records(nodes)
    payload = json.dumps({"format": 1, "nodes": records, "macro_options": macro_options}, sort_keys=True,
                         check_circular=False)      # the same text; records cannot be circular
    return hashlib.sha256(payload.encode()).hexdigest()[:16]


def _records(nodes) -> list:
    """One record [op, const, dim, k, input records' numbers] per node the output reaches, numbered in depth-first
    post-order (inputs left to right, then the node). Iterative, so a program of any depth hashes."""
    number: list = [None] * len(nodes)
    records: list = []
    stack = [(len(nodes) - 1, False)]
    while stack:
        node_id, inputs_done = stack.pop()
        if number[node_id] is not None:
            continue
        node = nodes[node_id]
        if not inputs_done:
            stack.append((node_id, True))
            stack.extend((i, False) for i in reversed(node.inputs))
            continue
        dim = [node.dim.units, node.dim.ones] if node.dim is not None else None
        number[node_id] = len(records)
        records.append([node.op, node.const, dim, node.k, [number[i] for i in node.inputs]])
    return records


def used_inputs_and_live(dna: DNA) -> tuple[list[frozenset[int]], list[frozenset[int]]]:
    """For each subprogram: which of its inputs (0, 1) reach its output, and which instructions are live."""
    uses, live = _liveness(dna)
    return [frozenset(u) for u in uses], [frozenset(a) for a in live]


def _liveness(dna: DNA) -> tuple[list[tuple[int, ...]], list[tuple[int, ...]]]:
    """`used_inputs_and_live` as sorted tuples. Subprogram s's part depends only on its instructions and on what
    the subprograms after it use (calls go to higher indices), so it is memoized on the subprogram under that key."""
    n = len(dna.subprograms)
    uses: list[tuple[int, ...]] = [()] * n
    live: list[tuple[int, ...]] = [()] * n
    for s in reversed(range(n)):
        memo = dna.subprograms[s].memo
        key = ("liveness", s, tuple(uses[s + 1:]))
        if key not in memo:
            memo[key] = _subprogram_liveness(dna.subprograms[s].instructions, uses)
        uses[s], live[s] = memo[key]
    return uses, live


def _subprogram_liveness(instructions, uses) -> tuple[tuple[int, ...], tuple[int, ...]]:
    """The inputs (0, 1) a subprogram's output depends on, and its live instructions, given its callees' uses."""
    needed = {len(instructions) + 1}
    alive = []
    for i in reversed(range(len(instructions))):
        if i + 2 not in needed:
            continue
        alive.append(i)
        needed.update(_read_states(instructions[i], uses))
    return tuple(sorted(needed & {0, 1})), tuple(reversed(alive))


def _read_states(ins: Instruction, uses) -> list[int]:
    callee = ins.callee
    if callee is not None:
        return [state for state, slot in ((ins.in1, 0), (ins.in2, 1)) if slot in uses[callee]]
    return [ins.in1, ins.in2][:primitives.get(ins.op).arity]


@dataclasses.dataclass(slots=True)
class _Draft:
    """A node while the graph is built: like `Node`, but cheap to make (not frozen, and without `input_sigs`,
    which pruning fills in when it makes the final nodes). Its id is its position in the list of drafts."""

    id: int
    op: str
    inputs: tuple[int, ...]
    sig: Sig
    mult: int
    path: str
    const: float | None = None
    dim: Width | None = None
    k: int = 1


class _Builder:
    def __init__(self, dna: DNA, paths: bool = True):
        self.dna = dna
        self.paths = paths              # name nodes by their instruction (listings, weights); hashing needs no names
        self.uses, self.live = _liveness(dna)
        self.widths = [Width(d) for d in dna.dimensions]          # the banks as node fields, converted once
        self.constants = [float(c) for c in dna.constants]
        self.drafts: list[_Draft] = []

    def add(self, op: str, inputs, sig: Sig, mult: int, path: str, const=None, dim=None, k: int = 1) -> _Draft:
        draft = _Draft(len(self.drafts), op, tuple([i.id for i in inputs]), sig, mult, path, const, dim, k)
        self.drafts.append(draft)
        return draft

    def subprogram(self, s: int, inputs, mult: int, path: str) -> _Draft:
        instructions = self.dna.subprograms[s].instructions
        states = {0: inputs[0], 1: inputs[1]}
        for i in self.live[s]:
            states[i + 2] = self.instruction(instructions[i], states, mult, f"{path}.{i}" if self.paths else "")
        return states[len(instructions) + 1]

    def instruction(self, ins: Instruction, states, mult: int, path: str) -> _Draft:
        callee = ins.callee
        if callee is not None:
            uses = self.uses[callee]
            args = [states[ins.in1] if 0 in uses else None, states[ins.in2] if 1 in uses else None]
        else:
            spec = primitives.get(ins.op)
            args = [states[ins.in1], states[ins.in2]] if spec.arity == 2 else [states[ins.in1]]
        k, inner = ins.branch, mult * ins.branch
        if k > 1:
            args = [self.add("SPLIT", (a,), a.sig, inner, path, k=k) if a is not None else None for a in args]
        if callee is not None:
            out = self.subprogram(callee, args, inner, f"{path}-S{callee}" if self.paths else "")
        else:
            dim = self.widths[ins.dim] if primitives.DIM in spec.reads else None
            const = self.constants[ins.const] if primitives.CONST in spec.reads else None
            sig = spec.shape(*[a.sig for a in args], dim=dim)
            out = self.add(ins.op, args, sig, inner, path, const, dim)
        if k > 1:
            width = out.sig.width if out.sig.kind == FEATURES else SINGLE
            out = self.add("MERGE", (out,), features(width.times(k)), mult, path, k=k)
        return out


def _fuse_softmax(drafts: list[_Draft]) -> list[_Draft]:
    """DIVIDE(MASK(EXP(x)), RED_SUM(MASK(EXP(x)))) on positions -> SOFTMAX(x)."""
    fused = []
    for n in drafts:
        if n.op == "DIVIDE" and n.sig.kind == POSITIONS:
            masked, total = drafts[n.inputs[0]], drafts[n.inputs[1]]
            if (masked.op == "MASK" and masked.sig.kind == POSITIONS and drafts[masked.inputs[0]].op == "EXP"
                    and total.op == "RED_SUM" and total.inputs == (masked.id,)):
                source = drafts[drafts[masked.inputs[0]].inputs[0]]
                n = dataclasses.replace(n, op="SOFTMAX", inputs=(source.id,))
        fused.append(n)
    return fused


def _prune(drafts: list[_Draft]) -> list[Node]:
    """The nodes the output depends on, renumbered in order."""
    needed, stack = set(), [len(drafts) - 1]
    while stack:
        draft_id = stack.pop()
        if draft_id not in needed:
            needed.add(draft_id)
            stack.extend(drafts[draft_id].inputs)
    kept = [d for d in drafts if d.id in needed]
    renumber = {d.id: i for i, d in enumerate(kept)}
    return [Node(id=renumber[d.id], op=d.op, inputs=tuple(renumber[i] for i in d.inputs), sig=d.sig, mult=d.mult,
                 const=d.const, dim=d.dim, k=d.k, path=d.path, input_sigs=tuple(drafts[i].sig for i in d.inputs))
            for d in kept]


def _build(dna: DNA, width_units: int, paths: bool = True) -> list[_Draft]:
    """The unfused, unpruned graph of the DNA: live instructions only, calls inlined."""
    builder = _Builder(dna, paths)
    x = builder.add("INPUT", (), features(Width(width_units)), 1, "input")
    out = builder.subprogram(0, (x, x), 1, "S0")
    builder.add("OUTPUT", (out,), features(Width(width_units)), 1, "output")
    return builder.drafts


def lower(dna: DNA, width_units: int = 8, fuse: bool = True) -> Graph:
    """Lower a DNA to its graph for a block of width `width_units` size units."""
    drafts = _build(dna, width_units)
    if fuse:
        drafts = _fuse_softmax(drafts)
    return Graph(tuple(_prune(drafts)), width_units, dna.macro_options.canonical())


def canonical_hash(dna: DNA) -> str:
    """The DNA's computation hash: dead instructions and state numbering do not change it.

    Equal to `lower(dna).canonical_hash()` (the width does not matter) but skips naming the nodes and pruning, which
    renumbers them into frozen `Node`s: the hash never sees names, unreachable nodes or node ids (see `_hash_nodes`).
    The search hashes every child it proposes, so this is its hot path.
    """
    return _hash_nodes(_fuse_softmax(_build(dna, width_units=8, paths=False)), dna.macro_options.canonical())
