"""The examples run and do what they say."""
import os
import sys

import numpy as np
import pytest

sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", "examples"))


def test_mlp_example_trains():
    import mlp
    value, accuracy = mlp.main(steps=100)
    assert value < 0.5 and accuracy > 0.8


def test_newton_example():
    import newton
    x, steps = newton.newton(2.0)
    assert abs(newton.f(x)) < 1e-12 and steps < 10
    from jvpvjp import grad
    assert grad(newton.root_of)(5.0) == pytest.approx(1 / (3 * x ** 2 - 2), rel=1e-10)
    assert np.isfinite(newton.df(1.0))
