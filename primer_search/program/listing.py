"""The paper-style text form of a DNA, and its parser (the two round-trip exactly).

    name: transformer
    constants: c[0]=0.0 c[1]=0.125
    dimensions: d[0]=1 d[1]=8 d[2]=32 d[3]=2 d[4]=4 d[5]=16
    S1 self_attention:
      (0) INPUT (1) INPUT
      (2) S3 in1=0 in2=0 -> h2
      (5) T_MAT_MUL in1=3 in2=2 -> h5
      (12) CONV_1X1 in1=10 dim=d[0] -> h12   [in2=3]

Each line shows the fields its op reads; fields it ignores appear in brackets only when they are not 0, so the
listing stays readable and still carries the whole DNA. `macro_options:` lists the non-default options as JSON.
"""

from __future__ import annotations

import json
import re

from primer_search.program.dna import DNA, DNAError, FORMAT_VERSION, Instruction, Subprogram
from primer_search.program.macro_options import MacroOptions

_HEADER = f"# primer-search DNA listing, format {FORMAT_VERSION}"
_SUBPROGRAM = re.compile(r"^S(\d+)(?:\s+(\S+))?:$")
_INSTRUCTION = re.compile(r"^\((\d+)\)\s+(\S+)((?:\s+\w+=\S+)*)\s+->\s+h(\d+)(?:\s+\[(.*)\])?$")
_FIELD = re.compile(r"^(in1|in2|c|dim|branch)=(?:(\d+)|c\[(\d+)\]|d\[(\d+)\])$")


def _field_text(field: str, value: int) -> str:
    if field == "const":
        return f"c=c[{value}]"
    if field == "dim":
        return f"dim=d[{value}]"
    return f"{field}={value}"


def instruction_line(ins: Instruction, index: int) -> str:
    reads = ins.reads()
    shown = [_field_text(f, getattr(ins, f)) for f in ("in1", "in2", "const", "dim")
             if f in reads] + ([f"branch={ins.branch}"] if ins.branch != 1 else [])
    hidden = [_field_text(f, getattr(ins, f)) for f in ("in1", "in2", "const", "dim")
              if f not in reads and getattr(ins, f) != 0]
    state = index + 2
    line = f"({state}) {ins.op} {' '.join(shown)} -> h{state}".replace("  ", " ")
    return line + (f"   [{' '.join(hidden)}]" if hidden else "")


def _non_default(options: MacroOptions) -> dict:
    defaults = MacroOptions().to_dict()
    return {section: {k: v for k, v in values.items() if v != defaults[section][k]}
            for section, values in options.to_dict().items() if values != defaults[section]}


def to_listing(dna: DNA) -> str:
    lines = [_HEADER, f"name: {dna.name}",
             "constants: " + " ".join(f"c[{i}]={c!r}" for i, c in enumerate(map(float, dna.constants))),
             "dimensions: " + " ".join(f"d[{i}]={d}" for i, d in enumerate(dna.dimensions)),
             f"macro_options: {json.dumps(_non_default(dna.macro_options), sort_keys=True)}"]
    for s, sp in enumerate(dna.subprograms):
        lines.append(f"S{s}{' ' + sp.name if sp.name else ''}:")
        lines.append("  (0) INPUT (1) INPUT")
        lines.extend("  " + instruction_line(ins, i) for i, ins in enumerate(sp.instructions))
    return "\n".join(lines) + "\n"


def _parse_fields(text: str, where: str) -> dict:
    fields = {}
    for token in text.split():
        match = _FIELD.match(token)
        if not match:
            raise DNAError(f"{where}: cannot read field {token!r}, expected in1=N, in2=N, c=c[N], dim=d[N] or "
                           "branch=N")
        name, plain, c_index, d_index = match.groups()
        key = {"c": "const"}.get(name, name)
        fields[key] = int(plain if plain is not None else c_index if c_index is not None else d_index)
    return fields


def _bank(line: str, key: str, prefix: str, convert, where: str):
    values = []
    for i, token in enumerate(line[len(key) + 1:].split()):
        match = re.match(rf"^{prefix}\[{i}\]=(\S+)$", token)
        if not match:
            raise DNAError(f"{where}: cannot read {token!r}, expected {prefix}[{i}]=VALUE")
        try:
            values.append(convert(match.group(1)))
        except ValueError:
            raise DNAError(f"{where}: {match.group(1)!r} is not a number") from None
    return tuple(values)


def from_listing(text: str) -> DNA:
    """Parse a listing produced by `to_listing` (or written by hand in the same form)."""
    header = {"name": "", "constants": None, "dimensions": None, "macro_options": {}}
    subprograms: list[tuple[str, list[Instruction]]] = []
    for number, raw in enumerate(text.splitlines(), 1):
        line, where = raw.strip(), f"listing line {number}"
        if not line or line.startswith("#") or line == "(0) INPUT (1) INPUT":
            continue
        if line.startswith("name:"):
            header["name"] = line[5:].strip()
        elif line.startswith("constants:"):
            header["constants"] = _bank(line, "constants", "c", float, where)
        elif line.startswith("dimensions:"):
            header["dimensions"] = _bank(line, "dimensions", "d", int, where)
        elif line.startswith("macro_options:"):
            try:
                header["macro_options"] = json.loads(line[len("macro_options:"):])
            except json.JSONDecodeError as err:
                raise DNAError(f"{where}: macro_options is not valid JSON: {err}") from None
        elif (match := _SUBPROGRAM.match(line)):
            if int(match.group(1)) != len(subprograms):
                raise DNAError(f"{where}: found S{match.group(1)}, expected S{len(subprograms)} (subprograms are "
                               "listed in index order)")
            subprograms.append((match.group(2) or "", []))
        elif (match := _INSTRUCTION.match(line)):
            if not subprograms:
                raise DNAError(f"{where}: instruction before any subprogram header 'S0 main:'")
            state, op, shown, written, hidden = match.groups()
            expected = len(subprograms[-1][1]) + 2
            if int(state) != expected or int(written) != expected:
                raise DNAError(f"{where}: found state ({state}) -> h{written}, expected ({expected}) -> h{expected}")
            fields = _parse_fields(shown, where) | _parse_fields(hidden or "", where)
            subprograms[-1][1].append(Instruction(op=op, **fields))
        else:
            raise DNAError(f"{where}: cannot read {line!r}, expected a header (name:, constants:, dimensions:, "
                           "macro_options:), a subprogram 'S<n> name:' or an instruction '(i) OP in1=... -> hi'")
    banks = {k: header[k] for k in ("constants", "dimensions") if header[k] is not None}
    try:
        macro = MacroOptions.from_dict(header["macro_options"])
    except ValueError as err:
        raise DNAError(str(err)) from None
    return DNA(subprograms=tuple(Subprogram(tuple(ins), name) for name, ins in subprograms),
               macro_options=macro, name=header["name"], **banks)
