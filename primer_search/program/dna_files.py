"""DNA files: YAML, JSON or the paper-style listing (by extension), read with safe parsers only and size-checked."""

from __future__ import annotations

import json
import pathlib

import yaml

from primer_search.program.dna import DNA, DNAError, from_dict
from primer_search.program.listing import from_listing, to_listing
from primer_search.program.schema import read_text


class _Flow(dict):
    """A mapping dumped on one line (one instruction per line in YAML files)."""


class _Dumper(yaml.SafeDumper):
    pass


_Dumper.add_representer(_Flow, lambda d, data: d.represent_mapping("tag:yaml.org,2002:map", data, flow_style=True))


def _yaml_ready(data: dict) -> dict:
    data = dict(data)
    data["subprograms"] = [{"name": sp["name"], "instructions": [_Flow(i) for i in sp["instructions"]]}
                           for sp in data["subprograms"]]
    return data


def dumps(dna: DNA, fmt: str = "yaml") -> str:
    if fmt == "json":
        return dna.to_json()
    if fmt == "yaml":
        return yaml.dump(_yaml_ready(dna.to_dict()), Dumper=_Dumper, sort_keys=False, width=120)
    if fmt == "listing":
        return to_listing(dna)
    raise ValueError(f"unknown DNA format {fmt!r}, expected yaml, json or listing")


def loads(text: str, fmt: str = "yaml", source: str = "<string>") -> DNA:
    """Parse a DNA from text (safe parsers only; nothing in the text is executed)."""
    if fmt == "listing":
        return from_listing(text)
    try:
        data = json.loads(text) if fmt == "json" else yaml.safe_load(text)
    except (json.JSONDecodeError, yaml.YAMLError) as err:
        raise DNAError(f"{source}: not valid {fmt.upper()}: {err}".replace("\n", " ")) from None
    try:
        return from_dict(data)
    except DNAError as err:
        raise DNAError(f"{source}: {err}") from None


def format_of(path) -> str:
    suffix = pathlib.Path(path).suffix.lower()
    formats = {".yaml": "yaml", ".yml": "yaml", ".json": "json", ".txt": "listing", ".dna": "listing"}
    if suffix not in formats:
        raise DNAError(f"DNA file {str(path)!r}: unknown extension {suffix!r}, expected .yaml, .yml, .json, "
                       ".txt or .dna (listing)")
    return formats[suffix]


def load_dna(path) -> DNA:
    fmt = format_of(path)
    try:
        text = read_text(path, "DNA file")
    except ValueError as err:
        raise DNAError(str(err)) from None
    return loads(text, fmt, source=str(path))


def save_dna(dna: DNA, path) -> None:
    path = pathlib.Path(path)
    path.write_text(dumps(dna, format_of(path)))
