"""Seed evaluations copied from earlier runs of the same setup instead of trained again.

Under common random numbers an evaluation is a function of the program, the setup and the training seed, so every
run of a setup trains its seed programs to the same results: the first evaluation and the calibration's repeats
(`search.seed_evaluations`), hours of a short run on a laptop. A run started with `reuse` (`primer-search run CONFIG
--reuse RUN_DIR`) copies those, with their hurdle records, from the runs named; an evaluation not found there (another
program or training seed, a run moved away since) trains as usual. Only the seeds' evaluations are copied: a seed
is never stopped, so its result does not depend on the hurdle thresholds of the run that measured it.

A copy is recorded with 0 attempts and `worker` naming its source, so the run summary counts it as done but not as
compute spent here.
"""

from __future__ import annotations

import os

from primer_search.config import Config, config_from_dict
from primer_search.search.hurdles import hurdle_fractions
from primer_search.search.store import Individual, RunStore


def evaluation_key(config: Config) -> dict[str, str]:
    """What an evaluation measures apart from the program and the training seed, by the part of the config that
    sets it: the model, data and training; the hurdle fractions it reports at; the fitness it is scored by."""
    from primer_search.search.confirmation import setup_key

    search = config.search
    return {"model, data and training": setup_key(config),
            "search.hurdles": repr(hurdle_fractions(search.hurdles)),
            "fitness (search.metric, objective, inference_weight)":
                f"{search.metric} {search.objective} {search.inference_weight!r}"}


def check_reusable(config: Config, run_dirs) -> list[str]:
    """The run directories as absolute paths, or a ValueError naming one that holds no run or whose evaluations were
    measured under another setup, and what differs."""
    key = evaluation_key(config)
    for run_dir in run_dirs:
        with RunStore.open(run_dir) as other:            # no run there: ValueError naming the directory
            theirs = evaluation_key(config_from_dict(other.config))
        differ = [name for name, value in key.items() if theirs[name] != value]
        if differ:
            raise ValueError(f"--reuse {run_dir}: its evaluations were measured with other {'; '.join(differ)}; "
                             f"expected a run of the same setup as this one")
    return [os.path.abspath(run_dir) for run_dir in run_dirs]


class SeedCopies:
    """Finds a seed evaluation to copy among the runs a search reuses (see the module docstring)."""

    def __init__(self, config: Config, run_dirs):
        self.key, self.run_dirs = evaluation_key(config), list(run_dirs)

    def find(self, canonical_hash: str | None, training_seed: int | None) -> tuple[str, Individual] | None:
        """(run directory, individual): a seed evaluation of this program and training seed that trained to the
        end, in the first of the runs that holds one; None if none does."""
        for run_dir in self.run_dirs:
            try:
                with RunStore.open(run_dir) as other:
                    if evaluation_key(config_from_dict(other.config)) != self.key:
                        continue
                    for individual in other.individuals_without_parent():
                        if ((individual.canonical_hash, individual.training_seed) == (canonical_hash, training_seed)
                                and individual.status == "ok" and individual.cached_from is None):
                            return run_dir, individual
            except ValueError:                          # moved or removed since the run started: train instead
                continue
        return None
