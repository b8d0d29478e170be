"""The closed registry of primitive operations (Primer, So et al. 2021, Table 2).

Every searchable operation is one `OpSpec` record: its name, arity, the argument fields it reads, whether it
owns weights, its TensorFlow implementation, its shape rule and a one-line doc. The compiler executes a program
by looking ops up here; nothing else defines an op.

Shape glossary (used in every module of this package):
    B  batch            m  branch copies (1 when a tensor is shared by all copies)
    S  sequence length  W  feature width
A hidden state is one of two kinds:
    features   [B, m, S, W]  positions x features
    positions  [B, m, S, S]  query positions x key positions (entry (t, j) may depend on inputs up to
                             position max(t, j); every op that reads along the key axis masks j > t)
Widths are symbolic (`Width`): a multiple of the size unit plus a count of single columns, so a program's graph
does not depend on the unit chosen by parameter-band sizing.
"""

from __future__ import annotations

import dataclasses
import difflib
from typing import Callable, Mapping

FEATURES = "features"
POSITIONS = "positions"

# Argument fields an instruction carries (the paper's union of fields).
IN1, IN2, CONST, DIM = "in1", "in2", "const", "dim"


@dataclasses.dataclass(frozen=True, order=True)
class Width:
    """A feature width: `units` multiples of the size unit plus `ones` single columns."""

    units: int = 0
    ones: int = 0

    def absolute(self, unit: int) -> int:
        return self.units * unit + self.ones

    @property
    def is_single(self) -> bool:
        return self == SINGLE

    def times(self, k: int) -> "Width":
        return Width(self.units * k, self.ones * k)

    def __str__(self) -> str:
        parts = ([f"{self.units}u"] if self.units else []) + ([str(self.ones)] if self.ones else [])
        return "+".join(parts) or "0"


SINGLE = Width(0, 1)


@dataclasses.dataclass(frozen=True)
class Sig:
    """Static signature of a hidden state: its kind and (for features) its width."""

    kind: str
    width: Width = SINGLE

    def __str__(self) -> str:
        return f"[S, {self.width}]" if self.kind == FEATURES else "[S, S]"


def features(width: Width) -> Sig:
    return Sig(FEATURES, width)


POSITIONS_SIG = Sig(POSITIONS, SINGLE)


@dataclasses.dataclass(frozen=True)
class WeightSpec:
    """A weight owned by one op instance; `shape` entries are `Width`s or plain ints (kernel taps)."""

    shape: tuple
    init: str  # "glorot" | "ones" | "zeros" | "primer_dconv"

    def absolute_shape(self, unit: int) -> tuple[int, ...]:
        return tuple(d.absolute(unit) if isinstance(d, Width) else int(d) for d in self.shape)


@dataclasses.dataclass(frozen=True)
class OpCall:
    """Everything an op implementation receives: inputs, their signatures, and its arguments."""

    x: object                 # tf.Tensor, [B, m|1, S, W] or [B, m|1, S, S]
    sig_x: Sig
    y: object = None          # second tensor input for binary ops
    sig_y: Sig | None = None
    out: Sig | None = None    # output signature from the shape rule
    const: float = 0.0
    weights: Mapping[str, object] = dataclasses.field(default_factory=dict)
    unit: int = 1


@dataclasses.dataclass(frozen=True)
class OpSpec:
    name: str
    arity: int
    reads: tuple[str, ...]
    shape: Callable[..., Sig]                  # shape(sig1, sig2, dim: Width | None) -> Sig
    fn: Callable[[OpCall], object]             # the TensorFlow implementation
    doc: str
    shape_doc: str
    sequence: str = "none"                     # how it touches the sequence axis (catalogue column)
    weights: Callable[..., Mapping[str, WeightSpec]] | None = None  # weights(sig1, dim) -> specs
    tf_name: str = ""

    @property
    def has_weights(self) -> bool:
        return self.weights is not None

    def weight_specs(self, sig: Sig, dim: Width | None) -> Mapping[str, WeightSpec]:
        return self.weights(sig, dim) if self.weights else {}


_REGISTRY: dict[str, OpSpec] = {}


def register(spec: OpSpec) -> OpSpec:
    if spec.name in _REGISTRY:
        raise ValueError(f"primitive {spec.name!r} is registered twice")
    if spec.arity not in (1, 2) or (spec.arity == 2) != (IN2 in spec.reads):
        raise ValueError(f"primitive {spec.name!r}: arity {spec.arity} disagrees with reads {spec.reads}")
    _REGISTRY[spec.name] = spec
    return spec


def names() -> tuple[str, ...]:
    """All primitive names, in catalogue order."""
    return tuple(_REGISTRY)


def ops() -> Mapping[str, OpSpec]:
    return dict(_REGISTRY)


def get(name: str) -> OpSpec:
    """Look a primitive up by name; an unknown name raises a ValueError listing close matches."""
    try:
        return _REGISTRY[name]
    except KeyError:
        close = difflib.get_close_matches(str(name).upper(), _REGISTRY, n=3, cutoff=0.5)
        hint = f"; did you mean {', '.join(close)}?" if close else ""
        raise ValueError(
            f"unknown primitive {name!r}{hint} (expected one of the {len(_REGISTRY)} names in "
            "primitives/README.md, or a subprogram call S1, S2, ...)") from None


def is_primitive(name: str) -> bool:
    return name in _REGISTRY


def catalogue_markdown() -> str:
    """The catalogue table of primitives/README.md, generated from the registry."""
    rows = ["| op | arity | reads | weights | shape rule | sequence axis | TensorFlow | doc |",
            "|---|---|---|---|---|---|---|---|"]
    for spec in _REGISTRY.values():
        weights = "yes" if spec.has_weights else "-"
        rows.append(f"| {spec.name} | {spec.arity} | {', '.join(spec.reads)} | {weights} | {spec.shape_doc} "
                    f"| {spec.sequence} | `{spec.tf_name}` | {spec.doc} |")
    return "\n".join(rows)
