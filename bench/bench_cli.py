"""What the benchmarks' command lines share: defaults that name the repository's own files whatever the working
directory, and a config that cannot be loaded reported as one line (exit 2) instead of a traceback."""

from __future__ import annotations

import argparse
import pathlib

from primer_search.config import load_config

REPO = pathlib.Path(__file__).resolve().parent.parent
CONFIGS = REPO / "search_configs"
RESULTS = REPO / "bench" / "results"


def load_config_or_exit(parser: argparse.ArgumentParser, path, overrides=(), loader=load_config):
    """`loader(path, overrides)`; a missing or invalid config, or a bad override, ends the run through `parser`."""
    try:
        return loader(path, list(overrides))
    except ValueError as err:
        parser.error(str(err))
