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
