"""Macro-options of a DNA: Mixture-of-Depths routing, CALM early exit, MEGABYTE patching (all off by default).

They are part of the DNA file format from version 1, so evolution can switch them on and tune them without a
format change. Each section is a frozen dataclass; loading is strict (unknown keys, wrong types and values
outside the allowed set raise a ValueError naming the section, the key, what was found and what is allowed).
Knob ranges follow shared design notes on the three papers (Raposo et al. 2024; Schuster et al. 2022;
Yu et al. 2023).
"""

from __future__ import annotations

import dataclasses
import typing


def _choice(*values):
    return {"choices": values}


def _range(low, high, low_open=False):
    return {"range": (low, high, low_open)}


@dataclasses.dataclass(frozen=True)
class MixtureOfDepths:
    """Route only the top `capacity` fraction of tokens through the selected blocks."""

    enabled: bool = False
    capacity: float = dataclasses.field(default=0.125, metadata=_range(0.0, 1.0, low_open=True))
    route_pattern: str = dataclasses.field(
        default="every_other_odd", metadata=_choice("every_other_odd", "every_other_even", "every_3rd", "all"))
    weight_fn: str = dataclasses.field(default="identity", metadata=_choice("identity", "sigmoid"))
    causal_fix: str = dataclasses.field(default="predictor", metadata=_choice("predictor", "aux_bce", "both"))


@dataclasses.dataclass(frozen=True)
class Calm:
    """Early-exit heads between blocks; a token exits at the first layer whose confidence passes `threshold`."""

    enabled: bool = False
    first_exit: int = dataclasses.field(default=0, metadata=_range(0, 64))
    exit_interval: int = dataclasses.field(default=1, metadata=_choice(1, 2))
    loss_weights: str = dataclasses.field(
        default="linear", metadata=_choice("linear", "uniform", "geometric", "last_only"))
    confidence: str = dataclasses.field(
        default="softmax_diff", metadata=_choice("softmax_diff", "softmax_max", "state_cos"))
    threshold: float = dataclasses.field(default=0.9, metadata=_range(0.0, 1.0, low_open=True))


@dataclasses.dataclass(frozen=True)
class Megabyte:
    """Byte-level model: a global stack over patches and a local stack over the bytes of each patch."""

    enabled: bool = False
    patch_size: int = dataclasses.field(default=4, metadata=_choice(2, 4, 8, 16))
    depth_split: str = dataclasses.field(default="1:1", metadata=_choice("1:1", "3:2", "2:1", "3:1"))
    global_width_factor: int = dataclasses.field(default=1, metadata=_choice(1, 2, 4))
    local_width_factor: float = dataclasses.field(default=1.0, metadata=_choice(0.5, 1.0))


_SECTIONS = {"mixture_of_depths": MixtureOfDepths, "calm": Calm, "megabyte": Megabyte}


def _section_from_dict(cls, data, where: str):
    if not isinstance(data, dict):
        raise ValueError(f"{where}: found {data!r}, expected a mapping")
    fields = {f.name: f for f in dataclasses.fields(cls)}
    hints = typing.get_type_hints(cls)
    for key, value in data.items():
        if key not in fields:
            raise ValueError(f"{where}: unknown key {key!r}, allowed keys: {', '.join(fields)}")
        kind = hints[key]
        ok = (isinstance(value, bool) if kind is bool else
              isinstance(value, kind) and not isinstance(value, bool) if kind in (int, str) else
              isinstance(value, (int, float)) and not isinstance(value, bool))
        meta = fields[key].metadata
        if ok and "choices" in meta:
            ok = value in meta["choices"]
        if ok and "range" in meta:
            low, high, low_open = meta["range"]
            ok = (low < value if low_open else low <= value) and value <= high
        if not ok:
            allowed = (f"one of {list(meta['choices'])}" if "choices" in meta else
                       f"a {kind.__name__} in {'(' if meta['range'][2] else '['}{meta['range'][0]}, "
                       f"{meta['range'][1]}]" if "range" in meta else f"a {kind.__name__}")
            raise ValueError(f"{where}.{key}: found {value!r}, allowed {allowed}")
    return cls(**{k: (float(v) if hints[k] is float else v) for k, v in data.items()})


@dataclasses.dataclass(frozen=True)
class MacroOptions:
    mixture_of_depths: MixtureOfDepths = MixtureOfDepths()
    calm: Calm = Calm()
    megabyte: Megabyte = Megabyte()

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, data) -> "MacroOptions":
        if not isinstance(data, dict):
            raise ValueError(f"macro_options: found {data!r}, expected a mapping with keys {', '.join(_SECTIONS)}")
        for key in data:
            if key not in _SECTIONS:
                raise ValueError(f"macro_options: unknown key {key!r}, allowed keys: {', '.join(_SECTIONS)}")
        return cls(**{k: _section_from_dict(_SECTIONS[k], v, f"macro_options.{k}") for k, v in data.items()})

    @property
    def any_enabled(self) -> bool:
        return self.mixture_of_depths.enabled or self.calm.enabled or self.megabyte.enabled
