import dataclasses

import numpy as np
import pytest
import tensorflow as tf

from primer_search.lm.architecture import Architecture
from primer_search.lm.calm import CalmLanguageModel
from primer_search.lm.fitness import evaluate, score
from primer_search.lm.megabyte import MegabyteModel
from primer_search.lm.mod import MixtureOfDepths
from primer_search.program import cost
from primer_search.program.decoding_rules import cache_nodes
from primer_search.program.graph import lower
from primer_search.program.macro_options import MacroOptions
from primer_search.program.seeds import load_seed

OPTIONS = {
    "token": {},
    "mod": {"mixture_of_depths": {"enabled": True, "route_pattern": "all"}},
    "mod_aux_bce": {"mixture_of_depths": {"enabled": True, "causal_fix": "aux_bce"}},
    "calm": {"calm": {"enabled": True, "threshold": 0.5}},
    "calm_classifier": {"calm": {"enabled": True, "threshold": 0.5, "confidence": "classifier"}},
    "mod_calm": {"mixture_of_depths": {"enabled": True}, "calm": {"enabled": True}},
    "megabyte": {"megabyte": {"enabled": True, "patch_size": 4}},
}


def _dna(name, seed="transformer"):
    return load_seed(seed).replace(macro_options=MacroOptions.from_dict(OPTIONS[name]))


@pytest.fixture
def config(fast_config):
    return fast_config.replace(model={"num_layers": 2, "param_band": [20_000, 120_000]})


@pytest.mark.parametrize("name", list(OPTIONS))
def test_parameter_count_is_exact_and_in_the_band(config, name):
    arch, _ = Architecture.resolve(_dna(name), config)
    unit = arch.choose_unit()
    model = arch.build(unit)
    assert arch.parameter_count(unit) == model.count_params()
    low, high = config.model.param_band
    assert low <= model.count_params() <= high < arch.parameter_count(unit + 1)
    expected = {"mod": MixtureOfDepths, "calm": CalmLanguageModel, "megabyte": MegabyteModel}
    for key, cls in expected.items():
        if key in name:
            assert isinstance(model, cls) or any(isinstance(b, cls) for b in getattr(model, "blocks", []))


def test_megabyte_reads_the_same_text_as_bytes(fast_config):
    config = fast_config.replace(data={"tokenizer": "sentencepiece", "sequence_length": 16, "batch_tokens": 256},
                                 model={"vocab_size": 512})
    token_arch, tokens = Architecture.resolve(_dna("token"), config)
    byte_arch, data = Architecture.resolve(_dna("megabyte"), config)
    assert (token_arch.kind, byte_arch.kind) == ("token", "megabyte")
    assert data.vocab_size == byte_arch.config.vocab_size == 258 and tokens.vocab_size == 512
    assert byte_arch.sequence_length == data.config.sequence_length == 64 and data.config.batch_size == 16
    assert data.validation.num_documents == tokens.validation.num_documents
    assert data.validation.num_bytes == tokens.validation.num_bytes       # bits per byte over the same text
    assert data.validation.num_targets == data.validation.num_bytes       # one byte, one target


def test_training_flops_follow_the_options(config):
    plain, _ = Architecture.resolve(_dna("token"), config)
    unit = plain.choose_unit()
    graph = lower(plain.dna)
    assert plain.training_flops_per_token(unit) == cost.training_flops_per_token(
        graph, unit, 16, 2, config.model.vocab_size)
    routed, _ = Architecture.resolve(_dna("mod"), config)
    assert routed.training_flops_per_token(unit) < plain.training_flops_per_token(unit)
    exits, _ = Architecture.resolve(_dna("calm"), config)
    head = 2 * 8 * unit * config.model.vocab_size
    assert exits.training_flops_per_token(unit) == plain.training_flops_per_token(unit) + 3 * head


def test_sampling_flops_use_the_measured_statistics(config):
    plain, _ = Architecture.resolve(_dna("token"), config)
    unit = plain.choose_unit()
    full = plain.sampling_flops_per_token(unit)
    assert full == 2 * cost.block_flops(plain.graph, unit, 8) + 2 * 8 * unit * config.model.vocab_size
    routed, _ = Architecture.resolve(_dna("mod"), config)
    assert (routed.sampling_flops_per_token(unit, {"mod_routed_fraction": 0.1})
            < routed.sampling_flops_per_token(unit, {"mod_routed_fraction": 0.9}) < full)
    exits, _ = Architecture.resolve(_dna("calm"), config)
    assert exits.sampling_flops_per_token(unit, {"calm_average_layers": 2.0, "calm_exit_heads": 1.0}) == full
    early = exits.sampling_flops_per_token(unit, {"calm_average_layers": 1.0, "calm_exit_heads": 1.0})
    assert early < full and early > full - cost.block_flops(plain.graph, unit, 8)   # the skipped block's cache


def test_cache_nodes_of_attention_are_the_key_and_value_paths():
    graph = lower(load_seed("transformer"))
    needed = {graph.nodes[i].op for i in cache_nodes(graph)}
    assert needed >= {"INPUT", "CONV_1X1"}
    assert "SOFTMAX" not in needed                                          # the queries' scores
    assert not any(graph.nodes[i].path.startswith("S0.5") for i in cache_nodes(graph))   # the feed-forward
    assert len(cache_nodes(graph)) < len(graph.nodes) / 2


def test_score_weights_the_inference_cost(config):
    metrics = {"validation_loss": 3.0, "bits_per_byte": 1.2, "sampling_flops_per_token": 4e6}
    assert score(metrics, config.search) == 3.0
    search = dataclasses.replace(config.search, metric="bits_per_byte", objective="inference", inference_weight=0.1)
    assert score(metrics, search) == pytest.approx(1.2 + 0.1 * 2)


@pytest.mark.parametrize("name", ["mod", "mod_aux_bce", "calm", "calm_classifier", "mod_calm", "megabyte"])
def test_each_option_evaluates_end_to_end(config, name):
    result = evaluate(_dna(name), config.replace(training={"sampling_tokens": 6}))
    assert result.status == "ok", result.error
    assert np.isfinite(result.validation_loss) and result.sampling_flops_per_token > 0
    assert result.sampling_tokens_per_second > 0
    assert result.architecture == ("megabyte" if name == "megabyte" else "calm" if "calm" in name else "token")
    if "mod" in name:
        assert 0.0 <= result.mod_routed_fraction <= 1.0
    if "calm" in name:
        assert 1.0 <= result.calm_average_layers <= 2.0 and 1.0 <= result.calm_exit_heads <= 2.0
    if name == "megabyte":
        assert result.bits_per_byte == pytest.approx(result.validation_loss / np.log(2))


def test_mod_training_trains_the_predictor(config):
    arch, data = Architecture.resolve(_dna("mod"), config)
    model = arch.build(arch.choose_unit())
    from primer_search.lm.training import Trainer

    trainer = Trainer(model, data, config.training, 1)
    predictor = model.blocks[0].predictor.kernel
    before = np.array(predictor)
    trainer.train(seed=0)
    assert not np.allclose(before, np.array(predictor))
    inputs = tf.constant(data.validation.inputs[:2])
    loss = model.training_loss(inputs, inputs)
    assert len(model.losses) == 2                                            # one predictor loss per routed block
    assert float(loss) > float(tf.add_n(model.losses))
