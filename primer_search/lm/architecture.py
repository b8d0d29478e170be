"""How a DNA's macro-options shape its language model: the data it reads, its size, its cost and its construction.

One DNA gives one of three kinds of model, each an `Architecture` subclass that sizes, prices and builds it
(`Architecture.of` picks it); all train and evaluate through the same `training.Trainer`:
    token     `model.LanguageModel`; with Mixture-of-Depths its routed blocks carry routers
    calm      `calm.CalmLanguageModel`: the same stack with early exits (Mixture-of-Depths may route inside it)
    megabyte  `megabyte.MegabyteModel`: byte-level, a global stack over patches and a local one inside them

Data. Token and CALM models read the configured data; a MEGABYTE model reads the same text as bytes
(`data.load_byte_data`): rows of patch_size x sequence_length bytes, so its global stack has as many positions as a
token model has tokens, and the validation set over the same documents, so bits per byte compare across them.

Size and cost: `model_cost.ModelCost`.
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
