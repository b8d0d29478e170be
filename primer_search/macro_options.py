"""Macro-options of a DNA: Mixture-of-Depths routing, CALM early exit, MEGABYTE patching (all off by default).

They are part of the DNA file format from version 1, so evolution can switch them on and tune them without a
format change. Each section is a frozen dataclass loaded strictly by `primer_search.schema`.
Knob ranges follow shared design notes on the three papers (Raposo et al. 2024; Schuster et al. 2022;
Yu et al. 2023).
"""

from __future__ import annotations

import dataclasses
import functools

from primer_search.schema import between, choice, from_mapping


@dataclasses.dataclass(frozen=True)
class MixtureOfDepths:
    """Route only the top `capacity` fraction of tokens through the selected blocks."""

    enabled: bool = False
    capacity: float = between(0.125, 0.0, 1.0, low_open=True)
    route_pattern: str = choice("every_other_odd", "every_other_odd", "every_other_even", "every_3rd", "all")
    weight_fn: str = choice("identity", "identity", "sigmoid")
    causal_fix: str = choice("predictor", "predictor", "aux_bce", "both")


@dataclasses.dataclass(frozen=True)
class Calm:
    """Early-exit heads between blocks; a token exits at the first layer whose confidence passes `threshold`."""

    enabled: bool = False
    first_exit: int = between(0, 0, 64)
    exit_interval: int = choice(1, 1, 2)
    loss_weights: str = choice("linear", "linear", "uniform", "geometric", "last_only")
    confidence: str = choice("softmax_diff", "softmax_diff", "softmax_max", "state_cos")
    threshold: float = between(0.9, 0.0, 1.0, low_open=True)


@dataclasses.dataclass(frozen=True)
class Megabyte:
    """Byte-level model: a global stack over patches and a local stack over the bytes of each patch."""

    enabled: bool = False
    patch_size: int = choice(4, 2, 4, 8, 16)
    depth_split: str = choice("1:1", "1:1", "3:2", "2:1", "3:1")
    global_width_factor: int = choice(1, 1, 2, 4)
    local_width_factor: float = choice(1.0, 0.5, 1.0)


@dataclasses.dataclass(frozen=True)
class MacroOptions:
    mixture_of_depths: MixtureOfDepths = MixtureOfDepths()
    calm: Calm = Calm()
    megabyte: Megabyte = Megabyte()

    def to_dict(self) -> dict:
        """A fresh nested dict {section: {knob: value}}, copied from a cache (`dataclasses.asdict` is slow and
        every canonical hash needs it)."""
        return {section: dict(knobs) for section, knobs in self._as_dict.items()}

    @functools.cached_property
    def _as_dict(self) -> dict:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, data) -> "MacroOptions":
        return from_mapping(cls, data, "macro_options")

    @property
    def any_enabled(self) -> bool:
        return self.mixture_of_depths.enabled or self.calm.enabled or self.megabyte.enabled
