"""Complex numbers: JAX's convention for gradients of real-valued functions of complex
inputs (df/dx - i df/dy), holomorphic=True for complex derivatives, both modes checked
against finite differences with complex perturbations."""
import numpy as np
import pytest

import jvpvjp
from jvpvjp import grad, jacfwd, jacrev, jvp, value_and_grad
from jvpvjp.primitives import REGISTRY, load_all
from jvpvjp.testing import check_grads, use_backend

load_all()
rng = np.random.default_rng(0)

HOLOMORPHIC = sorted(p.name for p in REGISTRY.values()
                     if p.complex and p.kind == "elementwise" and p.differentiable and p.numpy)


def _complex_args(case):
    """The row's test domain as complex values: real parts inside it, small imaginary
    parts (the branch cuts of log, sqrt and pow lie on the negative real axis)."""
    out = []
    for lo, hi in case.domain:
        re = rng.uniform(lo, hi, size=(3,))
        out.append(re + 1j * rng.uniform(-0.3, 0.3, size=(3,)))
    return tuple(out)


@pytest.mark.parametrize("name", HOLOMORPHIC)
def test_holomorphic_rows_against_finite_differences(name):
    prim = REGISTRY[name]
    case = prim.tests[0]
    args = _complex_args(case)[:prim.nin]
    ufunc = prim.numpy[0]
    check_grads(lambda *a: ufunc(*a), args, order=2, atol=1e-6, rtol=1e-5)
    # holomorphic: the derivative is one complex number per element, the same in both modes
    z = args[0]
    rest = args[1:]
    fwd = jvp(lambda x: ufunc(x, *rest), (z,), (np.ones_like(z),))[1]
    rev = np.array([grad(lambda x: ufunc(x, *rest)[i], holomorphic=True)(z)[i]
                    for i in range(z.size)])
    np.testing.assert_allclose(rev, fwd, rtol=1e-12)


Z = np.array([0.3 + 0.4j, -1.1 + 0.2j, 0.7 - 0.9j])
W = np.array([[0.5 - 0.1j, 0.2 + 0.3j, -0.4j], [1.0 + 0.0j, -0.3 + 0.8j, 0.6 - 0.2j]])

REAL_VALUED = {
    "abs squared": lambda z: np.sum(np.abs(z) ** 2),
    "real/imag parts": lambda z: np.sum(np.real(z * z) * np.imag(np.exp(z))) + np.sum(z.real),
    "conj": lambda z: np.real(np.sum(np.conj(z) * z * 1j + np.conj(z) ** 2)),
    "angle": lambda z: np.sum(np.angle(z) * np.abs(z)),
    "matmul, einsum": lambda z: np.abs(np.sum(W @ z)) + np.real(np.einsum("ij,j->", W, z * z)),
    "indexing, reductions": lambda z: np.real(np.prod(z[::-1][:2]) + np.cumsum(z)[-1] * 2.0)
    + np.imag(np.mean(z)),
    "mixed real and complex": lambda z: np.sum(np.abs(np.sin(z) * np.linspace(1, 2, 3))),
    "arrays from lists": lambda z: np.abs(np.sum(np.array([z[0] * z[1], 2.0, z[2]]) ** 2)),
}


@pytest.mark.parametrize("name", sorted(REAL_VALUED))
@pytest.mark.parametrize("backend", ["numpy", "numba"])
def test_real_valued_functions_of_complex_inputs(name, backend):
    f = REAL_VALUED[name]
    with use_backend(backend):
        np.testing.assert_allclose(jvpvjp.jit(f)(Z), f(Z), rtol=1e-13)
        # second order on the interpreter; compiled, first order (fewer Numba compiles)
        check_grads(f, (Z,), order=2 if backend == "numpy" else 1)


def test_jax_convention_values():
    # grad of |z|^2 at 3 + 4i is 2 conj(z) = 6 - 8i (JAX's answer; autograd's is 6 + 8i)
    assert grad(lambda z: np.abs(z) ** 2)(3.0 + 4.0j) == pytest.approx(6.0 - 8.0j)
    assert grad(lambda z: np.real(z))(1.0 + 1.0j) == pytest.approx(1.0)
    assert grad(lambda z: np.imag(z))(1.0 + 1.0j) == pytest.approx(-1.0j)
    # a real input that meets complex values gets a real gradient
    g = grad(lambda x: np.real(np.exp(1j * x)))(0.5)
    assert np.isrealobj(g) and g == pytest.approx(-np.sin(0.5))


def test_matches_jax_when_installed():
    jax = pytest.importorskip("jax")
    jax.config.update("jax_enable_x64", True)
    jnp = jax.numpy
    for name, f in REAL_VALUED.items():
        if name in ("arrays from lists",):
            continue
        src = f.__code__
        g = {"np": jnp, "W": jnp.asarray(W)}
        jf = type(f)(src, g)
        want = np.asarray(jax.grad(jf)(jnp.asarray(Z)))
        np.testing.assert_allclose(grad(f)(Z), want, rtol=1e-10, err_msg=name)


def test_holomorphic_grad_and_jacobians():
    f = lambda z: np.sin(z) * z[0]
    want = np.diag(np.cos(Z) * Z[0]) + np.outer(np.sin(Z), [1, 0, 0])
    for backend in ("numpy", "numba"):
        with use_backend(backend):
            np.testing.assert_allclose(jacfwd(f, holomorphic=True)(Z), want, rtol=1e-13)
            np.testing.assert_allclose(jacrev(f, holomorphic=True)(Z), want, rtol=1e-13)
            g = grad(lambda z: np.sum(z ** 3), holomorphic=True)(Z)
            np.testing.assert_allclose(g, 3 * Z ** 2, rtol=1e-13)
            v, g = value_and_grad(lambda z: np.exp(z[1]) * z[0], holomorphic=True)(Z)
            np.testing.assert_allclose(g, [np.exp(Z[1]), np.exp(Z[1]) * Z[0], 0], rtol=1e-13)


def test_complex64_stays_complex64():
    z = Z.astype(np.complex64)
    out, t = jvp(lambda z: np.exp(z) * z, (z,), (np.ones_like(z),))
    assert out.dtype == np.complex64 and t.dtype == np.complex64
    g = grad(lambda z: np.sum(np.abs(z)))(z)
    assert g.dtype == np.complex64


def test_complex_errors_name_the_problem():
    with pytest.raises(TypeError, match="holomorphic=True"):
        grad(lambda z: np.sum(z * z))(Z)
    with pytest.raises(TypeError, match="needs complex differentiated inputs"):
        grad(lambda x: np.sum(x * 1j), holomorphic=True)(np.ones(2))
    with pytest.raises(TypeError, match="holomorphic=True"):
        jacfwd(lambda z: np.abs(z))(Z)
    with pytest.raises(TypeError, match="complex values is not supported"):
        grad(lambda z: np.max(np.abs(z)) + np.abs(np.max(z)))(Z)
    with pytest.raises(TypeError, match="not supported"):
        grad(lambda z: np.abs(np.sum(np.floor(z))))(Z)
    with pytest.raises(jvpvjp.TracingError, match="derivative would be lost"):
        grad(lambda z: np.abs(complex(np.sum(z))))(Z)
