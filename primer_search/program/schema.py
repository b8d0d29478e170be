"""Strict loading of frozen dataclasses from YAML/JSON mappings: configs and DNA macro-options share it.

Every field's type comes from its annotation (bool, int, float, str, `X | None`, `tuple[T, ...]`, a nested
dataclass); `choice(...)` and `between(...)` add the allowed values. An unknown key, a wrong type or a value outside
the allowed set raises a `ValueError` that names the key's full path, what was found and what is expected, e.g.
`training.budget_kind: found 'minutes', expected one of ['seconds', 'steps', 'flops']`.
"""

from __future__ import annotations

import dataclasses
import math
import pathlib
import types
import typing


MAX_FILE_BYTES = 1 << 20      # configs and DNA files are kilobytes; a bigger file is refused before parsing


def read_text(path, what: str) -> str:
    """The UTF-8 text of a small input file (`what`: "config", "DNA file"), or a ValueError naming the file."""
    path = pathlib.Path(path)
    if not path.is_file():
        raise ValueError(f"{what} {str(path)!r} not found")
    size = path.stat().st_size
    if size > MAX_FILE_BYTES:
        raise ValueError(f"{path}: {size:,} bytes, expected a {what} of at most {MAX_FILE_BYTES:,} bytes")
    try:
        return path.read_bytes().decode("utf-8")
    except UnicodeDecodeError as err:
        raise ValueError(f"{path}: not UTF-8 text (byte {err.start}), expected a {what} in UTF-8") from None


def choice(default, *values):
    """A field restricted to `values` (the default must be one of them)."""
    assert default in values, (default, values)
    return dataclasses.field(default=default, metadata={"choices": values})


def between(default, low, high=None, low_open=False):
    """A numeric field in [low, high] (or (low, high] with `low_open`); `high=None` means unbounded."""
    return dataclasses.field(default=default, metadata={"range": (low, high, low_open)})


def _describe(kind) -> str:
    if kind is type(None):
        return "null"
    if dataclasses.is_dataclass(kind):
        return "a mapping"
    origin, args = typing.get_origin(kind), typing.get_args(kind)
    if origin in (typing.Union, types.UnionType):
        return " or ".join(_describe(a) for a in args)
    if origin is tuple:
        if len(args) == 2 and args[1] is Ellipsis:
            return f"a list of {_describe(args[0]).removeprefix('a ').removeprefix('an ')}s"
        return f"a list of {len(args)} values"
    return {bool: "true or false", int: "an integer", float: "a number", str: "a string"}[kind]


def _convert(kind, value, where: str):
    """`value` as `kind`, or raise naming `where`."""
    if dataclasses.is_dataclass(kind):
        return from_mapping(kind, value, where)
    origin, args = typing.get_origin(kind), typing.get_args(kind)
    if origin in (typing.Union, types.UnionType):
        if value is None and type(None) in args:
            return None
        inner = [a for a in args if a is not type(None)]
        return _convert(inner[0], value, where)
    if origin is tuple and isinstance(value, (list, tuple)):
        kinds = [args[0]] * len(value) if args[1:] == (Ellipsis,) else list(args)
        if len(kinds) == len(value):
            return tuple(_convert(k, v, f"{where}[{i}]") for i, (k, v) in enumerate(zip(kinds, value)))
    elif kind is float and isinstance(value, str):  # YAML 1.1 reads `1e12` as a string
        try:
            return _finite(float(value), where)
        except ValueError as err:
            if "finite" in str(err):
                raise
    elif kind is float and isinstance(value, (int, float)) and not isinstance(value, bool):
        return _finite(float(value), where)
    elif kind in (bool, int, str) and isinstance(value, kind) and (kind is bool) == isinstance(value, bool):
        return value
    raise ValueError(f"{where}: found {value!r}, expected {_describe(kind)}")


def _finite(value: float, where: str) -> float:
    if not math.isfinite(value):
        raise ValueError(f"{where}: found {value!r}, expected a finite number")
    return value


def _check_allowed(field: dataclasses.Field, value, where: str) -> None:
    if "choices" in field.metadata and value not in field.metadata["choices"]:
        raise ValueError(f"{where}: found {value!r}, expected one of {list(field.metadata['choices'])}")
    if "range" in field.metadata and value is not None:
        low, high, low_open = field.metadata["range"]
        if (value <= low if low_open else value < low) or (high is not None and value > high):
            upper = f"{high}]" if high is not None else "inf)"
            interval = f"{'(' if low_open else '['}{low}, {upper}"
            raise ValueError(f"{where}: found {value!r}, expected a value in {interval}")


def from_mapping(cls, data, where: str = ""):
    """An instance of dataclass `cls` from a mapping; missing keys keep their defaults.

    `where` is the mapping's path in the enclosing document ("" for the top level)."""
    if data is None:
        data = {}
    if not isinstance(data, dict):
        raise ValueError(f"{where or 'config'}: found {data!r}, expected a mapping")
    fields = {f.name: f for f in dataclasses.fields(cls)}
    hints = typing.get_type_hints(cls)
    values = {}
    for key, value in data.items():
        if key not in fields:
            raise ValueError(f"{where or 'config'}: unknown key {key!r}, allowed keys: {', '.join(fields)}")
        path = f"{where}.{key}" if where else key
        values[key] = _convert(hints[key], value, path)
        _check_allowed(fields[key], values[key], path)
    try:
        return cls(**values)
    except ValueError as err:  # cross-field checks in __post_init__ name the key relative to the section
        message = str(err)                          # "key: ..." for one key, ": ..." for the section
        raise ValueError(f"{where}{'' if message.startswith(':') else '.'}{message}" if where else
                         message.removeprefix(": ")) from None
