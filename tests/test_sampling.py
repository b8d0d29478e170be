import numpy as np
import pytest
import tensorflow as tf

from primer_search.lm.architecture import Architecture
from primer_search.lm.calm import CalmLanguageModel
from primer_search.lm.sampling import Sampler, sampling_speed
from primer_search.program.macro_options import MacroOptions
from primer_search.program.seeds import load_seed

OPTIONS = {
    "token": {},
    "mod": {"mixture_of_depths": {"enabled": True, "route_pattern": "all", "capacity": 0.5}},
    "calm": {"calm": {"enabled": True, "threshold": 0.2, "confidence": "softmax_max"}},
    "calm_classifier": {"calm": {"enabled": True, "threshold": 0.5, "confidence": "classifier"}},
    "mod_calm": {"mixture_of_depths": {"enabled": True}, "calm": {"enabled": True, "threshold": 0.2,
                                                                  "confidence": "softmax_max"}},
    "megabyte": {"megabyte": {"enabled": True, "patch_size": 4}},
    "megabyte_p2": {"megabyte": {"enabled": True, "patch_size": 2, "depth_split": "2:1"}},
}


def _model(name, fast_config, seed="transformer"):
    dna = load_seed(seed).replace(macro_options=MacroOptions.from_dict(OPTIONS[name]))
    config = fast_config.replace(model={"num_layers": 3, "param_band": [20_000, 120_000]})
    arch, _ = Architecture.resolve(dna, config)
    return arch.build(arch.choose_unit(), seed=3)


def _reference_logits(model, tokens):
    inputs = tf.constant([tokens])
    if isinstance(model, CalmLanguageModel):
        return model.early_exit_logits(inputs)[0][0].numpy()
    return model(inputs, training=False)[0].numpy()


@pytest.mark.parametrize("seed", ["transformer", "primer"])
@pytest.mark.parametrize("name", list(OPTIONS))
def test_cached_logits_equal_the_evaluation_logits(name, seed, fast_config):
    model = _model(name, fast_config, seed)
    tokens = list(np.random.default_rng(0).integers(2, 258, size=11))
    run = Sampler(model).generate(tokens, 1, temperature=0)
    np.testing.assert_allclose(np.stack(run.logits), _reference_logits(model, tokens), rtol=1e-4, atol=1e-4)


def test_mod_skips_unrouted_blocks(fast_config):
    model = _model("mod", fast_config)
    run = Sampler(model).generate([1], 40, np.random.default_rng(0))
    inputs = tf.constant([run.tokens[:40]])                       # the 40 positions that were decoded
    routed = model.validation_sums(inputs, tf.ones_like(inputs))["routed"] * 3     # (token, block) pairs routed
    assert 0 < run.blocks_run < 3 * 40 and run.blocks_run == round(float(routed))


def test_calm_reports_the_blocks_each_token_used(fast_config):
    model = _model("calm", fast_config)
    run = Sampler(model).generate([1], 30, np.random.default_rng(0))
    assert len(run.layers_run) == 30 and all(1 <= n <= 3 for n in run.layers_run)
    assert run.blocks_run == sum(run.layers_run)


def test_generation_is_seeded_and_counts_tokens(fast_config):
    model = _model("token", fast_config)
    sampler = Sampler(model)
    first = sampler.generate([1, 5], 20, np.random.default_rng(7))
    assert first.tokens == sampler.generate([1, 5], 20, np.random.default_rng(7)).tokens
    assert len(first.tokens) == 22 and first.tokens[:2] == [1, 5] and first.generated == 20
    assert first.tokens_per_second > 0 and sampling_speed(model, 8) > 0
    with pytest.raises(ValueError, match="pass a seeded numpy Generator"):
        sampler.generate([1], 3)
    with pytest.raises(ValueError, match=r"exceeds max_length 10"):
        Sampler(model, max_length=10).generate([1], 10, np.random.default_rng(0))


@pytest.mark.parametrize("name", ["token", "mod", "calm", "megabyte"])
def test_each_step_function_traces_once_over_generations(name, fast_config):
    sampler = Sampler(_model(name, fast_config), max_length=40)
    for seed in range(3):
        sampler.generate([1, 2, 3], 30, np.random.default_rng(seed))
    functions = [f for f in vars(sampler.steps).values() if isinstance(f, tf.types.experimental.PolymorphicFunction)]
    for stack in sampler.steps.stacks:
        functions += [f for f in (*stack.decide, *stack.routed_steps) if f is not None]
        functions += [d.traced_step for d in stack.decoders]
    counts = [f.experimental_get_tracing_count() for f in functions]
    assert len(functions) >= 3 and max(counts) == 1, counts


def test_many_blocks_and_samplers_log_no_retracing_warning(fast_config, caplog):
    dna = load_seed("transformer").replace(macro_options=MacroOptions.from_dict(OPTIONS["mod"]))
    arch, _ = Architecture.resolve(dna, fast_config.replace(model={"num_layers": 12, "param_band": [20_000, 400_000]}))
    model = arch.build(arch.choose_unit(), seed=3)
    for seed in range(6):                                   # a fresh sampler each time, as a threshold sweep does
        Sampler(model, max_length=16).generate([1, 2], 6, np.random.default_rng(seed))
    assert not [r for r in caplog.records if "retracing" in r.getMessage()]
