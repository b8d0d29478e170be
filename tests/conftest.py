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


# -- run stores (tests/test_store.py, tests/test_run_database.py) ----------------------------------------------------

STORE_CONFIG = {"search": {"population_size": 4, "seed": 0}, "training": {"budget": 4}}
EMPTY_DNA = {"format_version": 1, "name": "tiny", "subprograms": [{"name": "main", "instructions": []}]}


def metrics(status="ok", fitness=None, **extra):
    """A FitnessResult dict as a store records it."""
    return {"status": status, "fitness": fitness, "validation_loss": fitness, "checkpoints": [], **extra}


@pytest.fixture
def store(tmp_path):
    """A new run store, locked for writing."""
    from primer_search.search.store import RunStore

    with RunStore.create(tmp_path / "run", STORE_CONFIG) as store:
        yield store


def propose(store, n, parent_id=None, canonical_hash=None):
    """`n` proposals of an empty program; their ids."""
    return [store.add_proposal(parent_id, None, None, EMPTY_DNA, canonical_hash or f"hash{i}") for i in range(n)]
