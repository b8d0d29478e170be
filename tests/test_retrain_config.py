import pytest

from primer_search.config import config_from_dict
from primer_search.retrain.config import RetrainConfig, curve_fractions, job_config, load_retrain_config

BASE = {"model": {"vocab_size": 258, "num_layers": 1}, "data": {"tokenizer": "bytes", "batch_tokens": 1024,
                                                                 "sequence_length": 32}}


def _config(**retrain) -> RetrainConfig:
    return config_from_dict({**BASE, "retrain": retrain}, cls=RetrainConfig)


def test_token_budgets_become_steps_with_a_point_every_curve_fraction():
    config = _config(sizes=[[1000, 2000], [3000, 5000]], budgets=[10_000, 20_480], curve_points=4, seeds=2)
    small, large = job_config(config, 0, 0), job_config(config, 1, 1)
    assert small.model.param_band == (1000, 2000) and large.model.param_band == (3000, 5000)
    assert (small.training.budget_kind, small.training.budget) == ("steps", 10.0)    # ceil(10000 / 1024)
    assert large.training.budget == 20.0
    assert small.training.checkpoints == curve_fractions(4) == (0.25, 0.5, 0.75)
    assert (small.training.seed, large.training.seed) == (0, 1)


def test_one_budget_serves_every_size_and_flops_budgets_stay_flops():
    config = _config(units=[2, 4, 8], budget_kind="flops", budgets=[1e12])
    assert [job_config(config, size, 0).training.budget for size in range(3)] == [1e12] * 3
    assert job_config(config, 2, 0).training.budget_kind == "flops"


def test_compute_optimal_budget_is_tokens_per_parameter_of_the_baseline():
    config = _config(units=[2], budget_kind="compute_optimal", tokens_per_parameter=20)
    assert job_config(config, 0, 0, baseline_parameters=10_240).training.budget == 200.0   # 204800 tokens / 1024
    with pytest.raises(ValueError, match="baseline's parameter count"):
        job_config(config, 0, 0)


@pytest.mark.parametrize("retrain, message", [
    ({"budgets": [1]}, "sizes: found 0 parameter bands and 0 units, expected one of the two lists"),
    ({"units": [2], "sizes": [[1, 2]], "budgets": [1]}, "expected one of the two lists"),
    ({"units": [2, 4], "budgets": [1, 2, 3]}, r"budgets: found \[1.0, 2.0, 3.0\], expected 1 or 2 positive"),
    ({"units": [2], "budgets": [1], "budget_kind": "compute_optimal"}, "expected none"),
    ({"sizes": [[5, 2]], "budgets": [1]}, r"sizes\[0\]: found \[5, 2\]"),
    ({"units": [2], "budgets": [1], "baselines": []}, "baselines: found none"),
    ({"units": [2], "budgets": [1], "workers": 0}, r"retrain.workers: found 0, expected a value in \[1, inf\)"),
])
def test_bad_retrain_sections_name_the_key(retrain, message):
    with pytest.raises(ValueError, match=message):
        _config(**retrain)


def test_the_shipped_retrain_configs_load():
    for name in ("retrain_tiny", "retrain_lm1b"):
        config = load_retrain_config(f"search_configs/{name}.yaml")
        assert config.retrain.size_count >= 3 and config.retrain.seeds >= 2
