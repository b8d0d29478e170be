"""The `primer-search` command line: argument parsing only; every command calls one library function."""

from __future__ import annotations

import argparse
import json
import sys

from primer_search import dna as dna_io
from primer_search.config import load_config
from primer_search.seeds import SEED_NAMES, load_seed


def _load(path_or_seed: str) -> dna_io.DNA:
    if path_or_seed in SEED_NAMES:
        return load_seed(path_or_seed)
    return dna_io.load_dna(path_or_seed)


def _show(args) -> None:
    from primer_search.inspection import describe

    config = load_config(args.config).model if args.config else None
    print(describe(_load(args.dna), unit=args.unit, width_units=args.width_units, show_graph=args.graph,
                   model_config=config))


def _export(args) -> None:
    dna_io.save_dna(_load(args.dna), args.out)
    print(f"wrote {args.out}")


def _validate(args) -> None:
    dna = _load(args.dna)
    print(f"{args.dna}: valid DNA, {len(dna.subprograms)} subprograms")


def _train(args) -> int:
    from primer_search.fitness import evaluate
    from primer_search.display import ProgressLine, format_result

    dna, config = _load(args.dna), load_config(args.config, args.set)
    with ProgressLine(sys.stderr, config.training) as progress:
        result = evaluate(dna, config, on_step=progress.update, on_checkpoint=progress.checkpoint)
    print(format_result(result))
    if args.json:
        with open(args.json, "w") as f:
            json.dump(result.to_dict(), f, indent=2)
        print(f"wrote {args.json}")
    return 0 if result.status in ("ok", "stopped") else 1


def _positive(text: str) -> int:
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {text}")
    return value


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="primer-search", description=__doc__.splitlines()[0])
    commands = parser.add_subparsers(dest="command", required=True)
    dna_help = f"a DNA file (.yaml, .json, .txt listing) or a seed name ({', '.join(SEED_NAMES)})"

    show = commands.add_parser("show", help="print a program's listing, hash and size")
    show.add_argument("dna", help=dna_help)
    show.add_argument("--unit", type=_positive, default=64, help="size unit for the parameter count (default 64)")
    show.add_argument("--width-units", type=_positive, default=8, help="block width in units (default 8)")
    show.add_argument("--config", help="a search config; size the model into its model.param_band")
    show.add_argument("--graph", action="store_true", help="also print the lowered live graph")
    show.set_defaults(run=_show)

    export = commands.add_parser("export", help="write a DNA (e.g. a seed) to a .yaml, .json or .txt file")
    export.add_argument("dna", help=dna_help)
    export.add_argument("out", help="output path; the extension picks the format")
    export.set_defaults(run=_export)

    validate = commands.add_parser("validate", help="check a DNA file against the schema")
    validate.add_argument("dna", help=dna_help)
    validate.set_defaults(run=_validate)

    train = commands.add_parser("train", help="evaluate one program: train it for the config's budget, measure it")
    train.add_argument("dna", help=dna_help)
    train.add_argument("--config", required=True, help="a search config YAML (e.g. search_configs/tiny_cpu.yaml)")
    train.add_argument("--set", action="append", default=[], metavar="SECTION.KEY=VALUE",
                       help="override a config key, e.g. --set training.budget=10 (repeatable)")
    train.add_argument("--json", metavar="PATH", help="also write the result as JSON")
    train.set_defaults(run=_train)
    return parser


def main(argv=None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return args.run(args) or 0
    except (ValueError, OSError) as err:
        print(f"primer-search {args.command}: error: {err}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
