"""Sizes and FLOPs of the three model kinds, from the DNA and the model config alone (no Keras, no TensorFlow).

The Keras layers (`model`, `mod`, `calm`, `megabyte`) build what this module counts, and the tests hold the two
to each other. `cost_of` gives a DNA's `ModelCost`; `lm.architecture.Architecture` is one with its data and build.
"""

from __future__ import annotations

import dataclasses
import functools
import math
from typing import Callable

from primer_search.config import BYTE_VOCAB_SIZE, Config, ModelConfig
from primer_search.program import cost
from primer_search.program.decoding_rules import cache_nodes
from primer_search.program.dna import DNA
from primer_search.program.graph import Graph, lower
from primer_search.program.macro_options import Calm


# -- sizing: the token model and the rule that fits any kind into the parameter band ------------------------------

class SizingError(ValueError):
    """No size unit puts the model inside the configured parameter band."""


def search_unit(count: Callable[[int], int], config: ModelConfig) -> int:
    """The sizing rule: every relative dimension of the DNA is multiplied by one size unit, and the block width is
    `width_units` units. The unit is the largest integer in [1, max_unit] whose whole-model parameter `count(unit)`
    is at most the band's upper end; if that count is below the band's lower end the DNA cannot be sized into the
    band and a `SizingError` says so. Counts grow with the unit, so the choice is a deterministic binary search
    over exact counts."""
    low, high = config.param_band
    if count(1) > high:
        raise SizingError(f"model has {count(1):,} parameters at the smallest unit (1), "
                          f"above the band's upper end {high:,}; lower vocab_size or num_layers, or widen the band")
    lo, hi = 1, config.max_unit
    while lo < hi:  # largest unit with count <= high
        mid = (lo + hi + 1) // 2
        if count(mid) <= high:
            lo = mid
        else:
            hi = mid - 1
    total = count(lo)
    if total < low:
        raise SizingError(f"model has {total:,} parameters at unit {lo} (the largest unit allowed, max_unit="
                          f"{config.max_unit}, or the largest under {high:,}); below the band's lower end {low:,}")
    return lo


def parameter_count(graph: Graph, config: ModelConfig, unit: int) -> int:
    """Exact trainable parameter count of the whole language model at this unit (MoD routers included)."""
    d = config.width_units * unit
    embedding = config.vocab_size * d
    head = 0 if config.tie_embeddings else d * config.vocab_size + config.vocab_size
    routing, options = 0, graph.macro_options["mixture_of_depths"]     # the DNA's options, as a dict
    if options["enabled"]:
        routing = sum(routed_layers(options["route_pattern"], config.num_layers)) * routing_parameters(
            d, options["causal_fix"])
    return embedding + config.num_layers * graph.parameter_count(unit) + 2 * d + head + routing


def choose_unit(dna: DNA, config: ModelConfig) -> int:
    """The size unit that puts the token model in `config.param_band` (`search_unit`)."""
    graph = lower(dna, config.width_units)
    return search_unit(lambda unit: parameter_count(graph, config, unit), config)


def routed(dna: DNA, num_layers: int) -> list[bool]:
    """Which blocks the DNA's Mixture-of-Depths option routes (none when it is disabled)."""
    options = dna.macro_options.mixture_of_depths
    return routed_layers(options.route_pattern, num_layers) if options.enabled else [False] * num_layers


# -- Mixture-of-Depths routing ----------------------------------------------------------------------------------

ROUTE_PATTERNS = ("every_other_odd", "every_other_even", "every_3rd", "all")


def routed_layers(pattern: str, num_layers: int) -> list[bool]:
    """Which blocks of a `num_layers` stack route (0-based indices). every_other_odd: 1, 3, 5, ... (block 0, which
    reads the embeddings, stays dense; the paper's best: every other block); every_other_even: 0, 2, 4, ...;
    every_3rd: 2, 5, 8, ... (the third, sixth, ... block); all: every block."""
    rules = {"every_other_odd": lambda i: i % 2 == 1, "every_other_even": lambda i: i % 2 == 0,
             "every_3rd": lambda i: i % 3 == 2, "all": lambda i: True}
    if pattern not in rules:
        raise ValueError(f"unknown MoD route_pattern {pattern!r}, expected one of {', '.join(ROUTE_PATTERNS)}")
    return [rules[pattern](i) for i in range(num_layers)]


def routing_parameters(d: int, causal_fix: str) -> int:
    """Parameters one routed block adds: the router (d + 1) and, with a predictor, its MLP d -> d/2 -> 1."""
    hidden = max(1, d // 2)
    predictor = d * hidden + hidden + hidden + 1 if causal_fix in ("predictor", "both") else 0
    return d + 1 + predictor


def routing_flops(d: int, causal_fix: str) -> int:
    """Forward FLOPs per token of the router and predictor of one routed block (2 per weight)."""
    return 2 * routing_parameters(d, causal_fix)


def capacity_k(capacity: float, length: int) -> int:
    """Tokens routed per sequence: min(S, max(1, ceil(capacity * S))). The 1e-9 keeps 0.3 * 10 at 3, not 4
    (`mod.MixtureOfDepths` computes the same in float64 on a tensor length)."""
    return min(length, max(1, math.ceil(capacity * length - 1e-9)))


# -- CALM exits ----------------------------------------------------------------------------------------------------

def exit_layers(num_layers: int, first_exit: int, exit_interval: int) -> tuple[int, ...]:
    """Layers (0-based block indices) followed by an exit, ascending; the last layer is always one."""
    if num_layers < 1 or exit_interval < 1 or first_exit < 0:
        raise ValueError(f"exit_layers: need num_layers >= 1, exit_interval >= 1, first_exit >= 0; received "
                         f"{num_layers}, {exit_interval}, {first_exit}")
    return tuple(range(first_exit, num_layers - 1, exit_interval)) + (num_layers - 1,)


def classifier_parameters(d_model: int, calm: Calm) -> int:
    """Parameters the exits add: the early-exit classifier's d + 1 with confidence "classifier", else none."""
    return d_model + 1 if calm.enabled and calm.confidence == "classifier" else 0


def exit_head_flops(d_model: int, vocab_size: int, num_exits: int) -> int:
    """Forward FLOPs per token that the extra exits add to a training step (one more projection per exit)."""
    return 2 * d_model * vocab_size * (num_exits - 1)


# -- MEGABYTE's two stacks --------------------------------------------------------------------------------------

DEPTH_SPLITS = ("1:1", "3:2", "2:1", "3:1")


def split_depth(num_layers: int, depth_split: str) -> tuple[int, int]:
    """(global, local) layer counts summing to num_layers in the ratio "G:L": global = round(N*G/(G+L)), halves
    rounded up (the paper spends more on the global model), then at least one layer each when N >= 2."""
    try:
        g, l = (int(part) for part in depth_split.split(":"))
    except (AttributeError, ValueError):
        raise ValueError(f"depth_split: found {depth_split!r}, expected 'G:L' such as one of {list(DEPTH_SPLITS)}")
    if num_layers < 0 or g < 0 or l < 0 or g + l == 0:
        raise ValueError(f"split_depth: need num_layers >= 0 and a ratio with a positive part; received "
                         f"{num_layers}, {depth_split!r}")
    global_layers = (2 * num_layers * g + g + l) // (2 * (g + l))       # round half up, in integers
    if num_layers >= 2:
        global_layers = min(max(global_layers, 1), num_layers - 1)
    return global_layers, num_layers - global_layers


@dataclasses.dataclass(frozen=True)
class Widths:
    """Units and widths of MEGABYTE's two stacks (`MegabyteModel` says how they follow the knobs)."""

    global_unit: int
    local_unit: int
    d_global: int     # P * D_G, the global stack's width
    d_byte: int       # D_G
    d_local: int      # D_L


def widths(width_units: int, unit: int, patch_size: int, global_width_factor: int = 1,
           local_width_factor: float = 1.0) -> Widths:
    if patch_size < 1 or unit < 1 or global_width_factor < 1 or not 0 < local_width_factor:
        raise ValueError(f"MEGABYTE widths: need patch_size, unit, global_width_factor >= 1 and "
                         f"local_width_factor > 0; received {patch_size}, {unit}, {global_width_factor}, "
                         f"{local_width_factor}")
    step = patch_size // math.gcd(patch_size, width_units)              # global_unit multiple of step: P | width
    global_unit = -(-global_width_factor * unit // step) * step
    local_unit = max(1, math.floor(local_width_factor * unit))
    d_global = width_units * global_unit
    return Widths(global_unit, local_unit, d_global, d_global // patch_size, width_units * local_unit)


def megabyte_parameter_count(graph: Graph, unit: int, patch_size: int, global_layers: int, local_layers: int,
                             vocab_size: int, global_width_factor: int = 1, local_width_factor: float = 1.0,
                             tie_embeddings: bool = True) -> int:
    """Exact trainable parameter count of a MegabyteModel (graph: the DNA lowered at the model's width_units)."""
    w = widths(graph.width_units, unit, patch_size, global_width_factor, local_width_factor)
    global_part = (vocab_size * w.d_byte + (patch_size - 1) * w.d_byte          # embedding, pad slots
                   + global_layers * graph.parameter_count(w.global_unit) + 2 * w.d_global)   # blocks, norm
    local_part = (w.d_byte * w.d_local + vocab_size * w.d_local + w.d_local     # W_GL, embedding, pad
                  + local_layers * graph.parameter_count(w.local_unit) + 2 * w.d_local)       # blocks, norm
    head = 0 if tie_embeddings else w.d_local * vocab_size + vocab_size
    return global_part + local_part + head


def megabyte_flops(graph: Graph, unit: int, length: int, patch_size: int, global_layers: int, local_layers: int,
                   vocab_size: int, global_width_factor: int = 1, local_width_factor: float = 1.0) -> int:
    """Forward FLOPs per input byte, counted as `primer_search.program.cost` counts a plain model: a global block runs
    once per patch (K = ceil(length / P) positions) and a local block once per byte over length P; plus W_GL
    (2 D_G D_L) and the output projection (2 D_L V). This is the paper's 2T(m_G/P + m_L) with attention terms."""
    w = widths(graph.width_units, unit, patch_size, global_width_factor, local_width_factor)
    patches = -(-length // patch_size)
    global_per_patch = global_layers * cost.block_flops(graph, w.global_unit, patches)
    local_per_byte = local_layers * cost.block_flops(graph, w.local_unit, patch_size)
    return (-(-global_per_patch // patch_size) + local_per_byte
            + 2 * w.d_byte * w.d_local + 2 * w.d_local * vocab_size)


# -- the kinds: a token model, and the CALM and MEGABYTE variants ---------------------------------------------------

@dataclasses.dataclass(frozen=True)
class ModelCost:
    """Size and cost of the model a DNA asks for: a token model (with Mixture-of-Depths routers) here, CALM and
    MEGABYTE in the subclasses. `cost_of` picks the kind; `lm.architecture.Architecture` adds its data and build.

    Size. Every kind is sized into `model.param_band` by the same rule: the largest size unit whose exact parameter
    count fits (`search_unit`). MoD routers count; CALM exits share the output projection (an early-exit
    classifier adds d + 1); a MEGABYTE model splits `num_layers` between its stacks (`split_depth`).

    Cost, per target (a token, or a byte for MEGABYTE), counted as `primer_search.program.cost` counts a block
    (with the functions above):
        training  3 x forward. A routed block runs on k = capacity_k(capacity, S) of S positions, at sequence length k,
                  plus its router and predictor on all of them; a CALM model projects every exit.
        sampling  one forward step of autoregressive generation with a cache, at the mean context of a generated
                  sequence, (S + 1) // 2 positions (quadratic ops cost 2 x context x width per token). From what the
                  evaluation measured (`stats`): a routed block runs for the routed fraction of tokens over a cache of
                  routed tokens only; a CALM token runs its average number of blocks and exit projections, and each
                  later block still computes the keys and values of an exited token (`decoding_rules.cache_nodes`);
                  MEGABYTE runs its global stack once per patch.
    """

    dna: DNA
    config: ModelConfig           # vocab_size is the data's
    sequence_length: int          # positions per training row (bytes for MEGABYTE)
    kind = "token"

    @functools.cached_property
    def graph(self) -> Graph:
        return lower(self.dna, self.config.width_units)

    def choose_unit(self) -> int:
        return search_unit(self.parameter_count, self.config)

    def parameter_count(self, unit: int) -> int:
        return parameter_count(self.graph, self.config, unit)

    def training_flops_per_token(self, unit: int) -> int:
        length = self.sequence_length
        k = capacity_k(self.dna.macro_options.mixture_of_depths.capacity, length)
        forward = self._blocks_flops(unit, length, routed_fraction=k / length, routed_length=k)
        d = self.config.width_units * unit
        forward += self._head_flops(unit) + exit_head_flops(d, self.config.vocab_size, self._exits())
        return cost.TRAINING_MULTIPLIER * forward

    def sampling_flops_per_token(self, unit: int, stats: dict | None = None) -> int:
        """Forward FLOPs of generating one token (one byte for MEGABYTE) with a cache; `stats` are the evaluation's
        measured `mod_routed_fraction`, `calm_average_layers` and `calm_exit_heads` (see the class docstring)."""
        context = (self.sequence_length + 1) // 2
        fraction, routed_context = self._routing(context, stats or {})
        return self._blocks_flops(unit, context, fraction, routed_context) + self._head_flops(unit)

    def training_memory_bytes(self, unit: int, batch_tokens: int) -> int:
        """Estimated peak memory of a training step (`cost.training_memory_bytes`, per stack for MEGABYTE)."""
        return cost.training_memory_bytes(self.graph, unit, self.sequence_length, self.config.num_layers,
                                          self.config.vocab_size, self.parameter_count(unit), batch_tokens,
                                          output_heads=self._exits())

    def _routing(self, context: int, stats: dict) -> tuple[float, int]:
        """The routed fraction of tokens (measured, else the capacity) and the routed tokens of a context."""
        fraction = stats.get("mod_routed_fraction", self.dna.macro_options.mixture_of_depths.capacity)
        return fraction, max(1, round(fraction * context))

    def _blocks_flops(self, unit: int, length: int, routed_fraction: float, routed_length: int) -> int:
        """Forward FLOPs per token of the stack of blocks (MoD routers included), rounded to an integer."""
        d = self.config.width_units * unit
        dense = cost.block_flops(self.graph, unit, length)
        options = self.dna.macro_options.mixture_of_depths
        routed_block = (routed_fraction * cost.block_flops(self.graph, unit, routed_length)
                        + routing_flops(d, options.causal_fix))
        return round(sum(routed_block if is_routed else dense
                         for is_routed in routed(self.dna, self.config.num_layers)))

    def _head_flops(self, unit: int) -> int:
        return 2 * self.config.width_units * unit * self.config.vocab_size

    def _exits(self) -> int:
        return 1


class CalmCost(ModelCost):
    """A token model with CALM's early exits: the exits' projections and classifier, and fewer blocks per token."""

    kind = "calm"

    def parameter_count(self, unit: int) -> int:
        d = self.config.width_units * unit
        return super().parameter_count(unit) + classifier_parameters(d, self.dna.macro_options.calm)

    def sampling_flops_per_token(self, unit: int, stats: dict | None = None) -> int:
        stats = stats or {}
        context = (self.sequence_length + 1) // 2
        fraction, routed_context = self._routing(context, stats)
        layers = stats.get("calm_average_layers", self.config.num_layers)
        heads = stats.get("calm_exit_heads", 1.0)
        per_block = self._blocks_flops(unit, context, fraction, routed_context) / self.config.num_layers
        cache_only = cost.nodes_flops(self.graph, cache_nodes(self.graph), unit, context)
        skipped = self.config.num_layers - layers
        return round(layers * per_block + skipped * cache_only + heads * self._head_flops(unit))

    def _exits(self) -> int:
        options = self.dna.macro_options.calm
        return len(exit_layers(self.config.num_layers, options.first_exit, options.exit_interval))


class MegabyteCost(ModelCost):
    """MEGABYTE: a global stack over patches and a local stack over their bytes, both of the DNA's block."""

    kind = "megabyte"

    @property
    def layers(self) -> tuple[int, int]:
        """The (global, local) layer counts."""
        return split_depth(self.config.num_layers, self.dna.macro_options.megabyte.depth_split)

    def parameter_count(self, unit: int) -> int:
        options = self.dna.macro_options.megabyte
        return megabyte_parameter_count(
            self.graph, unit, options.patch_size, *self.layers, self.config.vocab_size, options.global_width_factor,
            options.local_width_factor, self.config.tie_embeddings)

    def training_flops_per_token(self, unit: int) -> int:
        return cost.TRAINING_MULTIPLIER * self._flops(unit, self.sequence_length)

    def sampling_flops_per_token(self, unit: int, stats: dict | None = None) -> int:
        return self._flops(unit, (self.sequence_length + 1) // 2)

    def training_memory_bytes(self, unit: int, batch_tokens: int) -> int:
        options, vocab = self.dna.macro_options.megabyte, self.config.vocab_size
        w = widths(self.config.width_units, unit, options.patch_size, options.global_width_factor,
                              options.local_width_factor)
        global_layers, local_layers = self.layers
        patches = -(-self.sequence_length // options.patch_size)
        return (cost.training_memory_bytes(self.graph, w.global_unit, patches, global_layers, 0,
                                           self.parameter_count(unit), batch_tokens // options.patch_size)
                + cost.training_memory_bytes(self.graph, w.local_unit, options.patch_size, local_layers, vocab, 0,
                                             batch_tokens))

    def _flops(self, unit: int, length: int) -> int:
        options = self.dna.macro_options.megabyte
        return megabyte_flops(self.graph, unit, length, options.patch_size, *self.layers,
                                         self.config.vocab_size, options.global_width_factor,
                                         options.local_width_factor)


def kind_of(dna: DNA) -> str:
    """"token", "calm" or "megabyte": the model a DNA's macro-options ask for."""
    options = dna.macro_options
    return "megabyte" if options.megabyte.enabled else "calm" if options.calm.enabled else "token"


def cost_of(dna: DNA, config: Config) -> ModelCost:
    """The size and cost of the model a DNA asks for under a config, with the configured vocabulary (bytes for
    MEGABYTE) and sequence length (in bytes: sequence_length x patch_size for MEGABYTE)."""
    return COSTS[kind_of(dna)](dna, *model_shape(dna, config))


def model_shape(dna: DNA, config: Config) -> tuple[ModelConfig, int]:
    """The model config (its vocabulary the byte vocabulary for MEGABYTE) and the training row length."""
    options, length = dna.macro_options.megabyte, config.data.sequence_length
    if options.enabled:
        return dataclasses.replace(config.model, vocab_size=BYTE_VOCAB_SIZE), length * options.patch_size
    return config.model, length


COSTS = {"token": ModelCost, "calm": CalmCost, "megabyte": MegabyteCost}
