"""Human-readable summaries of a DNA: its listing, hash, live graph and sizes (used by the CLI and notebooks)."""

from __future__ import annotations

from primer_search.config import Config
from primer_search.lm.model_cost import cost_of
from primer_search.program.dna import DNA
from primer_search.program.graph import lower
from primer_search.program.listing import to_listing


def describe(dna: DNA, unit: int = 64, width_units: int = 8, show_graph: bool = False,
             config: Config | None = None) -> str:
    """The program listing, its canonical hash, live size and block parameters at `unit`.

    With a config, the unit comes from sizing the whole model (as its macro-options shape it) into the config's
    parameter band, and its training and sampling FLOPs are shown.
    """
    if config is not None:
        arch = cost_of(dna, config)
        unit, width_units = arch.choose_unit(), config.model.width_units
    graph = lower(dna, width_units)
    live = sum(1 for n in graph.nodes if n.op not in ("INPUT", "OUTPUT"))
    total = sum(len(sp.instructions) for sp in dna.subprograms)
    lines = [to_listing(dna).rstrip(),
             "",
             f"hash: {graph.canonical_hash()}",
             f"instructions: {total} in {len(dna.subprograms)} subprograms; {live} live ops after inlining",
             f"block parameters at unit {unit} (d = {width_units * unit}): {graph.parameter_count(unit):,}"]
    if config is not None:
        model = arch.config
        lines.append(f"model parameters ({arch.kind}, {model.num_layers} layers, vocab {model.vocab_size}): "
                     f"{arch.parameter_count(unit):,} (band {model.param_band[0]:,}..{model.param_band[1]:,})")
        lines.append(f"FLOPs per {'byte' if arch.kind == 'megabyte' else 'token'}: training "
                     f"{arch.training_flops_per_token(unit):,}, sampling {arch.sampling_flops_per_token(unit):,} "
                     f"(sequence length {arch.sequence_length}; routing and exits as configured, not measured)")
    if show_graph:
        lines += ["", "live graph:", graph.listing()]
    return "\n".join(lines)
