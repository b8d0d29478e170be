"""Shared fixtures: quiet TensorFlow, seeded generators, small compiled blocks."""

import os
import random

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import keras  # noqa: E402
import numpy as np  # noqa: E402
import pytest  # noqa: E402


@pytest.fixture
def rng():
    return random.Random(1234)


@pytest.fixture
def np_rng():
    return np.random.default_rng(1234)


@pytest.fixture(autouse=True)
def _keras_seed():
    keras.utils.set_random_seed(0)


FAST = {
    "model": {"vocab_size": 258, "num_layers": 1, "param_band": [20_000, 60_000]},
    "data": {"source": "pydoc", "tokenizer": "bytes", "sequence_length": 16, "batch_tokens": 128,
             "validation_tokens": 512},
    "training": {"budget_kind": "steps", "budget": 4, "warmup_steps": 2, "jit_compile": False},
}


@pytest.fixture
def fast_config():
    """A config that trains a ~50K-parameter byte-level model on pydoc text in well under a second per step."""
    from primer_search.config import config_from_dict

    return config_from_dict(FAST)


@pytest.fixture(scope="session")
def ray_session():
    """One local Ray instance for the whole test session (starting one takes seconds): 2 CPUs, no dashboard.

    `address="local"` starts a new instance even where RAY_ADDRESS names a cluster; executors reuse it.
    """
    import ray

    os.environ.setdefault("RAY_TRAIN_HEALTH_CHECK_INTERVAL_S", "0.2")   # Ray Train jobs notice reports sooner
    ray.init(address="local", num_cpus=2, include_dashboard=False, log_to_driver=False)
    yield ray
    ray.shutdown()
