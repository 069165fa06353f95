"""Item assignment on traced arrays: NumPy's semantics recorded as functional updates, with
derivatives in both modes; views taken before an assignment and used after it, and
assignments NumPy would make visible elsewhere, raise clear errors."""
import numpy as np
import pytest

import jvpvjp
from jvpvjp import grad, jit
from jvpvjp.testing import check_grads, use_backend
from jvpvjp.tracing import TracingError

X = np.array([0.5, -1.2, 2.0, 0.3])


def updates(x):
    y = np.zeros_like(x)
    y[0] = x[1] * 2.0                              # an element
    y[1:3] = np.sin(x[:2])                         # a slice
    y[np.array([3, 3])] = np.stack([x[0], x[2]])   # repeated index: the last write wins
    y[1:-1] += x[2]                                # augmented
    y[y > 0.5] *= 3.0                              # a mask (a guard on its value)
    z = x.copy()
    z[::2] = np.exp(z[1::2])                       # strided, read before written
    return np.sum(y * x) + np.sum(z ** 2)


def updates_2d(m):
    out = np.ones_like(m)
    out[0, :] = m[1, :] * m[0, :]
    out[:, 1] -= np.tanh(m[:, 0])
    out[1] = 7.0                                   # a constant row cuts the derivative
    return np.sum(out * m)


def test_values_equal_numpys():
    assert jit(updates)(X) == pytest.approx(updates(X.copy()), rel=1e-14)
    m = np.arange(6.0).reshape(2, 3) / 5.0
    assert jit(updates_2d)(m) == pytest.approx(updates_2d(m.copy()), rel=1e-14)


@pytest.mark.parametrize("backend", ["numpy", "numba", "vtape"])
def test_derivatives_against_finite_differences(backend):
    order = 2 if backend == "numpy" else 1      # (compiled: fewer programs to compile)
    with use_backend(backend):
        check_grads(updates, (X,), order=order)
        check_grads(updates_2d, (np.arange(6.0).reshape(2, 3) / 5.0,), order=order)


def test_inf_and_signed_zero_are_kept():
    def f(x):
        y = np.full_like(x, np.inf)
        y[0] = x[0]
        return y
    out = jit(f)(np.array([-0.0, 1.0]))
    assert np.signbit(out[0]) and np.isinf(out[1])
    np.testing.assert_array_equal(jvpvjp.jacfwd(f)(np.array([-0.0, 1.0])), [[1, 0], [0, 0]])


def _stale_view(x):
    y = x.copy()
    v = y[1:3]
    y[0] = 5.0
    return np.sum(v)                      # NumPy's v would show y's new values


def _stale_reshape(x):
    y = x.copy()
    v = y.reshape(2, 2)
    y[0] = 5.0
    return v


def _into_argument(x):
    x[0] = 1.0
    return np.sum(x)


def _into_view(x):
    y = x.copy()
    y[1:3][0] = 2.0
    return np.sum(y)


@pytest.mark.parametrize("fn,words", [
    (_stale_view, "is used after the array was assigned to"),
    (_stale_reshape, "is used after the array was assigned to"),
    (_into_argument, "assignment into an argument"),
    (_into_view, "assignment into a view"),
])
def test_what_would_silently_differ_from_numpy_raises(fn, words):
    with pytest.raises(TracingError, match=words) as info:
        grad(lambda x: np.sum(fn(x)))(X)
    assert __file__ in str(info.value)


def test_a_view_taken_after_the_assignment_is_fine():
    def f(x):
        y = x.copy()
        y[0] = 5.0
        v = y[1:3]
        return np.sum(v) + np.sum(y)
    np.testing.assert_allclose(grad(f)(X), [0.0, 2.0, 2.0, 1.0])


def test_differentiated_values_into_integer_arrays_raise():
    def f(x):
        y = np.zeros_like(x, dtype=np.int64)
        y[0] = x[0]
        return np.sum(y * x)
    with pytest.raises(TracingError, match="drop its derivative"):
        grad(f)(X)
