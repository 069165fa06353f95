"""NumPy functions built from primitives (no rules of their own): values as NumPy's, both
modes against finite differences, on the interpreter and compiled."""
import numpy as np
import pytest

import jvpvjp
from jvpvjp.testing import check_grads, use_backend

rng = np.random.default_rng(0)
A = rng.uniform(0.2, 0.8, size=(2, 3))        # between the jumps of floor / round / mod
B = rng.uniform(2.2, 2.9, size=(3,))
S = np.array([-1.3, 0.0, 0.7, 2.4])

COMPOSITES = {
    "logaddexp2": (lambda a, b: np.logaddexp2(a, b), (A, B)),
    "heaviside": (lambda a, b: np.heaviside(a - 0.5, b) * a, (A, B)),
    "floor_divide": (lambda a, b: (a * 7.0) // b + a, (A, B)),
    "mod operator": (lambda a, b: (a + 3.0) % b, (A, B)),
    "np.mod": (lambda a, b: np.mod(a + 3.0, b) * b, (A, B)),
    "fix": (lambda a: np.fix(a * 10.0) * a, (A,)),
    "round": (lambda a: np.round(a) + np.round(a, 1) * a + np.around(a, 2), (A,)),
    "sinc": (lambda a: np.sinc(a - 0.5), (A,)),
    "isfinite": (lambda a: np.where(np.isfinite(np.log(a - 0.5)), a, -a), (A,)),
    "isnan/isinf": (lambda a: np.where(np.isnan(np.sqrt(a - 0.5)) | np.isinf(1.0 / a), a, a * a),
                    (A,)),
    "nan_to_num": (lambda a: np.nan_to_num(np.log(a - 0.5), nan=-1.0, neginf=-9.0) * a, (A,)),
}


@pytest.mark.parametrize("name", sorted(COMPOSITES))
@pytest.mark.parametrize("backend", ["numpy", "numba"])
def test_composites_match_numpy_and_finite_differences(name, backend):
    f, args = COMPOSITES[name]
    with np.errstate(all="ignore"):
        want = f(*args)
        with use_backend(backend):
            got = jvpvjp.jit(f)(*args)
            np.testing.assert_allclose(got, want, rtol=1e-13, atol=1e-14)
            check_grads(f, args, order=1, atol=1e-6, rtol=1e-5)


def test_sinc_at_zero_is_one_with_zero_slope():
    g = jvpvjp.grad(lambda x: np.sum(np.sinc(x)))
    # d/dx sinc(x) = (cos(pi x) - sinc(x)) / x: -4/pi at 1/2, the limit 0 at 0
    np.testing.assert_allclose(g(np.array([0.0, 0.5])), [0.0, -4.0 / np.pi], atol=1e-12)
    assert jvpvjp.jit(lambda x: np.sinc(x))(np.array([0.0]))[0] == 1.0


def test_nan_semantics_of_fmax_and_maximum_differ_as_in_numpy():
    a = np.array([np.nan, 1.0, np.nan, 2.0])
    b = np.array([1.0, np.nan, np.nan, 3.0])
    for backend in ("numpy", "numba", "vtape"):
        with use_backend(backend):
            for fn in (np.fmax, np.fmin, np.maximum, np.minimum):
                np.testing.assert_array_equal(jvpvjp.jit(lambda x, y: fn(x, y))(a, b), fn(a, b))


def test_round_half_to_even_and_integer_derivatives_are_zero():
    x = np.array([0.5, 1.5, 2.5, -0.5, 0.25])
    np.testing.assert_array_equal(jvpvjp.jit(np.round)(x), np.round(x))
    for fn in (np.floor, np.ceil, np.trunc, np.rint, np.fix, np.round):
        np.testing.assert_array_equal(jvpvjp.grad(lambda v: np.sum(fn(v) * v))(S + 0.01),
                                      fn(S + 0.01))
