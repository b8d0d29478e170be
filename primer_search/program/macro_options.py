"""Macro-options of a DNA: Mixture-of-Depths routing, CALM early exit, MEGABYTE patching (all off by default).

They are part of the DNA file format from version 1, so evolution can switch them on and tune them without a
format change. Each section is a frozen dataclass loaded strictly by `primer_search.program.schema`.
Knob ranges follow the three papers (Raposo et al. 2024; Schuster et al. 2022; Yu et al. 2023).

Combinations. Mixture-of-Depths and CALM combine: the routed blocks are wrapped first, then the exits sit after
blocks as usual (a routed block's exit sees its routed and unrouted tokens alike). MEGABYTE combines with neither:
it replaces the token-level stack those two act on, so a DNA enabling MEGABYTE with either is rejected.
Disabled sections do not change the computation: `canonical()` resets their knobs to the defaults, and the
canonical hash uses it, so two DNAs that differ only in a disabled section's knobs are the same program.

Mutation. `MUTATION_GRIDS` gives the values a knob mutation draws from (the schema's choices, and grids over the
papers' ranges for numeric knobs); `mutable_knobs(options)` the knobs of the enabled sections.
"""

from __future__ import annotations

import dataclasses
import functools

from primer_search.program.schema import between, choice, from_mapping

SECTIONS = ("mixture_of_depths", "calm", "megabyte")
SHORT_NAMES = {"mod": "mixture_of_depths", "calm": "calm", "megabyte": "megabyte"}


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
    confidence: str = choice("softmax_diff", "softmax_diff", "softmax_max", "state_cos", "classifier")
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

    def __post_init__(self):
        if self.megabyte.enabled and (self.mixture_of_depths.enabled or self.calm.enabled):
            others = " and ".join(name for name in ("mixture_of_depths", "calm") if getattr(self, name).enabled)
            raise ValueError(f": found megabyte enabled with {others}, expected megabyte alone (it replaces the "
                             f"token-level stack that mixture_of_depths and calm act on)")

    @property
    def any_enabled(self) -> bool:
        return any(self.enabled(section) for section in SECTIONS)

    def enabled(self, section: str) -> bool:
        return getattr(self, section).enabled

    def canonical(self) -> dict:
        """`to_dict()` with every disabled section at its defaults: what the computation depends on."""
        out = self.to_dict()
        for section in SECTIONS:
            if not out[section]["enabled"]:
                out[section] = dict(_DEFAULTS[section])
        return out

    def replace(self, section: str, **knobs) -> "MacroOptions":
        """A copy with some knobs of one section changed (validated like a loaded DNA)."""
        data = self.to_dict()
        data[section].update(knobs)
        return MacroOptions.from_dict(data)

    def describe(self) -> str:
        """The enabled sections and their knobs in one line ("" when none is)."""
        parts = []
        for section in SECTIONS:
            knobs = self.to_dict()[section]
            if knobs.pop("enabled"):
                parts.append(f"{section}(" + ", ".join(f"{k}={v}" for k, v in knobs.items()) + ")")
        return " ".join(parts)


_DEFAULTS = MacroOptions().to_dict()

# Values a knob mutation draws from: the schema's choices, or a grid over the paper's range.
MUTATION_GRIDS: dict[tuple[str, str], tuple] = {
    ("mixture_of_depths", "capacity"): (0.125, 0.25, 0.5),            # Raposo et al.: 12.5% best, up to 50%
    ("calm", "first_exit"): (0, 1, 2, 3),
    ("calm", "threshold"): (0.5, 0.6, 0.7, 0.8, 0.9, 0.95, 0.99),     # Schuster et al. calibrate 0.5-0.99
}
for _section, _cls in (("mixture_of_depths", MixtureOfDepths), ("calm", Calm), ("megabyte", Megabyte)):
    for _field in dataclasses.fields(_cls):
        if "choices" in _field.metadata:
            MUTATION_GRIDS[(_section, _field.name)] = tuple(_field.metadata["choices"])


def mutable_knobs(options: MacroOptions) -> list[tuple[str, str]]:
    """(section, knob) pairs a knob mutation may change: those of the enabled sections."""
    return [(section, knob) for section, knob in MUTATION_GRIDS if options.enabled(section)]
