import os

import numpy as np
import pytest
from hypothesis import HealthCheck, settings

# Hypothesis depth: "ci" keeps the suite within CI's budget; "dev" and "thorough" go deeper.
_common = dict(deadline=None, suppress_health_check=[HealthCheck.too_slow,
                                                    HealthCheck.filter_too_much,
                                                    HealthCheck.data_too_large])
settings.register_profile("ci", max_examples=12, derandomize=True, **_common)
settings.register_profile("dev", max_examples=40, **_common)
settings.register_profile("thorough", max_examples=400, **_common)
settings.load_profile(os.environ.get("JVPVJP_HYPOTHESIS_PROFILE", "ci"))


@pytest.fixture
def rng():
    return np.random.default_rng(0)


@pytest.fixture
def compiled(monkeypatch):
    """Pin the Numba backend: the test is about compiled kernels, not the tiers."""
    from jvpvjp import config
    monkeypatch.setattr(config, "backend", "numba")
