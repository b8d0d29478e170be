import pathlib

import pytest

from primer_search.config import Config, apply_overrides, config_from_dict, load_config
from primer_search.program.search_space import OP_FAMILY_NAMES


def test_every_shipped_config_loads():
    loaded = {path.stem: load_config(path) for path in pathlib.Path("search_configs").glob("*.yaml")
              if not path.stem.startswith("retrain_")}          # retrain configs: tests/test_retrain_config.py
    assert {"tiny", "tiny_macro", "lm1b_primer", "cluster_example"} <= set(loaded)
    tiny, paper = loaded["tiny"], loaded["lm1b_primer"]
    macro = loaded["tiny_macro"].search
    assert macro.metric == "bits_per_byte" and macro.mutation_weights.macro > 0 and macro.objective == "inference"
    assert tiny.data.source == "pydoc" and tiny.training.budget_kind == "flops"
    assert paper.data.source == "lm1b" and paper.data.train_split == "train[:98%]"
    assert paper.data.batch_tokens == 4096 and paper.data.sequence_length == 64
    assert paper.training.warmup_steps == 10_000 and paper.training.peak_learning_rate == 0.01


def test_defaults_and_overrides():
    config = load_config(None, ["training.budget=12", "data.train_files=[a.txt, b.txt]", "data.source=text_files",
                                "training.checkpoints=[0.25, 0.5]", "training.timeout_seconds="])
    assert config.training.budget == 12.0 and config.data.train_files == ("a.txt", "b.txt")
    assert config.training.checkpoints == (0.25, 0.5) and config.training.timeout_seconds is None
    assert config.model == Config().model
    assert config.data.batch_size == 4096 // 64


def test_overrides_do_not_touch_the_input():
    data = {"training": {"budget": 5}}
    assert apply_overrides(data, ["training.budget=6"])["training"]["budget"] == 6
    assert data == {"training": {"budget": 5}}


def test_yaml_exponent_without_dot_is_a_number():
    assert config_from_dict({"training": {"budget_kind": "flops", "budget": "1e12"}}).training.budget == 1e12


def test_replace_returns_a_checked_copy():
    config = Config().replace(training={"budget": 3})
    assert config.training.budget == 3.0
    with pytest.raises(ValueError, match="training.budget: found -1"):
        config.replace(training={"budget": -1})


@pytest.mark.parametrize("data, message", [
    ({"model": {"num_layer": 2}}, "model: unknown key 'num_layer', allowed keys: vocab_size, num_layers"),
    ({"searches": {}}, "config: unknown key .searches., allowed keys: model, data, training, search"),
    ({"training": {"budget_kind": "minutes"}},
     r"training.budget_kind: found 'minutes', expected one of \['seconds', 'steps', 'flops'\]"),
    ({"training": {"budget": 0}}, r"training.budget: found 0.0, expected a value in \(0.0, inf\)"),
    ({"training": {"budget": float("nan")}}, "training.budget: found nan, expected a finite number"),
    ({"training": {"peak_learning_rate": float("inf")}},
     "training.peak_learning_rate: found inf, expected a finite number"),
    ({"training": {"timeout_seconds": float("-inf")}}, "training.timeout_seconds: found -inf, expected a finite number"),
    ({"search": {"priors": {"op_families": {"dconv": float("nan")}}}},
     "search.priors.op_families.dconv: found nan, expected a finite number"),
    ({"training": {"jit_compile": "yes"}}, "training.jit_compile: found 'yes', expected true or false"),
    ({"training": {"checkpoints": [0.5, 0.25]}}, r"training.checkpoints: found \[0.5, 0.25\], expected increasing"),
    ({"training": {"checkpoints": [1.0]}}, r"expected increasing budget fractions in \(0, 1\)"),
    ({"model": {"num_layers": 2.5}}, "model.num_layers: found 2.5, expected an integer"),
    ({"model": {"param_band": [5, 1]}}, r"model.param_band: found \[5, 1\], expected \[low, high\]"),
    ({"model": {"param_band": [5]}}, r"model.param_band: found \[5\], expected a list of 2 values"),
    ({"data": {"train_files": "a.txt"}}, "data.train_files: found 'a.txt', expected a list of strings"),
    ({"data": {"batch_tokens": 100}}, "data.batch_tokens: found 100, expected a multiple of sequence_length"),
    ({"data": {"source": "text_files"}}, "data.train_files: found none, expected at least one glob pattern"),
    ({"data": {"tokenizer": "bytes"}}, "model.vocab_size: found 8192, expected 258 with data.tokenizer: bytes"),
    ({"data": []}, r"data: found \[\], expected a mapping"),
    ({"search": {"priors": {"op_families": {"attention": 1}}}},
     "search.priors.op_families: unknown key 'attention', allowed keys: arithmetic, math, nonlinearity"),
    ({"search": {"priors": {"op_families": {"dconv": -1}}}},
     r"search.priors.op_families.dconv: found -1.0, expected a value in \[0.0, inf\)"),
    ({"search": {"priors": {"op_families": dict.fromkeys(OP_FAMILY_NAMES, 0)}}},
     "search.priors.op_families: found all weights zero, expected at least one positive weight"),
    ({"search": {"priors": {"preset": "paper"}}},
     r"search.priors.preset: found 'paper', expected one of \['default', 'uniform'\]"),
    ({"search": {"priors": {"insert_placement": "dead"}}},
     r"search.priors.insert_placement: found 'dead', expected one of \['live', 'anywhere'\]"),
    ({"search": {"priors": {"call_probability": 1.5}}},
     r"search.priors.call_probability: found 1.5, expected a value in \[0.0, 1.0\]"),
])
def test_bad_configs_name_the_key(data, message):
    with pytest.raises(ValueError, match=message):
        config_from_dict(data)


def test_priors_preset_fills_the_keys_left_unset():
    default = Config().search.priors
    assert (default.preset, default.insert_placement, default.op_families.dconv) == ("default", "live", 2.0)
    uniform = load_config(None, ["search.priors={preset: uniform, op_families: {reduction: 0}}"]).search.priors
    assert uniform.insert_placement == "anywhere" and uniform.call_probability == 0.2
    assert uniform.op_families.reduction == 0.0 and uniform.op_families.dconv == 1.0   # unset: the preset's
    config = config_from_dict({"search": {"priors": {"preset": "uniform", "branch_probability": 0}}})
    assert config_from_dict(config.to_dict()) == config and config.search.priors.branch_probability == 0.0


@pytest.mark.parametrize("item", ["training.budget", "budget=3", "a.b.c=1", ".x=1"])
def test_bad_override_syntax(item):
    with pytest.raises(ValueError, match="expected section.key=value"):
        apply_overrides({}, [item])


def test_file_errors_name_the_file(tmp_path):
    path = tmp_path / "c.yaml"
    path.write_text("- just\n- a list\n")
    with pytest.raises(ValueError, match="c.yaml: found list, expected a mapping of sections"):
        load_config(path)
    path.write_text("model: {vocab_size: 8192\n")
    with pytest.raises(ValueError, match="c.yaml: not valid YAML"):
        load_config(path)
    path.write_text("training:\n  seed: !!python/object/apply:os.system [echo]\n")
    with pytest.raises(ValueError, match="c.yaml: not valid YAML"):
        load_config(path)
