"""Human-readable summaries of a DNA: its listing, hash, live graph and sizes (used by the CLI and notebooks)."""

from __future__ import annotations

from primer_search.dna import DNA
from primer_search.graph import lower
from primer_search.listing import to_listing
from primer_search.model import ModelConfig, choose_unit, parameter_count


def describe(dna: DNA, unit: int = 64, width_units: int = 8, show_graph: bool = False,
             model_config: ModelConfig | None = None) -> str:
    """The program listing, its canonical hash, live size and block parameters at `unit`.

    With a model config, the unit comes from sizing the whole model into the config's parameter band.
    """
    if model_config is not None:
        unit, width_units = choose_unit(dna, model_config), model_config.width_units
    graph = lower(dna, width_units)
    live = sum(1 for n in graph.nodes if n.op not in ("INPUT", "OUTPUT"))
    total = sum(len(sp.instructions) for sp in dna.subprograms)
    lines = [to_listing(dna).rstrip(),
             "",
             f"hash: {graph.canonical_hash()}",
             f"instructions: {total} in {len(dna.subprograms)} subprograms; {live} live ops after inlining",
             f"block parameters at unit {unit} (d = {width_units * unit}): {graph.parameter_count(unit):,}"]
    if model_config is not None:
        total = parameter_count(graph, model_config, unit)
        lines.append(f"model parameters ({model_config.num_layers} layers, vocab {model_config.vocab_size}): "
                     f"{total:,} (band {model_config.param_band[0]:,}..{model_config.param_band[1]:,})")
    if show_graph:
        lines += ["", "live graph:", graph.listing()]
    return "\n".join(lines)
