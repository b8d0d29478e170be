"""How a DNA's macro-options shape its language model: the data it reads, its size, its cost and its construction.

One DNA gives one of three kinds of model, each an `Architecture` subclass that sizes, prices and builds it
(`Architecture.of` picks it); all train and evaluate through the same `training.Trainer`:
    token     `model.LanguageModel`; with Mixture-of-Depths its routed blocks carry routers
    calm      `calm.CalmLanguageModel`: the same stack with early exits (Mixture-of-Depths may route inside it)
    megabyte  `megabyte.MegabyteModel`: byte-level, a global stack over patches and a local one inside them

Data. Token and CALM models read the configured data; a MEGABYTE model reads the same text as bytes
(`data.load_byte_data`): rows of patch_size x sequence_length bytes, so its global stack has as many positions as a
token model has tokens, and the validation set over the same documents, so bits per byte compare across them.

Size. Every kind is sized into `model.param_band` by the same rule: the largest size unit whose exact parameter
count fits (`model_cost.search_unit`). MoD routers count; CALM exits share the output projection (an early-exit
classifier adds d + 1); a MEGABYTE model splits `num_layers` between its stacks (`model_cost.split_depth`).

Cost, per target (a token, or a byte for MEGABYTE), counted as `primer_search.program.cost` counts a block
(the arithmetic in `model_cost`):
    training  3 x forward. A routed block runs on k = capacity_k(capacity, S) of S positions, at sequence length k,
              plus its router and predictor on all of them; a CALM model projects every exit.
    sampling  one forward step of autoregressive generation with a cache, at the mean context of a generated
              sequence, (S + 1) // 2 positions (quadratic ops cost 2 x context x width per token). From what the
              evaluation measured (`stats`): a routed block runs for the routed fraction of tokens over a cache of
              routed tokens only; a CALM token runs its average number of blocks and exit projections, and each
              later block still computes the keys and values of an exited token (`decoding_rules.cache_nodes`);
              MEGABYTE runs its global stack once per patch.
"""

from __future__ import annotations

import dataclasses
import functools

import keras

from primer_search.config import BYTE_VOCAB_SIZE, Config, ModelConfig
from primer_search.lm import model_cost
from primer_search.lm.calm import build_calm_model
from primer_search.lm.data import LanguageData, load_byte_data, load_data
from primer_search.lm.megabyte import build_megabyte_model
from primer_search.lm.model import build_model
from primer_search.program import cost
from primer_search.program.decoding_rules import cache_nodes
from primer_search.program.dna import DNA
from primer_search.program.graph import Graph, lower

KINDS = ("token", "calm", "megabyte")


@dataclasses.dataclass(frozen=True)
class Architecture:
    """The model a DNA asks for under a config, and the data it reads (see the module docstring). Made by `of` or
    `resolve`, as the subclass of the DNA's kind."""

    dna: DNA
    config: ModelConfig           # vocab_size is the data's
    sequence_length: int          # positions per training row (bytes for MEGABYTE)
    kind = "token"

    @staticmethod
    def of(dna: DNA, config: Config) -> "Architecture":
        """The architecture without its data: the configured vocabulary (bytes for MEGABYTE)."""
        options, length = dna.macro_options.megabyte, config.data.sequence_length
        if options.enabled:
            return MegabyteArchitecture(dna, dataclasses.replace(config.model, vocab_size=BYTE_VOCAB_SIZE),
                                        length * options.patch_size)
        return _kind_of(dna)(dna, config.model, length)

    @staticmethod
    def resolve(dna: DNA, config: Config) -> tuple["Architecture", LanguageData]:
        """The architecture and its data (whose vocabulary it takes). Data or config problems raise (they are not
        the program's); the DNA itself is not lowered yet, so a bad program fails later, inside the evaluation."""
        data = load_data(config.data, config.model.vocab_size)
        options = dna.macro_options.megabyte
        if options.enabled:
            data = load_byte_data(config.data, config.model.vocab_size, options.patch_size)
        model_config = dataclasses.replace(config.model, vocab_size=data.vocab_size)
        return _kind_of(dna)(dna, model_config, data.config.sequence_length), data

    @functools.cached_property
    def graph(self) -> Graph:
        return lower(self.dna, self.config.width_units)

    def choose_unit(self) -> int:
        return model_cost.search_unit(self.parameter_count, self.config)

    # -- the kind's size, cost and construction: a token model (with Mixture-of-Depths routers) here -------------

    def parameter_count(self, unit: int) -> int:
        return model_cost.parameter_count(self.graph, self.config, unit)

    def training_flops_per_token(self, unit: int) -> int:
        length = self.sequence_length
        k = model_cost.capacity_k(self.dna.macro_options.mixture_of_depths.capacity, length)
        forward = self._blocks_flops(unit, length, routed_fraction=k / length, routed_length=k)
        d = self.config.width_units * unit
        forward += self._head_flops(unit) + model_cost.exit_head_flops(d, self.config.vocab_size, self._exits())
        return cost.TRAINING_MULTIPLIER * forward

    def sampling_flops_per_token(self, unit: int, stats: dict | None = None) -> int:
        """Forward FLOPs of generating one token (one byte for MEGABYTE) with a cache; `stats` are the evaluation's
        measured `mod_routed_fraction`, `calm_average_layers` and `calm_exit_heads` (see the module docstring)."""
        context = (self.sequence_length + 1) // 2
        fraction, routed_context = self._routing(context, stats or {})
        return self._blocks_flops(unit, context, fraction, routed_context) + self._head_flops(unit)

    def training_memory_bytes(self, unit: int, batch_tokens: int) -> int:
        """Estimated peak memory of a training step (`cost.training_memory_bytes`, per stack for MEGABYTE)."""
        return cost.training_memory_bytes(self.graph, unit, self.sequence_length, self.config.num_layers,
                                          self.config.vocab_size, self.parameter_count(unit), batch_tokens,
                                          output_heads=self._exits())

    def build(self, unit: int, seed: int = 0) -> keras.Model:
        """The built Keras model at this unit (variables created)."""
        return build_model(self.dna, self.config, seed=seed, unit=unit)

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
                        + model_cost.routing_flops(d, options.causal_fix))
        return round(sum(routed_block if is_routed else dense
                         for is_routed in model_cost.routed(self.dna, self.config.num_layers)))

    def _head_flops(self, unit: int) -> int:
        return 2 * self.config.width_units * unit * self.config.vocab_size

    def _exits(self) -> int:
        return 1


class CalmArchitecture(Architecture):
    """A token model with CALM's early exits: the exits' projections and classifier, and fewer blocks per token."""

    kind = "calm"

    def parameter_count(self, unit: int) -> int:
        d = self.config.width_units * unit
        return super().parameter_count(unit) + model_cost.classifier_parameters(d, self.dna.macro_options.calm)

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

    def build(self, unit: int, seed: int = 0) -> keras.Model:
        return build_calm_model(self.dna, self.config, seed=seed, unit=unit)

    def _exits(self) -> int:
        options = self.dna.macro_options.calm
        return len(model_cost.exit_layers(self.config.num_layers, options.first_exit, options.exit_interval))


class MegabyteArchitecture(Architecture):
    """MEGABYTE: a global stack over patches and a local stack over their bytes, both of the DNA's block."""

    kind = "megabyte"

    @property
    def layers(self) -> tuple[int, int]:
        """The (global, local) layer counts."""
        return model_cost.split_depth(self.config.num_layers, self.dna.macro_options.megabyte.depth_split)

    def parameter_count(self, unit: int) -> int:
        options = self.dna.macro_options.megabyte
        return model_cost.megabyte_parameter_count(
            self.graph, unit, options.patch_size, *self.layers, self.config.vocab_size, options.global_width_factor,
            options.local_width_factor, self.config.tie_embeddings)

    def training_flops_per_token(self, unit: int) -> int:
        return cost.TRAINING_MULTIPLIER * self._flops(unit, self.sequence_length)

    def sampling_flops_per_token(self, unit: int, stats: dict | None = None) -> int:
        return self._flops(unit, (self.sequence_length + 1) // 2)

    def training_memory_bytes(self, unit: int, batch_tokens: int) -> int:
        options, vocab = self.dna.macro_options.megabyte, self.config.vocab_size
        w = model_cost.widths(self.config.width_units, unit, options.patch_size, options.global_width_factor,
                              options.local_width_factor)
        global_layers, local_layers = self.layers
        patches = -(-self.sequence_length // options.patch_size)
        return (cost.training_memory_bytes(self.graph, w.global_unit, patches, global_layers, 0,
                                           self.parameter_count(unit), batch_tokens // options.patch_size)
                + cost.training_memory_bytes(self.graph, w.local_unit, options.patch_size, local_layers, vocab, 0,
                                             batch_tokens))

    def build(self, unit: int, seed: int = 0) -> keras.Model:
        c = self.config
        return build_megabyte_model(self.dna, unit, c.num_layers, c.vocab_size, c.width_units, c.tie_embeddings,
                                    seed)

    def _flops(self, unit: int, length: int) -> int:
        options = self.dna.macro_options.megabyte
        return model_cost.megabyte_flops(self.graph, unit, length, options.patch_size, *self.layers,
                                         self.config.vocab_size, options.global_width_factor,
                                         options.local_width_factor)


def _kind_of(dna: DNA) -> type[Architecture]:
    options = dna.macro_options
    return (MegabyteArchitecture if options.megabyte.enabled else CalmArchitecture if options.calm.enabled
            else Architecture)
