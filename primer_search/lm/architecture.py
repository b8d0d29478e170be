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

import keras

from primer_search.config import Config
from primer_search.lm import model_cost
from primer_search.lm.calm import build_calm_model
from primer_search.lm.data import LanguageData, load_byte_data, load_data
from primer_search.lm.megabyte import build_megabyte_model
from primer_search.lm.model import build_model
from primer_search.lm.model_cost import CalmCost, MegabyteCost, ModelCost
from primer_search.program.dna import DNA

KINDS = tuple(model_cost.COSTS)


class Architecture(ModelCost):
    """The model a DNA asks for under a config (its size and cost: `ModelCost`), the data it reads and its
    construction. Made by `of` or `resolve`, as the class of the DNA's kind."""

    @staticmethod
    def of(dna: DNA, config: Config) -> "Architecture":
        """The architecture without its data: the configured vocabulary (bytes for MEGABYTE)."""
        return BUILDS[model_cost.kind_of(dna)](dna, *model_cost.model_shape(dna, config))

    @staticmethod
    def resolve(dna: DNA, config: Config) -> tuple["Architecture", LanguageData]:
        """The architecture and its data (whose vocabulary it takes). Data or config problems raise (they are not
        the program's); the DNA itself is not lowered yet, so a bad program fails later, inside the evaluation."""
        data = load_data(config.data, config.model.vocab_size)
        options = dna.macro_options.megabyte
        if options.enabled:
            data = load_byte_data(config.data, config.model.vocab_size, options.patch_size)
        model_config = dataclasses.replace(config.model, vocab_size=data.vocab_size)
        return BUILDS[model_cost.kind_of(dna)](dna, model_config, data.config.sequence_length), data

    def build(self, unit: int, seed: int = 0) -> keras.Model:
        """The built Keras model at this unit (variables created)."""
        return build_model(self.dna, self.config, seed=seed, unit=unit)


class CalmArchitecture(CalmCost, Architecture):
    def build(self, unit: int, seed: int = 0) -> keras.Model:
        return build_calm_model(self.dna, self.config, seed=seed, unit=unit)


class MegabyteArchitecture(MegabyteCost, Architecture):
    def build(self, unit: int, seed: int = 0) -> keras.Model:
        c = self.config
        return build_megabyte_model(self.dna, unit, c.num_layers, c.vocab_size, c.width_units, c.tie_embeddings,
                                    seed)


BUILDS = {"token": Architecture, "calm": CalmArchitecture, "megabyte": MegabyteArchitecture}
