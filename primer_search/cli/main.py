"""The `primer-search` command line: argument parsing only; every command calls one library function."""

from __future__ import annotations

import argparse
import json
import os
import sys

from primer_search.config import ModelConfig, load_config
from primer_search.program.dna import DNA
from primer_search.program.dna_files import save_dna
from primer_search.program.seeds import SEED_NAMES, load_seed_or_file


def _load(path_or_seed: str) -> DNA:
    if os.path.isfile(os.path.join(path_or_seed, "run.sqlite")):
        raise ValueError(f"{path_or_seed} is a run directory: expected an individual's id after it")
    return load_seed_or_file(path_or_seed)


def _show(args) -> None:
    if args.id is not None:
        from primer_search.search.reports import describe_individual

        with _open_run(args.dna) as store:
            print(describe_individual(store, args.id))
        return
    from primer_search.cli.inspection import describe

    if args.config and (args.unit or args.width_units):
        raise ValueError("show: --config sizes the model into its param_band; expected either --config or "
                         "--unit/--width-units, not both")
    config = load_config(args.config) if args.config else None
    print(describe(_load(args.dna), unit=args.unit or 64, width_units=args.width_units or 8, show_graph=args.graph,
                   config=config))


def _export(args) -> None:
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
        from primer_search.lm.model import choose_unit

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


def _run(args) -> int:
    import datetime
    import pathlib

    from primer_search.search.controller import Search

    config = load_config(args.config, _search_overrides(args))
    run_dir = args.run_dir = args.run_dir or pathlib.Path("runs") / (
        f"{pathlib.Path(args.config).stem}-{datetime.datetime.now():%Y%m%d-%H%M%S}")
    search = Search.start(config, run_dir)
    print(f"run directory: {run_dir}", file=sys.stderr)
    return _finish(search, args.progress_every)


def _resume(args) -> int:
    from primer_search.search.controller import Search

    return _finish(Search.resume(args.run_dir, _search_overrides(args)), args.progress_every)


def _status(args) -> None:
    from primer_search.search.controller import read_status
    from primer_search.search.reports import status_text

    with _open_run(args.run_dir) as store:
        print(status_text(read_status(store)))


def _top(args) -> None:
    from primer_search.search.reports import top_table

    with _open_run(args.run_dir) as store:
        print(top_table(store, args.n))


def _validate(args) -> None:
    dna = _load(args.dna)
    print(f"{args.dna}: valid DNA, {len(dna.subprograms)} subprograms")


def _train(args) -> int:
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


def _calibrate(args) -> None:
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


def _confirm(args) -> None:
    from primer_search.search.confirmation import confirm
    from primer_search.search.reports import confirmation_text

    def progress(individual, seed, result):
        detail = "" if result["status"] == "ok" else result.get("error") or ""
        print(f"confirm: individual {individual} training seed {seed}: {result['status']} {detail}",
              file=sys.stderr, flush=True)

    print(confirmation_text(confirm(args.run_dir, args.k, args.seeds, args.budget_multiplier, args.set,
                                    on_result=progress)))


def _retrain(args) -> int:
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


def _sample(args) -> None:
    from primer_search.lm.sampling import sample_text

    text = sample_text(args.checkpoint, args.prompt, args.n, args.temperature, args.seed)
    print(args.prompt + text)


def _check_writable(path) -> None:
    """Refuse an output file that could not be written, before spending compute on what goes in it."""
    if path and not os.path.isdir(os.path.dirname(os.path.abspath(path))):
        raise ValueError(f"--json {path}: found no directory {os.path.dirname(os.path.abspath(path))}, expected "
                         f"an existing one")


def _positive(text: str) -> int:
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {text}")
    return value


def _positive_number(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        value = float("nan")
    if not value > 0 or value == float("inf"):
        raise argparse.ArgumentTypeError(f"expected a positive number, got {text}")
    return value


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="primer-search", description=__doc__.splitlines()[0])
    commands = parser.add_subparsers(dest="command", required=True)
    dna_help = (f"a DNA file (.yaml, .json, .txt listing) or a seed name ({', '.join(SEED_NAMES)}), optionally "
                "with +mod, +calm or +megabyte")

    show = commands.add_parser("show", help="print a program's listing, hash and size")
    show.add_argument("dna", help=dna_help + ", or a run directory followed by an individual's id")
    show.add_argument("id", nargs="?", type=int, help="with a run directory: the individual to show")
    show.add_argument("--unit", type=_positive, help="size unit for the parameter count (default 64)")
    show.add_argument("--width-units", type=_positive, help="block width in units (default 8)")
    show.add_argument("--config", help="a search config; size the model into its model.param_band")
    show.add_argument("--graph", action="store_true", help="also print the lowered live graph")
    show.set_defaults(run=_show)

    export = commands.add_parser("export", help="write a DNA (a seed, a file, or a run's individual) to a .yaml, "
                                                ".json or .txt file, or as a standalone Keras module (.py): "
                                                "`export DNA OUT` or `export RUN_DIR ID -o OUT`")
    export.add_argument("dna", help=dna_help + ", a run directory, or a retrained model (a retrain job's "
                                      "directory or its model.keras: writes the module and its .weights.h5)")
    export.add_argument("id_or_out", nargs="?", help="output path, or with a run directory the individual's id")
    export.add_argument("-o", "--out", dest="out_option", help="output path; the extension picks the format")
    export.add_argument("--format", choices=("dna", "keras"),
                        help="keras: a Python module with Keras 3 layers for the block and its language model, "
                             "importing no primer_search (default: keras for .py, else a DNA file)")
    export.add_argument("--unit", type=_positive, help="keras: the size unit (default: sized into --config's "
                                                      "param_band, or the run's; else 64)")
    export.add_argument("--config", help="keras: a search config whose model section sizes the model")
    export.set_defaults(run=_export)

    validate = commands.add_parser("validate", help="check a DNA file against the schema")
    validate.add_argument("dna", help=dna_help)
    validate.set_defaults(run=_validate)

    train = commands.add_parser("train", help="evaluate one program: train it for the config's budget, measure it")
    train.add_argument("dna", help=dna_help)
    train.add_argument("--config", required=True, help="a search config YAML (e.g. search_configs/tiny.yaml)")
    train.add_argument("--set", action="append", default=[], metavar="SECTION.KEY=VALUE",
                       help="override a config key, e.g. --set training.budget=10 (repeatable)")
    train.add_argument("--json", metavar="PATH", help="also write the result as JSON")
    train.set_defaults(run=_train)

    run = commands.add_parser("run", help="start a search")
    run.add_argument("config", help="a search config YAML (e.g. search_configs/tiny.yaml)")
    run.add_argument("--run-dir", help="where the run store goes (default runs/CONFIG-DATE-TIME)")
    for command in (run, resume := commands.add_parser("resume", help="go on with a stopped or killed search")):
        command.add_argument("--set", action="append", default=[], metavar="SECTION.KEY=VALUE",
                             help="override a config key, e.g. --set search.max_in_flight=4 (repeatable)")
        command.add_argument("--address", help="a Ray cluster: auto, or ray://host:10001 (default: a local Ray)")
        command.add_argument("--progress-every", type=float, default=10.0, metavar="SECONDS",
                             help="seconds between progress lines (default 10)")
    run.set_defaults(run=_run)
    resume.add_argument("run_dir", help="the run directory of the search")
    resume.set_defaults(run=_resume)

    status = commands.add_parser("status", help="a search's progress, failures, best fitness and savings")
    status.add_argument("run_dir")
    status.set_defaults(run=_status)

    top = commands.add_parser("top", help="the best programs of a search")
    top.add_argument("run_dir")
    top.add_argument("-n", type=_positive, default=10, help="how many (default 10)")
    top.set_defaults(run=_top)

    calibrate = commands.add_parser("calibrate", help="measure a config's noise: evaluate its seeds with K training "
                                                      "seeds; spread at each hurdle and at the end, cost of hurdles")
    calibrate.add_argument("config", help="a search config YAML (e.g. search_configs/tiny.yaml)")
    calibrate.add_argument("-k", type=_positive, default=8, help="evaluations per seed program (default 8)")
    calibrate.add_argument("--json", metavar="PATH", help="also write the calibration as JSON")
    calibrate.add_argument("--set", action="append", default=[], metavar="SECTION.KEY=VALUE",
                           help="override a config key, e.g. --set search.executor=in_process (repeatable)")
    calibrate.set_defaults(run=_calibrate)

    confirm = commands.add_parser("confirm", help="retrain a run's top programs and its seeds with several training "
                                                  "seeds on the test split: CI, speedup factor, paired p-value")
    confirm.add_argument("run_dir", help="the run directory of a search")
    confirm.add_argument("-k", type=_positive, default=5, help="top programs to confirm (default 5)")
    confirm.add_argument("--seeds", type=_positive, default=5, help="training seeds per program (default 5)")
    confirm.add_argument("--budget-multiplier", type=_positive_number, default=1.0, metavar="M",
                         help="train for M x the search's training budget (default 1)")
    confirm.add_argument("--set", action="append", default=[], metavar="SECTION.KEY=VALUE",
                         help="override a config key, e.g. --set data.test_fraction=0.1 (repeatable)")
    confirm.set_defaults(run=_confirm)

    retrain = commands.add_parser("retrain", help="retrain programs and baselines at several sizes with several "
                                                  "seeds on Ray Train: speedup factors, scaling fits, models")
    retrain.add_argument("config", help="a retrain config YAML (e.g. search_configs/retrain_tiny.yaml)")
    retrain.add_argument("--out", required=True, help="the retrain directory (the same command again resumes it)")
    retrain.add_argument("--program", action="append", default=[], metavar="SPEC",
                         help="a program to retrain besides the config's: a seed name, a DNA file, RUN_DIR:ID or "
                              "RUN_DIR:topK (repeatable)")
    retrain.add_argument("--baseline", action="append", default=[], metavar="SPEC",
                         help="a baseline instead of the config's (repeatable; default: transformer)")
    retrain.add_argument("--address", help="a Ray cluster (\"auto\", \"ray://host:port\"); default: local Ray")
    retrain.add_argument("--set", action="append", default=[], metavar="SECTION.KEY=VALUE",
                         help="override a config key, e.g. --set retrain.seeds=5 (repeatable)")
    retrain.set_defaults(run=_retrain)

    sample = commands.add_parser("sample", help="generate text from a retrained model (any kind) with the cached "
                                                "sampler")
    sample.add_argument("checkpoint", help="a retrain job's directory (RETRAIN_DIR/jobs/NAME) or its model.keras")
    sample.add_argument("--prompt", default="", help="the text to continue (default: a new document)")
    sample.add_argument("-n", type=_positive, default=64, help="tokens to generate (default 64)")
    sample.add_argument("--temperature", type=float, default=1.0, help="softmax temperature; 0 is greedy (default 1)")
    sample.add_argument("--seed", type=int, default=0, help="the generator's seed (default 0)")
    sample.set_defaults(run=_sample)
    return parser


def _normalize_export(args) -> None:
    """`export DNA OUT` or `export RUN_DIR ID -o OUT`."""
    args.id, args.out = None, args.out_option
    if args.id_or_out is not None and args.out_option is not None:
        try:
            args.id = int(args.id_or_out)
        except ValueError:
            raise ValueError(f"export: found {args.id_or_out!r} before -o, expected an individual's id") from None
    elif args.id_or_out is not None:
        args.out = args.id_or_out
    if args.out is None:
        raise ValueError("export: expected an output path (`export DNA OUT` or `export RUN_DIR ID -o OUT`)")


READ_ONLY = ("show", "validate", "export", "status", "top")    # commands that never need TensorFlow


def main(argv=None) -> int:
    args = build_parser().parse_args(argv)
    if args.command not in READ_ONLY:
        from primitives.lazy_tf import load_quietly

        load_quietly()
    try:
        if args.command == "export":
            _normalize_export(args)
        return args.run(args) or 0
    except (ValueError, OSError) as err:                # bad input: a file, a key, a value
        print(f"primer-search {args.command}: error: {err}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        where = f"; `primer-search resume {args.run_dir}` goes on" if getattr(args, "run_dir", None) else ""
        print(f"primer-search {args.command}: interrupted{where}", file=sys.stderr)
        return 130
    except Exception as err:  # noqa: BLE001 -- an internal failure: one line here, the traceback in a log
        log = _failure_log(args)
        print(f"primer-search {args.command}: failed: {type(err).__name__}: {err} (traceback in {log})",
              file=sys.stderr)
        return 1


def _failure_log(args) -> str:
    """Write the current exception's traceback to the run directory's error.log (or a temporary file)."""
    import tempfile
    import traceback

    run_dir = getattr(args, "run_dir", None)
    if run_dir and os.path.isdir(run_dir):
        path = os.path.join(run_dir, "error.log")
    else:
        path = os.path.join(tempfile.gettempdir(), f"primer-search-{args.command}-{os.getpid()}.log")
    with open(path, "a") as f:
        f.write(traceback.format_exc())
    return path


if __name__ == "__main__":
    sys.exit(main())
