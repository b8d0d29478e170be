"""Retrain a tiny search's winner: Primer-EZ and the best program of `search_configs/tiny.yaml` against the Transformer.

Runs (or resumes) the tiny search into --run-dir, then retrains Primer-EZ and the run's best non-seed program
against the Transformer with `search_configs/retrain_tiny.yaml` (three sizes, its seeds, test-split curves) into
--out, resuming whatever is already there. Prints the report table, and as the last line the speedup factor of the
search's best program against the Transformer at each size and its fitted power-law exponent beside the
Transformer's. Both steps resume after a kill: run the same command again.

    python bench/retrain_tiny.py [--run-dir runs/bench_tiny] [--out runs/bench_retrain_tiny] [--set KEY=VALUE ...]
"""

from __future__ import annotations

import argparse
import os
import pathlib

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

from primer_search.config import load_config  # noqa: E402
from primer_search.retrain.config import load_retrain_config  # noqa: E402
from primer_search.retrain.jobs import load_programs, retrain  # noqa: E402
from primer_search.retrain.report import runs_of, table, write  # noqa: E402
from primer_search.search.controller import Search  # noqa: E402
from primer_search.search.reports import ratio_text  # noqa: E402
from bench_cli import CONFIGS, load_config_or_exit  # noqa: E402


def search(run_dir: pathlib.Path) -> None:
    """The tiny search, to its end."""
    if (run_dir / "run.sqlite").exists():
        run = Search.resume(run_dir)
    else:
        run = Search.start(load_config(CONFIGS / "tiny.yaml"), run_dir)
    try:
        run.run(on_progress=lambda status: print(status.line(), flush=True), progress_every=60)
    finally:
        run.close()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--run-dir", default="runs/bench_tiny")
    parser.add_argument("--out", default="runs/bench_retrain_tiny")
    parser.add_argument("--set", action="append", default=[], dest="overrides",
                        help="override a key of the retrain config, e.g. retrain.seeds=3")
    args = parser.parse_args()
    config = load_config_or_exit(parser, CONFIGS / "retrain_tiny.yaml", args.overrides, loader=load_retrain_config)
    run_dir = pathlib.Path(args.run_dir)
    search(run_dir)
    best = f"{run_dir}:top1"
    programs = load_programs(["primer_ez", best], ["transformer"])
    results = retrain(config, programs, args.out,
                      on_result=lambda job, result: print(f"  {job.name}: {result['status']}", flush=True))
    report = write(args.out, runs_of(results))
    print(table(report))
    label = next(p.label for p in programs if not p.baseline and p.label != "primer_ez")
    speedups = [s for r in report.sizes if r.program == label for s in r.speedups if s.baseline == "transformer"]
    laws = {law.program: f"{law.exponent:.4f}" for law in report.power_laws}
    figures = ", ".join(f"{ratio_text(s.mean, s.interval)}x" for s in speedups)
    print(f"best program of the tiny search ({label}) against the Transformer at {len(speedups)} sizes: {figures}; "
          f"power-law exponent {laws.get(label, 'n/a')} (Transformer {laws.get('transformer', 'n/a')})")


if __name__ == "__main__":
    main()
