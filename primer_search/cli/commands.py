"""What each `primer-search` command does, given its parsed arguments: each calls the library and prints."""

from __future__ import annotations

import json
import os
import sys

from primer_search.config import ModelConfig, load_config
from primer_search.program.dna import DNA
from primer_search.program.dna_files import save_dna
from primer_search.program.seeds import load_seed_or_file


def _load(path_or_seed: str) -> DNA:
    from primer_search.search.run_database import is_run_dir

    if is_run_dir(path_or_seed):
        raise ValueError(f"{path_or_seed} is a run directory: expected an individual's id after it "
                         f"(e.g. {path_or_seed}:1)")
    return load_seed_or_file(path_or_seed)


def show(args) -> None:
    if args.id is not None:
        from primer_search.search.reports import describe_individual, lineage_text

        with _open_run(args.dna) as store:
            print((lineage_text if args.lineage else describe_individual)(store, args.id))
        return
    if args.lineage:
        raise ValueError(f"show --lineage: found {args.dna}, expected an individual of a run (RUN_DIR:ID)")
    from primer_search.cli.inspection import describe

    if args.config and (args.unit or args.width_units):
        raise ValueError("show: --config sizes the model into its param_band; expected either --config or "
                         "--unit/--width-units, not both")
    config = load_config(args.config) if args.config else None
    print(describe(_load(args.dna), unit=args.unit or 64, width_units=args.width_units or 8, show_graph=args.graph,
                   config=config))


def export(args) -> None:
    if args.dna.endswith(".keras") or os.path.isfile(os.path.join(args.dna, "model.keras")):
        from primer_search.lm.keras_export import write_trained
        from primer_search.lm.sampling import load_retrained
        from primitives.lazy_tf import load_quietly

        load_quietly()
        weights = write_trained(load_retrained(args.dna)[0], args.out)
        print(f"wrote {args.out} and {weights}")
        return
    config = load_config(args.config) if args.config else None
    if args.id is not None:                      # export RUN_DIR ID -o FILE
        from primer_search.config import config_from_dict

        with _open_run(args.dna) as store:
            dna = DNA.from_dict(store.individual(args.id).dna).replace(name=f"individual {args.id}")
            config = config or config_from_dict(store.config)
    else:                                        # export DNA FILE
        dna = _load(args.dna)
    if args.format == "keras" or (args.format is None and args.out.endswith(".py")):
        from primitives.lazy_tf import load_quietly

        load_quietly()                             # the compiler names the weights: TensorFlow, quietly
        from primer_search.lm.keras_export import write_module
        from primer_search.lm.model_cost import choose_unit

        model = config.model if config else ModelConfig()
        write_module(dna, args.out, args.unit or (choose_unit(dna, model) if config else 64), model)
    else:
        save_dna(dna, args.out)
    print(f"wrote {args.out}")


def _open_run(run_dir):
    from primer_search.search.store import RunStore

    return RunStore.open(run_dir)


def _search_overrides(args) -> list[str]:
    extra = [f"search.address={args.address}"] if args.address else []
    return list(args.set) + extra


def _progress(status) -> None:
    print(status.line(), file=sys.stderr, flush=True)


def _finish(search, progress_every: float) -> int:
    from primer_search.search.reports import status_text, top_table

    try:
        status = search.run(on_progress=_progress, progress_every=progress_every)
    finally:
        search.close()
    print(status_text(status))
    print()
    with _open_run(search.store.run_dir) as store:
        print(top_table(store, 5))
    print(f"\nrun directory: {search.store.run_dir}")
    return 0


def run(args) -> int:
    import datetime
    import pathlib

    from primer_search.search.controller import Search

    config = load_config(args.config, _search_overrides(args))
    run_dir = args.run_dir = args.run_dir or pathlib.Path("runs") / (
        f"{pathlib.Path(args.config).stem}-{datetime.datetime.now():%Y%m%d-%H%M%S}")
    search = Search.start(config, run_dir, reuse=args.reuse)
    print(f"run directory: {run_dir}", file=sys.stderr)
    return _finish(search, args.progress_every)


def resume(args) -> int:
    from primer_search.search.controller import Search

    return _finish(Search.resume(args.run_dir, _search_overrides(args)), args.progress_every)


def status(args) -> None:
    from primer_search.search.controller import read_status
    from primer_search.search.reports import status_text

    with _open_run(args.run_dir) as store:
        print(status_text(read_status(store)))


def top(args) -> None:
    from primer_search.search.reports import top_table

    with _open_run(args.run_dir) as store:
        print(top_table(store, args.n))


def validate(args) -> None:
    dna = _load(args.dna)
    print(f"{args.dna}: valid DNA, {len(dna.subprograms)} subprograms")


def train(args) -> int:
    from primer_search.cli.display import ProgressLine, format_result
    from primer_search.lm.fitness import evaluate
    from primer_search.search.store import MEASURED

    dna, config = _load(args.dna), load_config(args.config, args.set)
    with ProgressLine(sys.stderr, config.training) as progress:
        result = evaluate(dna, config, on_step=progress.update, on_checkpoint=progress.checkpoint)
    print(format_result(result))
    if args.json:
        with open(args.json, "w") as f:
            json.dump(result.to_dict(), f, indent=2)
        print(f"wrote {args.json}")
    return 0 if result.status in MEASURED else 1


def calibrate(args) -> None:
    from primer_search.search.calibration import calibrate
    from primer_search.search.reports import calibration_text

    config = load_config(args.config, args.set)
    _check_writable(args.json)

    def progress(program, seed, result):
        value = result.get(config.search.metric)
        detail = f"{value:.4f}" if result["status"] == "ok" and value is not None else result.get("error") or ""
        print(f"calibrate: {program} training seed {seed}: {result['status']} {detail}", file=sys.stderr, flush=True)

    calibration = calibrate(config, args.k, on_result=progress)
    print(calibration_text(calibration))
    if args.json:
        with open(args.json, "w") as f:
            json.dump(calibration.to_dict(), f, indent=2)
        print(f"wrote {args.json}")


def confirm(args) -> None:
    from primer_search.search.confirmation import compare_best, confirm
    from primer_search.search.reports import best_against_text, confirmation_text

    def progress(individual, seed, result):
        detail = "" if result["status"] == "ok" else result.get("error") or ""
        print(f"confirm: individual {individual} training seed {seed}: {result['status']} {detail}",
              file=sys.stderr, flush=True)

    if args.against:                                      # before training: a wrong directory fails now
        with _open_run(args.against) as store:
            if not store.confirmations():
                raise ValueError(f"--against {args.against}: no confirmation stored there, expected a run "
                                 f"confirmed first with the same --seeds and --budget-multiplier")
    for run_dir in args.reuse:
        _open_run(run_dir).close()                        # a wrong directory fails before any training
    confirmation = confirm(args.run_dir, args.k, args.seeds, args.budget_multiplier, args.set, on_result=progress,
                           reuse=args.reuse)
    print(confirmation_text(confirmation))
    if args.against:
        print("\n" + best_against_text(args.run_dir, args.against,
                                        *compare_best(confirmation, args.run_dir, args.against)))


def retrain(args) -> int:
    from primer_search.retrain.config import load_retrain_config
    from primer_search.retrain.jobs import load_programs, retrain
    from primer_search.retrain.report import runs_of, table, write

    overrides = list(args.set) + ([f"retrain.address={args.address}"] if args.address else [])
    config = load_retrain_config(args.config, overrides)
    programs = load_programs([*config.retrain.programs, *args.program], args.baseline or config.retrain.baselines)

    def progress(job, result):
        if result["status"] == "ok":
            detail = f"{result['curve'][-1]['validation_loss']:.4f} after {result['steps']} steps"
        else:
            detail = result.get("error", "")
        print(f"retrain: {job.name}: {result['status']} {detail}", file=sys.stderr, flush=True)

    results = retrain(config, programs, args.out, on_result=progress)
    print(table(write(args.out, runs_of(results))))
    print(f"\nwrote {args.out}/report.json, report.csv and plots; models in {args.out}/jobs/*/model.keras")
    return 0 if all(result["status"] == "ok" for _, result in results) else 1


def sample(args) -> None:
    from primer_search.lm.sampling import sample_text

    text = sample_text(args.checkpoint, args.prompt, args.n, args.temperature, args.seed)
    print(args.prompt + text)


def _check_writable(path) -> None:
    """Refuse an output file that could not be written, before spending compute on what goes in it."""
    if path and not os.path.isdir(os.path.dirname(os.path.abspath(path))):
        raise ValueError(f"--json {path}: found no directory {os.path.dirname(os.path.abspath(path))}, expected "
                         f"an existing one")
