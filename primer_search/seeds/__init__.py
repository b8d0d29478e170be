"""Seed DNAs shipped with the package: transformer, primer_ez, primer."""

from __future__ import annotations

import pathlib

from primer_search.dna import DNA, load_dna

SEEDS_DIR = pathlib.Path(__file__).parent
SEED_NAMES = ("transformer", "primer_ez", "primer")


def load_seed(name: str) -> DNA:
    """Load a shipped seed DNA by name."""
    if name not in SEED_NAMES:
        raise ValueError(f"unknown seed {name!r}, expected one of {', '.join(SEED_NAMES)}")
    return load_dna(SEEDS_DIR / f"{name}.yaml")


def load_seed_or_file(name_or_path: str) -> DNA:
    """A shipped seed by name, or a DNA file (.yaml, .json, .txt listing)."""
    return load_seed(name_or_path) if name_or_path in SEED_NAMES else load_dna(name_or_path)
