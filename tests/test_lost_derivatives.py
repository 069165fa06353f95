"""No silent zero: a Python number taken out of a value that depends on a differentiated
input raises, naming the user's line and the fix; where the derivative really is zero
(bool, int, stop_gradient, inputs not differentiated, jit) the value is a guard as before."""
import numpy as np
import pytest

import jvpvjp
from jvpvjp import grad, hessian, jacfwd, jit, jvp, stop_gradient, vjp, vmap
from jvpvjp.tracing import TracingError

X = np.array([0.5, 1.5, 2.5])


def _assign_into_numpy(x):
    g = np.zeros(3)
    for i in range(3):
        g[i] = x[i]                      # float(x[i]) into a plain array: the lost case
    return np.sum(g * x)


def _float_of(x):
    return np.sum(x) * float(x[0])


def _item_of(x):
    return np.sum(x) * x[1].item()


def _tolist_of(x):
    return np.sum(x) * sum(x.tolist())


@pytest.mark.parametrize("fn", [_float_of, _item_of, _tolist_of], ids=["float", "item", "tolist"])
@pytest.mark.parametrize("transform", [
    lambda f: grad(f)(X),
    lambda f: jvp(f, (X,), (np.ones(3),)),
    lambda f: vjp(f, X),
    lambda f: jacfwd(f)(X),
    lambda f: hessian(f)(X),
    lambda f: grad(lambda x: jit(f)(x))(X),            # a jit inside the derivative
    lambda f: vmap(grad(f))(np.stack([X, X])),
], ids=["grad", "jvp", "vjp", "jacfwd", "hessian", "grad-of-jit", "vmap-grad"])
def test_conversions_that_lose_the_derivative_raise(fn, transform):
    with pytest.raises(TracingError) as info:
        transform(fn)
    msg = str(info.value)
    assert __file__ in msg and "depends on a differentiated input" in msg
    assert "stop_gradient" in msg and "np.stack" in msg


def test_assigning_into_a_numpy_array_names_the_line():
    # NumPy turns the error into "setting an array element with a sequence"; ours is its
    # cause, printed first in the traceback
    with pytest.raises(ValueError) as info:
        grad(_assign_into_numpy)(X)
    cause = info.value.__cause__
    assert isinstance(cause, TracingError), info.value
    assert "g[i] = x[i]" in str(cause)


def test_zero_derivatives_stay_guards():
    # float of a value cut off with stop_gradient: a constant on purpose
    np.testing.assert_allclose(grad(lambda x: np.sum(x) * float(stop_gradient(x[0])))(X),
                               np.full(3, X[0]))
    # of an argument that is not differentiated
    np.testing.assert_allclose(
        grad(lambda x, n: np.sum(x) * float(n[0]), argnums=0)(X, np.array([2.0])),
        np.full(3, 2.0))
    # bool / int of a differentiated value: piecewise-constant, derivative zero
    f = grad(lambda x: np.sum(x ** 2) if float(np.sum(x > 1.0)) >= 2 else np.sum(x))
    np.testing.assert_allclose(f(X), 2 * X)
    np.testing.assert_allclose(grad(lambda x: np.sum(x) * int(x[2]))(X), np.full(3, 2.0))
    # a comparison's result carries no derivative
    np.testing.assert_allclose(grad(lambda x: np.sum(x) * bool(x[0] < x[1]))(X), np.ones(3))
    # no differentiation at all: jit keeps float() as a guard
    h = jit(_assign_into_numpy)
    assert h(X) == pytest.approx(np.sum(X * X))
    assert h(X + 1.0) == pytest.approx(np.sum((X + 1) ** 2))


def test_the_guard_still_retraces_on_new_values():
    calls = []

    def f(x):
        calls.append(1)
        return np.sum(x) * float(stop_gradient(x[0]))
    g = grad(f)
    g(X)
    g(X + 1.0)
    assert len(calls) == 2                    # the guarded float changed: traced again
    np.testing.assert_allclose(g(X + 1.0), np.full(3, X[0] + 1.0))
