"""Seed DNAs shipped with the package: transformer, primer_ez, primer.

A seed name may carry macro-options switched on at their defaults: `transformer+mod`, `primer+calm`,
`transformer+mod+calm`, `transformer+megabyte` (`macro_options.SHORT_NAMES`).
"""

from __future__ import annotations

import pathlib

from primer_search.program.dna import DNA
from primer_search.program.dna_files import load_dna
from primer_search.program.macro_options import SHORT_NAMES

SEEDS_DIR = pathlib.Path(__file__).parent
SEED_NAMES = ("transformer", "primer_ez", "primer")


def is_seed_name(name: str) -> bool:
    return name.split("+")[0] in SEED_NAMES


def load_seed(name: str) -> DNA:
    """Load a shipped seed DNA by name, with the macro-options its `+option` suffixes switch on."""
    base, *options = name.split("+")
    if base not in SEED_NAMES:
        raise ValueError(f"unknown seed {name!r}, expected one of {', '.join(SEED_NAMES)}, optionally followed "
                         f"by +{', +'.join(SHORT_NAMES)} (e.g. transformer+mod)")
    dna = load_dna(SEEDS_DIR / f"{base}.yaml")
    macro = dna.macro_options
    for option in options:
        if option not in SHORT_NAMES:
            raise ValueError(f"seed {name!r}: unknown option +{option}, expected +{', +'.join(SHORT_NAMES)}")
        try:
            macro = macro.replace(SHORT_NAMES[option], enabled=True)
        except ValueError as err:
            raise ValueError(f"seed {name!r}: {err}") from None
    return dna.replace(macro_options=macro, name=name) if options else dna


def load_seed_or_file(name_or_path: str) -> DNA:
    """A shipped seed by name (with any +option), or a DNA file (.yaml, .json, .txt listing)."""
    return load_seed(name_or_path) if is_seed_name(name_or_path) else load_dna(name_or_path)
