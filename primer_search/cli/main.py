"""The `primer-search` command line: the parser and the entry point; `commands` does the work."""

from __future__ import annotations

import argparse
import os
import sys

from primer_search.cli import commands
from primer_search.program.seeds import SEED_NAMES


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


def _add_set(parser: argparse.ArgumentParser, example: str) -> None:
    parser.add_argument("--set", action="append", default=[], metavar="SECTION.KEY=VALUE",
                        help=f"override a config key, e.g. {example} (repeatable)")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="primer-search", description=__doc__.splitlines()[0])
    subcommands = parser.add_subparsers(dest="command", required=True)
    dna_help = (f"a DNA file (.yaml, .json, .txt listing) or a seed name ({', '.join(SEED_NAMES)}), optionally "
                "with +mod, +calm or +megabyte")

    show = subcommands.add_parser("show", help="print a program's listing, hash and size")
    show.add_argument("dna", help=dna_help + ", or an individual of a run: RUN_DIR:ID or RUN_DIR ID")
    show.add_argument("id", nargs="?", type=int, help="with a run directory: the individual to show")
    show.add_argument("--unit", type=_positive, help="size unit for the parameter count (default 64)")
    show.add_argument("--width-units", type=_positive, help="block width in units (default 8)")
    show.add_argument("--config", help="a search config; size the model into its model.param_band")
    show.add_argument("--graph", action="store_true", help="also print the lowered live graph")
    show.add_argument("--lineage", action="store_true", help="with a run's individual: how the search reached it, "
                      "its line of descent from the seed with each mutation and fitness, instead of its listing")
    show.set_defaults(run=commands.show)

    export = subcommands.add_parser("export", help="write a DNA (a seed, a file, or a run's individual) to a .yaml, "
                                                   ".json or .txt file, or as a standalone Keras module (.py): "
                                                   "`export DNA OUT`, `export RUN_DIR:ID OUT` or "
                                                   "`export RUN_DIR ID -o OUT`")
    export.add_argument("dna", help=dna_help + ", RUN_DIR:ID, a run directory, or a retrained model (a retrain job's "
                                      "directory or its model.keras: writes the module and its .weights.h5)")
    export.add_argument("id_or_out", nargs="?", help="output path, or with a run directory the individual's id")
    export.add_argument("-o", "--out", dest="out_option", help="output path; the extension picks the format")
    export.add_argument("--format", choices=("dna", "keras"),
                        help="keras: a Python module with Keras 3 layers for the block and its language model, "
                             "importing no primer_search (default: keras for .py, else a DNA file)")
    export.add_argument("--unit", type=_positive, help="keras: the size unit (default: sized into --config's "
                                                      "param_band, or the run's; else 64)")
    export.add_argument("--config", help="keras: a search config whose model section sizes the model")
    export.set_defaults(run=commands.export)

    validate = subcommands.add_parser("validate", help="check a DNA file against the schema")
    validate.add_argument("dna", help=dna_help)
    validate.set_defaults(run=commands.validate)

    train = subcommands.add_parser("train", help="evaluate one program: train it for the config's budget, measure it")
    train.add_argument("dna", help=dna_help)
    train.add_argument("--config", required=True, help="a search config YAML (e.g. search_configs/tiny.yaml)")
    _add_set(train, "--set training.budget=10")
    train.add_argument("--json", metavar="PATH", help="also write the result as JSON")
    train.set_defaults(run=commands.train)

    run = subcommands.add_parser("run", help="start a search")
    run.add_argument("config", help="a search config YAML (e.g. search_configs/tiny.yaml)")
    run.add_argument("--run-dir", help="where the run store goes (default runs/CONFIG-DATE-TIME)")
    for command in (run, resume := subcommands.add_parser("resume", help="go on with a stopped or killed search")):
        _add_set(command, "--set search.max_in_flight=4")
        command.add_argument("--address", help="a Ray cluster: auto, or ray://host:10001 (default: a local Ray)")
        command.add_argument("--progress-every", type=float, default=10.0, metavar="SECONDS",
                             help="seconds between progress lines (default 10; 0: none)")
    run.add_argument("--reuse", action="append", default=[], metavar="RUN_DIR",
                     help="copy the seed's evaluations from that run of the same setup instead of training them "
                          "again (same results under common random numbers; repeatable)")
    run.set_defaults(run=commands.run)
    resume.add_argument("run_dir", help="the run directory of the search")
    resume.set_defaults(run=commands.resume)

    status = subcommands.add_parser("status", help="a search's progress, failures, best fitness and savings")
    status.add_argument("run_dir")
    status.set_defaults(run=commands.status)

    top = subcommands.add_parser("top", help="the best programs of a search")
    top.add_argument("run_dir")
    top.add_argument("-n", type=_positive, default=10, help="how many (default 10)")
    top.set_defaults(run=commands.top)

    calibrate = subcommands.add_parser("calibrate", help="measure a config's noise: evaluate its seeds with K training "
                                                         "seeds; spread at each hurdle and at the end, cost of hurdles")
    calibrate.add_argument("config", help="a search config YAML (e.g. search_configs/tiny.yaml)")
    calibrate.add_argument("-k", type=_positive, default=8, help="evaluations per seed program (default 8)")
    calibrate.add_argument("--json", metavar="PATH", help="also write the calibration as JSON")
    _add_set(calibrate, "--set search.executor=in_process")
    calibrate.set_defaults(run=commands.calibrate)

    confirm = subcommands.add_parser("confirm", help="retrain a run's top programs and its seeds with several training "
                                                     "seeds on the test split: CI, speedup factor, paired p-value")
    confirm.add_argument("run_dir", help="the run directory of a search")
    confirm.add_argument("-k", type=_positive, default=5, help="top programs to confirm (default 5)")
    confirm.add_argument("--seeds", type=_positive, default=5, help="training seeds per program (default 5)")
    confirm.add_argument("--budget-multiplier", type=_positive_number, default=1.0, metavar="M",
                         help="train for M x the search's training budget (default 1)")
    confirm.add_argument("--against", metavar="RUN_DIR", help="then compare the best confirmed program with the best "
                                                             "of another search confirmed alike (e.g. random search)")
    confirm.add_argument("--reuse", action="append", default=[], metavar="RUN_DIR",
                         help="copy that run's trainings of the same program, setup and training seed instead of "
                              "repeating them (e.g. the seed's, shared with another search; repeatable)")
    _add_set(confirm, "--set data.test_fraction=0.1")
    confirm.set_defaults(run=commands.confirm)

    retrain = subcommands.add_parser("retrain", help="retrain programs and baselines at several sizes with several "
                                                     "seeds on Ray Train: speedup factors, scaling fits, models")
    retrain.add_argument("config", help="a retrain config YAML (e.g. search_configs/retrain_tiny.yaml)")
    retrain.add_argument("--out", required=True, help="the retrain directory (the same command again resumes it)")
    retrain.add_argument("--program", action="append", default=[], metavar="SPEC",
                         help="a program to retrain besides the config's: a seed name, a DNA file, RUN_DIR:ID or "
                              "RUN_DIR:topK (repeatable)")
    retrain.add_argument("--baseline", action="append", default=[], metavar="SPEC",
                         help="a baseline instead of the config's (repeatable; default: transformer)")
    retrain.add_argument("--address", help="a Ray cluster (\"auto\", \"ray://host:port\"); default: local Ray")
    _add_set(retrain, "--set retrain.seeds=5")
    retrain.set_defaults(run=commands.retrain)

    sample = subcommands.add_parser("sample", help="generate text from a retrained model (any kind) with the cached "
                                                   "sampler")
    sample.add_argument("checkpoint", help="a retrain job's directory (RETRAIN_DIR/jobs/NAME) or its model.keras")
    sample.add_argument("--prompt", default="", help="the text to continue (default: a new document)")
    sample.add_argument("-n", type=_positive, default=64, help="tokens to generate (default 64)")
    sample.add_argument("--temperature", type=float, default=1.0, help="softmax temperature; 0 is greedy (default 1)")
    sample.add_argument("--seed", type=int, default=0, help="the generator's seed (default 0)")
    sample.set_defaults(run=commands.sample)
    return parser


def _split_individual(args) -> bool:
    """`RUN_DIR:ID`, as `retrain` and `confirm` name an individual, read as `RUN_DIR ID`; True if it was one."""
    from primer_search.search.run_database import split_run_spec

    split = split_run_spec(args.dna)
    if split is None or not split[1].isdigit():
        return False
    args.dna, args.id = split[0], int(split[1])
    return True


def _normalize_export(args) -> None:
    """`export DNA OUT`, `export RUN_DIR ID -o OUT` or `export RUN_DIR:ID OUT`."""
    args.id, args.out = None, args.out_option
    if _split_individual(args):
        if args.id_or_out is not None and args.out_option is not None:
            raise ValueError(f"export: found {args.id_or_out!r} after {args.dna}:{args.id}, expected only an "
                             f"output path")
        args.out = args.out_option or args.id_or_out
    elif args.id_or_out is not None and args.out_option is not None:
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
        elif args.command == "show" and args.id is None:
            _split_individual(args)
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
