"""A simulated fitness: a model of mutation effects plus training noise, for comparing search settings in minutes.

`Landscape` gives every program a true quality (lower is better) from its lowered graph, so an edit changes only
what it touches, and a trial's noisy metric at each hurdle and at the end; `SimulatedExecutor` runs the search's
trials against it in process, hurdles and all. It answers questions about the search (evolution or the hill
climber? which population? how many individuals?) over many search seeds, under the model; it says nothing about
which blocks are good. `bench/search_strategies.py` runs it.

The model. A program's features are its distinct graph nodes, each keyed by its op, constant, width, branching
and the ops of its inputs (a local neighbourhood: an edit changes the edited node and its consumers, a median of 6
features for one mutation of the Transformer). Against the seed, each feature gained or lost adds an effect drawn
once per (landscape, feature, direction): mostly small and harmful, now and then a large gain, and for a gained
feature sometimes fatal (the program diverges); the gains saturate, so returns diminish. Dead code is not in the
graph, so it changes nothing, as in training. A trial with training seed s at budget fraction t measures quality +
curve(t) + the program's own early-learning offset * (1 - t) + noise whose spread falls with t; half the noise's
variance is shared by every program trained with the same s (common random numbers). Every draw is seeded by the
landscape's seed and the program or feature, so a simulated run is reproducible. The defaults give single edits of
the Transformer 2-8% fatal (measured: 6-10% of children diverged or invalid) and a median harm of about 0.02 nats,
with the discovery config's measured noise.
"""

from __future__ import annotations

import dataclasses
import hashlib
import math
import random
from typing import Any, Callable

from primer_search.program.dna import DNA
from primer_search.program.graph import lower
from primer_search.search.executors import InProcessExecutor


@dataclasses.dataclass(frozen=True)
class Landscape:
    """The effect and noise model (see the module docstring)."""

    seed_program: DNA
    seed: int = 0                       # which landscape: the effects' draws
    seed_quality: float = 3.7684        # the seed program's true final metric
    harm: float = 0.004                 # mean effect of an ordinary feature change (positive: worse)
    spread: float = 0.008               # Laplace scale of an ordinary feature change
    gain_rate: float = 0.003            # chance that a feature change is a large gain
    gain: tuple[float, float] = (0.05, 0.2)   # its size, uniform in this range
    reach: float = 0.4                  # the most any program gains on the seed (the gains saturate)
    fatal_rate: float = 0.02            # chance that a feature gained makes training diverge
    noise: float = 0.0137               # spread of the final metric across training seeds
    early_noise: float = 0.034          # spread at the first hurdle's fraction...
    early_fraction: float = 0.033       # ...which is this fraction of the budget
    shared_noise: float = 0.5           # correlation of two programs' noise under the same training seed
    early_offset: float = 0.03          # spread of a program's early-learning offset (hurdles are imperfect)
    curve: float = 0.35                 # loss above the final at fraction t: curve * (t ** -0.5 - 1)
    bytes_per_token: float = 2.27       # the metric is a validation loss; bits per byte follow from it
    steps: int = 1197                   # the seed's training steps, for the calibration's hurdle placement
    diverges_at: float = 0.01           # budget fraction a diverging trial spends (measured: about 1%)

    def features(self, dna: DNA) -> frozenset:
        """The program's distinct (op, constant, width, branching, input ops) node keys."""
        nodes = lower(dna).nodes
        return frozenset(
            (n.op, n.const, None if n.dim is None else (n.dim.units, n.dim.ones), n.k,
             tuple(nodes[i].op for i in n.inputs)) for n in nodes)

    def _draw(self, *key: Any) -> random.Random:
        digest = hashlib.sha256(repr((self.seed, *key)).encode()).digest()
        return random.Random(int.from_bytes(digest[:8], "big"))

    def effect(self, feature, direction: str) -> float:
        """The change in quality of gaining ("+") or losing ("-") `feature`; inf: fatal."""
        rng = self._draw("effect", feature, direction)
        u = rng.random()
        if u < self.gain_rate:
            return -rng.uniform(*self.gain)
        if u < self.gain_rate + self.fatal_rate and direction == "+":
            return math.inf
        return self.harm + self.spread * (rng.expovariate(1.0) - rng.expovariate(1.0))

    def quality(self, dna: DNA) -> float:
        """The program's true final metric (inf: it diverges): the seed's plus every distinct feature gained or
        lost, its effects summed; their gains saturate at `reach` below the seed (returns diminish)."""
        own, base = self.features(dna), self.features(self.seed_program)
        total = sum(self.effect(f, "+") for f in own - base) + sum(self.effect(f, "-") for f in base - own)
        if total < 0:
            total = -self.reach * (1 - math.exp(total / self.reach))
        return self.seed_quality + total

    def measure(self, dna: DNA, training_seed: int, fraction: float) -> float:
        """One trial's metric at budget `fraction` (1: the end) with `training_seed`."""
        return self._measure(self.quality(dna), lower(dna).canonical_hash(), training_seed, fraction)

    def _measure(self, quality: float, key: str, training_seed: int, fraction: float) -> float:
        offset = self._draw("offset", key).gauss(0.0, self.early_offset)
        shared = self._draw("shared", training_seed, fraction).gauss(0.0, 1.0)
        own = self._draw("noise", key, training_seed, fraction).gauss(0.0, 1.0)
        slope = math.log(self.early_noise / self.noise) / -math.log(self.early_fraction)
        sigma = self.noise * fraction ** -slope
        noise = sigma * (math.sqrt(self.shared_noise) * shared + math.sqrt(1 - self.shared_noise) * own)
        return quality + self.curve * (fraction ** -0.5 - 1) + offset * (1 - fraction) + noise

    def trial(self, payload: dict, ask: Callable[[dict], bool] | None = None) -> dict:
        """What `run_trial` returns, simulated: asks at each checkpoint, stops when told to."""
        dna = DNA.from_dict(payload["dna"])
        seed = payload.get("training_seed")
        seed = payload["config"]["training"]["seed"] if seed is None else seed
        quality, key = self.quality(dna), lower(dna).canonical_hash()
        if math.isinf(quality):
            return {"status": "diverged", "fitness": None, "budget_fraction": self.diverges_at}
        checkpoints = []
        for i, fraction in enumerate(payload["config"]["training"].get("checkpoints", ())):
            checkpoints.append(self._metrics(self._measure(quality, key, seed, fraction), fraction))
            if ask is not None and not ask({"hurdle": i, "fraction": fraction, "value": checkpoints[-1]["fitness"]}):
                return {"status": "stopped", **checkpoints[-1], "checkpoints": checkpoints}
        final = self._metrics(self._measure(quality, key, seed, 1.0), 1.0)
        return {"status": "ok", **final, "checkpoints": checkpoints}

    def _metrics(self, loss: float, fraction: float) -> dict:
        """What a FitnessResult or one of its checkpoints holds, as far as the search reads it."""
        return {"fitness": loss, "validation_loss": loss, "bits_per_byte": loss / (math.log(2) * self.bytes_per_token),
                "fraction": fraction, "budget_fraction": fraction, "step": round(fraction * self.steps),
                "steps": round(fraction * self.steps), "train_seconds": 0.0}


class SimulatedExecutor(InProcessExecutor):
    """The in-process executor, every trial answered by `landscape.trial` instead of training."""

    def __init__(self, landscape: Landscape, answer: Callable[[int, Any], Any] | None = None):
        super().__init__(answer=answer)
        self.landscape = landscape

    def submit(self, trial_id: int, fn, payload: dict) -> None:
        super().submit(trial_id, self.landscape.trial, payload)
