"""How a DNA's macro-options shape its language model: the data it reads, its size, its cost and its construction.

One DNA gives one of three models, all trained and evaluated through the same `training.Trainer`:
    token     `model.LanguageModel`; with Mixture-of-Depths its routed blocks carry routers
    calm      `calm.CalmLanguageModel`: the same stack with early exits (Mixture-of-Depths may route inside it)
    megabyte  `megabyte.MegabyteModel`: byte-level, a global stack over patches and a local one inside them

Data. Token and CALM models read the configured data; a MEGABYTE model reads the same text as bytes
(`data.load_byte_data`): rows of patch_size x sequence_length bytes, so its global stack has as many positions as a
token model has tokens, and the validation set over the same documents, so bits per byte compare across them.

Size. Every kind is sized into `model.param_band` by the same rule: the largest size unit whose exact parameter
count fits (`model.search_unit`). MoD routers count; CALM exits share the output projection (an early-exit
classifier adds d + 1); a MEGABYTE model splits `num_layers` between its stacks (`megabyte.split_depth`).

Cost, per target (a token, or a byte for MEGABYTE), counted as `primer_search.program.cost` counts a plain model:
    training  3 x forward. A routed block runs on k = capacity_k(capacity, S) of S positions, at sequence length k,
              plus its router and predictor on all of them; a CALM model projects every exit.
    sampling  one forward step of autoregressive generation with a cache, at the mean context of a generated
              sequence, (S + 1) // 2 positions (quadratic ops cost 2 x context x width per token). From what the
              evaluation measured (`stats`): a routed block runs for the routed fraction of tokens over a cache of
              routed tokens only; a CALM token runs its average number of blocks and exit projections, and each
              later block still computes the keys and values of an exited token (`decoding_rules.cache_nodes`); MEGABYTE
              runs its global stack once per patch.
"""

from __future__ import annotations

import dataclasses
import functools

import keras

from primer_search.lm import calm, megabyte, mod

from primer_search.config import BYTE_VOCAB_SIZE, Config, ModelConfig
from primer_search.lm.data import LanguageData, load_byte_data, load_data
from primer_search.lm.model import build_model, parameter_count, routed, search_unit
from primer_search.program import cost
from primer_search.program.decoding_rules import cache_nodes
from primer_search.program.dna import DNA
from primer_search.program.graph import Graph, lower

KINDS = ("token", "calm", "megabyte")


@dataclasses.dataclass(frozen=True)
class Architecture:
    """The model a DNA asks for under a config, and the data it reads (see the module docstring)."""

    dna: DNA
    config: ModelConfig           # vocab_size is the data's
    sequence_length: int          # positions per training row (bytes for MEGABYTE)

    @classmethod
    def of(cls, dna: DNA, config: Config) -> "Architecture":
        """The architecture without its data: the configured vocabulary (bytes for MEGABYTE)."""
        options, length = dna.macro_options.megabyte, config.data.sequence_length
        if options.enabled:
            return cls(dna, dataclasses.replace(config.model, vocab_size=BYTE_VOCAB_SIZE),
                       length * options.patch_size)
        return cls(dna, config.model, length)

    @classmethod
    def resolve(cls, dna: DNA, config: Config) -> tuple["Architecture", LanguageData]:
        """The architecture and its data (whose vocabulary it takes). Data or config problems raise (they are not
        the program's); the DNA itself is not lowered yet, so a bad program fails later, inside the evaluation."""
        data = load_data(config.data, config.model.vocab_size)
        options = dna.macro_options.megabyte
        if options.enabled:
            data = load_byte_data(config.data, config.model.vocab_size, options.patch_size)
        model_config = dataclasses.replace(config.model, vocab_size=data.vocab_size)
        return cls(dna, model_config, data.config.sequence_length), data

    @property
    def kind(self) -> str:
        options = self.dna.macro_options
        return "megabyte" if options.megabyte.enabled else "calm" if options.calm.enabled else "token"

    @functools.cached_property
    def graph(self) -> Graph:
        return lower(self.dna, self.config.width_units)

    @property
    def layers(self) -> tuple[int, int]:
        """MEGABYTE's (global, local) layer counts."""
        return megabyte.split_depth(self.config.num_layers, self.dna.macro_options.megabyte.depth_split)

    # -- size ----------------------------------------------------------------------------------------------------

    def parameter_count(self, unit: int) -> int:
        if self.kind != "megabyte":
            d = self.config.width_units * unit
            return (parameter_count(self.graph, self.config, unit)
                    + calm.classifier_parameters(d, self.dna.macro_options.calm))
        options = self.dna.macro_options.megabyte
        return megabyte.parameter_count(self.graph, unit, options.patch_size, *self.layers, self.config.vocab_size,
                                        options.global_width_factor, options.local_width_factor,
                                        self.config.tie_embeddings)

    def choose_unit(self) -> int:
        return search_unit(self.parameter_count, self.config)

    # -- cost ----------------------------------------------------------------------------------------------------

    def training_flops_per_token(self, unit: int) -> int:
        length, vocab = self.sequence_length, self.config.vocab_size
        if self.kind == "megabyte":
            options = self.dna.macro_options.megabyte
            return megabyte.training_flops_per_token(self.graph, unit, length, options.patch_size, *self.layers,
                                                     vocab, options.global_width_factor, options.local_width_factor)
        k = mod.capacity_k(self.dna.macro_options.mixture_of_depths.capacity, length)
        forward = self._blocks_flops(unit, length, routed_fraction=k / length, routed_length=k)
        d = self.config.width_units * unit
        forward += self._head_flops(unit) + calm.exit_head_flops(d, self.config.vocab_size, self._exits())
        return cost.TRAINING_MULTIPLIER * forward

    def sampling_flops_per_token(self, unit: int, stats: dict | None = None) -> int:
        """Forward FLOPs of generating one token (one byte for MEGABYTE) with a cache; `stats` are the evaluation's
        measured `mod_routed_fraction`, `calm_average_layers` and `calm_exit_heads` (see the module docstring)."""
        stats = stats or {}
        context = (self.sequence_length + 1) // 2
        if self.kind == "megabyte":
            options = self.dna.macro_options.megabyte
            return megabyte.model_flops(self.graph, unit, context, options.patch_size, *self.layers,
                                        self.config.vocab_size, options.global_width_factor,
                                        options.local_width_factor)
        fraction = stats.get("mod_routed_fraction", self.dna.macro_options.mixture_of_depths.capacity)
        routed_context = max(1, round(fraction * context))
        if self.kind == "token":
            return (self._blocks_flops(unit, context, fraction, routed_context)
                    + self._head_flops(unit))
        layers = stats.get("calm_average_layers", self.config.num_layers)
        heads = stats.get("calm_exit_heads", 1.0)
        per_block = self._blocks_flops(unit, context, fraction, routed_context) / self.config.num_layers
        cache_only = cost.nodes_flops(self.graph, cache_nodes(self.graph), unit, context)
        skipped = self.config.num_layers - layers
        return round(layers * per_block + skipped * cache_only + heads * self._head_flops(unit))

    def _blocks_flops(self, unit: int, length: int, routed_fraction: float, routed_length: int) -> int:
        """Forward FLOPs per token of the stack of blocks (MoD routers included), rounded to an integer."""
        d = self.config.width_units * unit
        dense = cost.block_flops(self.graph, unit, length)
        options = self.dna.macro_options.mixture_of_depths
        routed_block = (routed_fraction * cost.block_flops(self.graph, unit, routed_length)
                        + mod.routing_flops(d, options.causal_fix))
        return round(sum(routed_block if is_routed else dense
                         for is_routed in routed(self.dna, self.config.num_layers)))

    def _head_flops(self, unit: int) -> int:
        return 2 * self.config.width_units * unit * self.config.vocab_size

    def _exits(self) -> int:
        options = self.dna.macro_options.calm
        if self.kind != "calm":
            return 1
        return len(calm.exit_layers(self.config.num_layers, options.first_exit, options.exit_interval))

    def training_memory_bytes(self, unit: int, batch_tokens: int) -> int:
        """Estimated peak memory of a training step (`cost.training_memory_bytes`, per stack for MEGABYTE)."""
        params, length, vocab = self.parameter_count(unit), self.sequence_length, self.config.vocab_size
        if self.kind != "megabyte":
            return cost.training_memory_bytes(self.graph, unit, length, self.config.num_layers, vocab, params,
                                              batch_tokens, output_heads=self._exits())
        options = self.dna.macro_options.megabyte
        w = megabyte.widths(self.config.width_units, unit, options.patch_size, options.global_width_factor,
                            options.local_width_factor)
        global_layers, local_layers = self.layers
        patches = -(-length // options.patch_size)
        return (cost.training_memory_bytes(self.graph, w.global_unit, patches, global_layers, 0, params,
                                           batch_tokens // options.patch_size)
                + cost.training_memory_bytes(self.graph, w.local_unit, options.patch_size, local_layers, vocab, 0,
                                             batch_tokens))

    # -- construction --------------------------------------------------------------------------------------------

    def build(self, unit: int, seed: int = 0) -> keras.Model:
        """The built Keras model at this unit (variables created)."""
        c = self.config
        if self.kind == "megabyte":
            return megabyte.build_megabyte_model(self.dna, unit, c.num_layers, c.vocab_size, c.width_units,
                                                 c.tie_embeddings, seed)
        if self.kind == "calm":
            return calm.build_calm_model(self.dna, c, seed=seed, unit=unit)
        return build_model(self.dna, c, seed=seed, unit=unit)
