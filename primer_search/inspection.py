"""Human-readable summaries of a DNA: its listing, hash, live graph and sizes (used by the CLI and notebooks)."""

from __future__ import annotations

from primer_search.dna import DNA
from primer_search.graph import lower
from primer_search.listing import to_listing


def describe(dna: DNA, unit: int = 64, width_units: int = 8, show_graph: bool = False) -> str:
    """The program listing followed by its canonical hash, live size and block parameters at `unit`."""
    graph = lower(dna, width_units)
    live = sum(1 for n in graph.nodes if n.op not in ("INPUT", "OUTPUT"))
    total = sum(len(sp.instructions) for sp in dna.subprograms)
    lines = [to_listing(dna).rstrip(),
             "",
             f"hash: {graph.canonical_hash()}",
             f"instructions: {total} in {len(dna.subprograms)} subprograms; {live} live ops after inlining",
             f"block parameters at unit {unit} (d = {width_units * unit}): {graph.parameter_count(unit):,}"]
    if show_graph:
        lines += ["", "live graph:", graph.listing()]
    return "\n".join(lines)
