"""The functional-equivalence cache's fingerprint (after AutoML-Zero's FEC, Real et al. 2020), for TF blocks.

Two programs whose graphs differ (so their canonical hashes differ) may still compute the same function, e.g.
x + x against 2 * x, or a softmax with and without a MASK its key reduction makes redundant. The fingerprint runs
the compiled block, at a small fixed size unit and with weights drawn from a fixed seed, on a fixed random probe
batch, and keeps a sketch of its outputs: 64 fixed random projections. Two fingerprints match when their macro-
options are equal and their sketches agree to a relative tolerance (`TOLERANCE` of the sketch's RMS), so the last
digits of float32 arithmetic (a fused against an unfused softmax) cannot split one function in two, as rounding
and hashing the outputs would whenever one of their thousands of values straddles a rounding boundary.

Every weight is drawn at random for the probe, also the ones whose real initialization is the identity (SHIFT
starts at 0, SCALE at 1): at those values `relu(x + shift)` and `relu(x) + shift` agree, yet they train
differently. A block whose probe outputs are not all finite has no fingerprint (NaN everywhere would make
unrelated programs equal). Equal fingerprints are strong evidence, not proof, of equal functions: weights are
drawn in graph order, so equivalent programs that order their weights differently are missed, never merged.
"""

from __future__ import annotations

import json

import numpy as np

PROBE_UNIT = 4
PROBE_SHAPE = (2, 16)        # [B, S]; the width is the block's d = width_units x PROBE_UNIT
PROBE_SEED = 20210917
SKETCH_SIZE = 64
TOLERANCE = 1e-4             # sketches match within this fraction of their RMS, entry by entry


def _projection(size: int) -> np.ndarray:
    """The fixed random projection of `size` outputs onto the sketch, [size, SKETCH_SIZE]."""
    return np.random.default_rng(PROBE_SEED + 2).normal(size=(size, SKETCH_SIZE)) / np.sqrt(size)


_MEMO: dict[tuple[str, int], str | None] = {}      # (canonical hash, width_units) -> fingerprint, per process
_MEMO_SIZE = 4096


def fingerprint(dna, width_units: int = 8) -> str | None:
    """The fingerprint (JSON text: macro-options and output sketch), or None when the block cannot be built or
    run, or its probe outputs are not all finite. A function of the canonical graph, so remembered by hash."""
    from primer_search.program.graph import canonical_hash

    try:
        key = (canonical_hash(dna), width_units)
    except Exception:  # noqa: BLE001 -- cannot be lowered: no fingerprint
        return None
    if key not in _MEMO:
        if len(_MEMO) >= _MEMO_SIZE:
            _MEMO.pop(next(iter(_MEMO)))
        _MEMO[key] = _fingerprint(dna, width_units)
    return _MEMO[key]


def _fingerprint(dna, width_units: int) -> str | None:
    from primer_search.program.compiler import compile_block

    d = width_units * PROBE_UNIT
    probe = np.random.default_rng(PROBE_SEED).normal(size=(*PROBE_SHAPE, d)).astype(np.float32)   # [B, S, d]
    rng = np.random.default_rng(PROBE_SEED + 1)
    try:
        block = compile_block(dna, unit=PROBE_UNIT, width_units=width_units, seed=PROBE_SEED)
        block(probe[:, :1])                           # builds the weights
        for weight in block.weights:                  # in graph order: the same program gets the same draws
            fan_in = weight.shape[-2] if len(weight.shape) >= 2 else 4
            weight.assign(rng.normal(0.0, fan_in ** -0.5, size=weight.shape).astype(np.float32))
        outputs = block(probe).numpy().astype(np.float64).ravel()     # [B * S * d]
    except Exception:  # noqa: BLE001 -- a program that cannot run has no fingerprint; training will say why
        return None
    if not np.all(np.isfinite(outputs)):
        return None
    sketch = outputs @ _projection(outputs.size)      # [SKETCH_SIZE]
    if not np.all(np.isfinite(sketch)):
        return None
    macro = dna.macro_options.canonical() if dna.macro_options.any_enabled else None
    return json.dumps({"macro": macro, "sketch": [float(f"{v:.9g}") for v in sketch]}, sort_keys=True)


def _parse(text: str) -> tuple[str, np.ndarray]:
    data = json.loads(text)
    return json.dumps(data["macro"], sort_keys=True), np.asarray(data["sketch"], np.float64)


def _close(sketches: np.ndarray, sketch: np.ndarray) -> np.ndarray:
    """Which rows of `sketches` [N, K] match `sketch` [K]."""
    scale = TOLERANCE * (np.sqrt(np.mean(np.square(sketch))) + 1e-12)
    return np.max(np.abs(sketches - sketch), axis=-1) <= scale


def same_function(a: str | None, b: str | None) -> bool:
    """Whether two fingerprints match (None matches nothing)."""
    if a is None or b is None:
        return False
    (macro_a, sketch_a), (macro_b, sketch_b) = _parse(a), _parse(b)
    return macro_a == macro_b and bool(_close(sketch_b[None], sketch_a)[0])


class FingerprintIndex:
    """Fingerprints of known programs, each with an id; `find` returns the id of the first that matches.
    A scan is one vectorized comparison per macro-options group (about a millisecond at 25,000 programs)."""

    def __init__(self):
        self._groups: dict[str, tuple[list[int], np.ndarray]] = {}   # macro-options -> (ids, sketches [cap, K])

    def __len__(self) -> int:
        return sum(len(ids) for ids, _ in self._groups.values())

    def add(self, key: int, fingerprint_text: str) -> None:
        macro, sketch = _parse(fingerprint_text)
        ids, rows = self._groups.get(macro, ([], np.empty((16, SKETCH_SIZE))))
        if len(ids) == len(rows):                                       # grow by doubling
            rows = np.concatenate([rows, np.empty_like(rows)])
        rows[len(ids)] = sketch
        ids.append(key)
        self._groups[macro] = (ids, rows)

    def find(self, fingerprint_text: str | None) -> int | None:
        if fingerprint_text is None:
            return None
        macro, sketch = _parse(fingerprint_text)
        if macro not in self._groups:
            return None
        ids, rows = self._groups[macro]
        hits = np.flatnonzero(_close(rows[:len(ids)], sketch))
        return ids[hits[0]] if hits.size else None
