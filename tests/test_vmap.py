"""vmap: batches equal loops over examples, per-example gradients, nesting, errors."""
import numpy as np
import pytest

from jvpvjp import grad, jacrev, value_and_grad, vmap
from jvpvjp.nn.functional import cross_entropy
from jvpvjp.testing import use_backend


def mlp_loss(params, x, y):
    W1, b1, W2, b2 = params
    h = np.tanh(x @ W1 + b1)
    return cross_entropy((h @ W2 + b2)[None, :], y[None, :])


def mlp_params(rng):
    return (rng.normal(size=(4, 5)), rng.normal(size=5), rng.normal(size=(5, 3)),
            rng.normal(size=3))


@pytest.mark.parametrize("backend", ["numba", "numpy", "vtape"])
def test_equals_a_loop_over_examples(backend, rng):
    W = rng.normal(size=(3, 4))

    def f(x, s):
        return np.tanh(W @ x) * s, np.sum(x ** 2) + s

    X, S = rng.normal(size=(6, 4)), rng.normal(size=6)
    with use_backend(backend):
        vf = vmap(f)
        for _ in range(2):          # traced, then the cached kernel
            a, b = vf(X, S)
            assert a.shape == (6, 3) and b.shape == (6,)
            for i in range(6):
                ai, bi = f(X[i], S[i])
                np.testing.assert_allclose(a[i], ai, rtol=1e-13)
                np.testing.assert_allclose(b[i], bi, rtol=1e-13)
            X, S = X + 1.0, S * 2.0
        assert vf.cache_info()["traces"] == 1


def test_in_axes_out_axes_and_shared_arguments(rng):
    def f(x, w):
        return x @ w

    X, w = rng.normal(size=(3, 7)), rng.normal(size=(3, 2))   # examples along axis 1
    out = vmap(f, in_axes=(1, None), out_axes=1)(X, w)
    assert out.shape == (2, 7)
    np.testing.assert_allclose(out, (X.T @ w).T, rtol=1e-13)
    out = vmap(f, in_axes=(-1, None))(X, w)
    np.testing.assert_allclose(out, X.T @ w, rtol=1e-13)


def test_pytree_arguments(rng):
    p = {"a": rng.normal(size=(5, 2)), "b": rng.normal(size=5)}
    out = vmap(lambda p: p["a"] * p["b"])(p)
    np.testing.assert_allclose(out, p["a"] * p["b"][:, None], rtol=1e-13)


def test_per_example_gradients(rng):
    params = mlp_params(rng)
    X, Y = rng.normal(size=(8, 4)), np.eye(3)[rng.integers(0, 3, 8)]
    g = vmap(grad(mlp_loss), in_axes=(None, 0, 0))(params, X, Y)
    assert [x.shape for x in g] == [(8,) + p.shape for p in params]
    for i in range(8):
        gi = grad(mlp_loss)(params, X[i], Y[i])
        for a, b in zip(g, gi):
            np.testing.assert_allclose(a[i], b, rtol=1e-12, atol=1e-14)
    # their mean is the gradient of the mean loss
    mean_loss = value_and_grad(lambda p: np.mean(vmap(mlp_loss, (None, 0, 0))(p, X, Y)))
    _, gm = mean_loss(params)
    for a, b in zip(g, gm):
        np.testing.assert_allclose(a.mean(axis=0), b, rtol=1e-12, atol=1e-14)


def test_grad_through_vmap_against_finite_differences(rng):
    X = rng.normal(size=(5, 3))

    def f(w):
        return np.sum(vmap(lambda x, w: np.sin(x @ w) ** 2, in_axes=(0, None))(X, w))

    w = rng.normal(size=3)
    eps = 1e-6
    fd = np.array([(f(w + eps * e) - f(w - eps * e)) / (2 * eps) for e in np.eye(3)])
    np.testing.assert_allclose(grad(f)(w), fd, rtol=1e-6, atol=1e-9)


def test_vmap_of_jacobian(rng):
    def f(x):
        return np.tanh(x) * x[0]

    X = rng.normal(size=(4, 3))
    J = vmap(jacrev(f))(X)
    for i in range(4):
        np.testing.assert_allclose(J[i], jacrev(f)(X[i]), rtol=1e-12)


def test_errors(rng):
    X = rng.normal(size=(4, 3))

    def branchy(x):
        if x[0] > 0:
            return x
        return -x

    with pytest.raises(NotImplementedError, match="different path"):
        vmap(branchy)(X)
    with pytest.raises(ValueError, match="different sizes"):
        vmap(lambda a, b: a + b)(X, np.ones((5, 3)))
    with pytest.raises(ValueError, match="out of range"):
        vmap(lambda a: a, in_axes=2)(X)
    with pytest.raises(ValueError, match="no argument is batched"):
        vmap(lambda a: a, in_axes=None)(X)
    with pytest.raises(ValueError, match="in_axes"):
        vmap(lambda a, b: a, in_axes=(0,))(X, X)
