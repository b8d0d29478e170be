"""The speedup factor (So et al. 2021, section 4): the training compute the seed needs to reach its final quality,
divided by the compute the program needs to reach that quality, each read off its curve (`curve_of`: compute = steps
x batch tokens x FLOPs per token, against the metric) by linear interpolation between the points around its first
crossing. It is a lower bound when the program is better already at its first point. When the program never gets
there, the factor is taken at the program's final quality instead (below 1: the seed's compute to reach it over the
program's compute to first reach it), an upper bound when the seed is better already at its first point.
"""

from __future__ import annotations

import dataclasses
from typing import Sequence


@dataclasses.dataclass(frozen=True)
class Speedup:
    value: float
    kind: str          # "at": read off both curves; "lower_bound": the program better at its first point;
                       # "upper_bound": the seed better than the program's final quality at its first point


def compute_to_reach(curve: Sequence[dict], target: float, metric: str,
                     compute_key: str = "flops") -> tuple[str, float]:
    """("at", c): the compute (`compute_key` of the points) where the curve first reaches `target` (at most), by
    linear interpolation; ("before", c): already there at its first point c; ("never", c): never, c being its
    total compute."""
    previous = None
    for point in curve:
        compute, value = point[compute_key], point[metric]
        if value <= target:
            if previous is None:
                return "before", compute
            c0, v0 = previous
            return "at", c0 + (compute - c0) * (v0 - target) / (v0 - value)
        previous = (compute, value)
    return "never", curve[-1][compute_key]


def speedup_factor(seed_curve: Sequence[dict], program_curve: Sequence[dict], metric: str) -> Speedup:
    """The compute the seed needs to reach a quality over the compute the program needs to reach it, at the quality
    both reach: the seed's final one when the program gets there (the paper's factor), else the program's final
    one (a factor below 1: the program ends worse)."""
    target = seed_curve[-1][metric]
    spent = compute_to_reach(seed_curve, target, metric)[1]        # its total, unless the curve rose at the end
    kind, compute = compute_to_reach(program_curve, target, metric)
    if kind != "never":
        return Speedup(spent / compute, "at" if kind == "at" else "lower_bound")
    target = program_curve[-1][metric]
    spent = compute_to_reach(program_curve, target, metric)[1]      # as for the seed: where it first gets there
    kind, compute = compute_to_reach(seed_curve, target, metric)         # reached: the seed ends better
    return Speedup(compute / spent, "at" if kind == "at" else "upper_bound")


def curve_of(result: dict) -> list[dict]:
    """The points of a result: its checkpoints, then the end; compute = steps x batch tokens x FLOPs per token.
    A checkpoint at the same step as a later point is dropped (short budgets)."""
    if not result.get("steps") or not result.get("flops_per_token"):
        return []
    per_step = result["tokens_seen"] / result["steps"] * result["flops_per_token"]
    points = [*result.get("checkpoints", ())]
    if result.get("status") == "ok":
        points.append({"step": result["steps"], "train_seconds": result["train_seconds"],
                       "validation_loss": result["validation_loss"], "bits_per_byte": result["bits_per_byte"]})
    curve = [{"step": p["step"], "flops": p["step"] * per_step, "train_seconds": p["train_seconds"],
              "validation_loss": p["validation_loss"], "bits_per_byte": p["bits_per_byte"]} for p in points]
    return [p for p, after in zip(curve, curve[1:] + [None]) if after is None or after["step"] != p["step"]]
