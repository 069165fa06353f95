"""Sparse Jacobians and Hessians: patterns, colourings, and values equal to the dense ones."""
import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from jvpvjp import (checkpoint, custom_jvp, custom_vjp, hessian, hessian_sparsity, jacfwd,
                    jacobian_sparsity, sparse_hessian, sparse_jacobian)
from jvpvjp import sparsity as sp


def _dense(J):
    if isinstance(J, tuple):
        rows, cols, values, shape = J
        out = np.zeros(shape, values.dtype)
        out[rows, cols] = values
        return out
    return J.toarray()


def banded(x, w=1):
    """Bandwidth 2w + 1: y_i reads x_{i-w} .. x_{i+w}."""
    n = x.size
    y = 2.0 * x ** 2
    for k in range(1, w + 1):
        y = y + np.concatenate([np.zeros(k), np.sin(x[:n - k])]) * k \
            - np.concatenate([x[k:] ** 3, np.zeros(k)])
    return y


def block_diagonal(x):
    B = x.reshape(-1, 3)
    return np.tanh(B @ np.array([[1.0, 2.0, 0.5], [0.0, 1.0, -1.0], [3.0, 0.0, 1.0]])
                   ).reshape(-1) * np.repeat(np.sum(B ** 2, axis=1), 3)


def arrowhead(x):
    """Every output reads x_0 and its own element; the last reads everything."""
    y = x * x[0] + np.cos(x)
    return np.concatenate([y[:-1], np.sum(y, keepdims=True)])


def random_sparse(seed, n=30, m=25, per_row=4):
    rng = np.random.default_rng(seed)
    idx = np.stack([rng.choice(n, per_row, replace=False) for _ in range(m)])
    w = rng.normal(size=(m, per_row))

    def f(x):
        return np.sum(np.sin(x[idx]) * w, axis=1) + x[idx[:, 0]] ** 2
    return f, idx


MODES = ["never", "eager"]


@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("f,n", [(banded, 20), (block_diagonal, 15), (arrowhead, 12)],
                         ids=["banded", "block_diagonal", "arrowhead"])
def test_equals_the_dense_jacobian(f, n, mode, rng):
    x = rng.normal(size=n)
    for how in ("auto", "fwd", "rev"):
        J = sparse_jacobian(f, mode=how, compile=mode)(x)
        np.testing.assert_allclose(_dense(J), jacfwd(f)(x), rtol=1e-13, atol=1e-13)
    assert np.array_equal(_dense(jacobian_sparsity(f)(x)), jacfwd(f)(x) != 0)


@given(st.integers(0, 10_000))
def test_random_patterns(seed):
    f, idx = random_sparse(seed)
    x = np.random.default_rng(seed).normal(size=30)
    J = sparse_jacobian(f)(x)
    np.testing.assert_allclose(_dense(J), jacfwd(f)(x), rtol=1e-12, atol=1e-13)
    pattern = np.zeros((25, 30), bool)
    pattern[np.arange(25)[:, None], idx] = True
    assert np.array_equal(_dense(jacobian_sparsity(f)(x)), pattern)


@pytest.mark.parametrize("w", [1, 2, 3])
def test_banded_colours(w, rng):
    """Columns sharing no row share a colour: a band of width 2w+1 needs 2w+1 sweeps,
    at most the largest row count plus one."""
    x = rng.normal(size=40)
    sj = sparse_jacobian(banded)
    J = sj(x)
    n_colors, how = sj.sweeps(x)
    assert n_colors <= max(np.diff(J.indptr)) + 1
    assert n_colors == 2 * w + 1 if w == 1 else n_colors <= 2 * w + 2
    assert how == "fwd"


def test_reverse_mode_when_rows_colour_better(rng):
    """A few dense rows: reverse mode needs one sweep per row, forward one per column."""
    def f(x):
        return np.stack([np.sum(x ** 2), np.sum(np.sin(x))])
    x = rng.normal(size=50)
    sj = sparse_jacobian(f)
    np.testing.assert_allclose(_dense(sj(x)), jacfwd(f)(x), rtol=1e-13)
    assert sj.sweeps(x) == (2, "rev")


def test_constant_matrix_zeros_are_structural(rng):
    n = 30
    A = np.diag(np.full(n, 2.0)) + np.diag(np.ones(n - 1), 1) + np.diag(np.ones(n - 1), -1)
    f = lambda x: np.tanh(A @ x) * x          # noqa: E731
    x = rng.normal(size=n)
    sj = sparse_jacobian(f)
    np.testing.assert_allclose(_dense(sj(x)), jacfwd(f)(x), rtol=1e-13)
    assert sj.sweeps(x)[0] == 3
    # a matrix that is an input is dense: its zeros may change between calls
    g = lambda x, B: np.tanh(B @ x)           # noqa: E731
    assert _dense(jacobian_sparsity(g)(x, A)).all()


@pytest.mark.parametrize("mode", MODES)
def test_hessians(mode, rng):
    def chain(x):
        return np.sum((x[1:] - x[:-1] ** 2) ** 2) + np.sum(np.cos(x))

    def arrow(x):
        return np.sum(x[0] * x ** 2) + np.sum(np.exp(x[1:] * x[:-1]))

    f_r, _ = random_sparse(3, n=20, m=20)

    def random_terms(x):
        return np.sum(f_r(x) ** 2)

    for f in (chain, arrow, random_terms):
        x = rng.normal(size=20)
        H = _dense(sparse_hessian(f, compile=mode)(x))
        ref = hessian(f)(x)
        np.testing.assert_allclose(H, ref, rtol=1e-12, atol=1e-12)
        np.testing.assert_array_equal(H, H.T)
        pattern = _dense(hessian_sparsity(f)(x))
        assert not (ref[~pattern] != 0).any()
    sh = sparse_hessian(chain)
    sh(np.ones(50))
    assert sh.sweeps(np.ones(50)) == (3, "star")   # tridiagonal: 3 colours


@given(st.integers(0, 10_000))
def test_star_colouring_recovers_symmetric_patterns(seed):
    rng = np.random.default_rng(seed)
    n = int(rng.integers(2, 40))
    dense = rng.random((n, n)) < rng.uniform(0.02, 0.4)
    dense = dense | dense.T | np.eye(n, dtype=bool)
    rows, cols = np.nonzero(dense)
    colors, k = sp.star_coloring(rows, cols, n)
    assert sp.check_star(rows, cols, colors)
    # a proper colouring of the adjacency graph
    off = rows != cols
    assert (colors[rows[off]] != colors[cols[off]]).all()
    # and the values come back from H S
    H = np.where(dense, rng.normal(size=(n, n)), 0.0)
    H = H + H.T
    S = np.zeros((n, k))
    S[np.arange(n), colors] = 1
    B = (H @ S).T
    src_row, src_col = sp.recover_symmetric_positions(rows, cols, colors)
    np.testing.assert_allclose(B[src_col, src_row], H[rows, cols], rtol=1e-12, atol=1e-12)


def test_custom_rules_and_checkpoints_keep_their_structure(rng):
    @custom_jvp
    def sq(x):
        return x ** 2

    @sq.defjvp
    def _(p, t):
        return sq(p[0]), 2 * p[0] * t[0]

    @custom_vjp
    def cube(x):
        return x ** 3
    cube.defvjp(lambda x: (x ** 3, x), lambda x, ct: (3 * x ** 2 * ct,))
    seg = checkpoint(lambda x: np.sin(x) * 2.0)

    def f(x):
        return banded(sq(x)) + cube(x) + seg(x)
    x = rng.normal(size=15)
    sj = sparse_jacobian(f)
    np.testing.assert_allclose(_dense(sj(x)), jacfwd(f)(x), rtol=1e-12)
    assert sj.sweeps(x)[0] == 3


def test_a_guarded_pattern_follows_the_branch(rng):
    def f(x):
        if x[0] > 0:
            return x * x[0]              # arrowhead column
        return x ** 2                    # diagonal

    sj = sparse_jacobian(f)
    x = np.abs(rng.normal(size=8)) + 0.1
    np.testing.assert_allclose(_dense(sj(x)), jacfwd(f)(x))
    np.testing.assert_allclose(_dense(sj(-x)), jacfwd(f)(-x))
    assert sj.sweeps(-x)[0] == 1
    np.testing.assert_allclose(_dense(sj(x)), jacfwd(f)(x))
    assert sj.cache_info()["paths"] == 2


def test_coo_without_scipy(monkeypatch, rng):
    import builtins
    real = builtins.__import__

    def no_scipy(name, *args, **kwargs):
        if name.startswith("scipy"):
            raise ImportError(name)
        return real(name, *args, **kwargs)
    monkeypatch.setattr(builtins, "__import__", no_scipy)
    x = rng.normal(size=6)
    rows, cols, values, shape = sparse_jacobian(banded)(x)
    assert shape == (6, 6) and rows.shape == cols.shape == values.shape
    np.testing.assert_allclose(_dense((rows, cols, values, shape)), jacfwd(banded)(x))


def test_errors():
    with pytest.raises(TypeError, match="one float array"):
        sparse_jacobian(lambda p: p[0] * p[1])((np.ones(2), np.ones(2)))
    with pytest.raises(TypeError, match="scalar output"):
        sparse_hessian(lambda x: x * 2)(np.ones(3))
    with pytest.raises(TypeError, match="argnums must be one int"):
        sparse_jacobian(lambda x: x, argnums=(0,))(np.ones(2))
    with pytest.raises(ValueError, match="mode"):
        sparse_jacobian(lambda x: x, mode="sideways")
    with pytest.raises(sp.PatternTooDense, match="dense"):
        old = sp.MAX_ENTRIES
        sp.MAX_ENTRIES = 100
        try:
            jacobian_sparsity(lambda x: np.linalg.det(x.reshape(20, 20)) * x)(
                np.eye(20).reshape(-1) + 0.1)
        finally:
            sp.MAX_ENTRIES = old
