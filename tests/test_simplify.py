"""Rewrites applied before compiling: the compiled result equals the interpreted one."""
import numpy as np
import pytest

from jvpvjp import jit, make_oplist, value_and_grad
from jvpvjp.simplify import simplify
from jvpvjp.testing import use_backend

# the rewrites run before the compiled backends: compare those with the interpreter
pytestmark = pytest.mark.usefixtures("compiled")


def _matmul_shapes(ol):
    return [op.outvar.shape for op in ol.ops if op.prim.name == "matmul"]


@pytest.mark.parametrize("batch", [(), (3,)])
@pytest.mark.parametrize("ta", [False, True])
@pytest.mark.parametrize("tb", [False, True])
@pytest.mark.parametrize("axis", [-1, -2])
def test_sum_of_a_product_moves_inside(batch, ta, tb, axis, rng):
    A = rng.normal(size=batch + ((5, 4) if ta else (4, 5)))
    B = rng.normal(size=batch + ((6, 5) if tb else (5, 6)))

    def f(A, B):
        a = np.swapaxes(A, -1, -2) if ta else A
        b = np.swapaxes(B, -1, -2) if tb else B
        return np.sum(a @ b, axis=axis) * 2.0

    expected = f(A, B)
    ol = make_oplist(f)(A, B)
    new = simplify(ol)
    # the (4, 6) product is gone: a product with a unit dimension replaces it
    assert batch + (4, 6) not in _matmul_shapes(new), str(new)
    assert all(1 in s[-2:] for s in _matmul_shapes(new))
    np.testing.assert_allclose(jit(f)(A, B), expected, rtol=1e-12, atol=1e-12)


def test_product_used_elsewhere_is_left_alone(rng):
    A, B = rng.normal(size=(4, 5)), rng.normal(size=(5, 6))

    def f(A, B):
        P = A @ B
        return np.sum(P, axis=1) + P[:, 0]

    ol = make_oplist(f)(A, B)
    assert _matmul_shapes(simplify(ol)) == _matmul_shapes(ol) == [(4, 6)]


def test_broadcast_operand_gradient_matches_interpreter(rng):
    Q, X, mu = rng.normal(size=(3, 4, 4)), rng.normal(size=(4, 50)), rng.normal(size=(3, 4))

    def f(Q, mu):
        r = Q @ (X[None] - mu[:, :, None])
        return np.sum(r * r)

    vg = value_and_grad(f, argnums=(0, 1))
    v, (gQ, gmu) = vg(Q, mu)
    with use_backend("numpy"):
        v_ref, (gQ_ref, gmu_ref) = value_and_grad(f, argnums=(0, 1))(Q, mu)
    np.testing.assert_allclose(v, v_ref, rtol=1e-12)
    np.testing.assert_allclose(gQ, gQ_ref, rtol=1e-11)
    np.testing.assert_allclose(gmu, gmu_ref, rtol=1e-11, atol=1e-12)


def _count(ol, name):
    return sum(op.prim.name == name for op in ol.ops)


def test_exact_identities_and_common_subexpressions():
    def f(x, y):
        a = x * 1.0 + y / 1.0            # x * 1 = x, y / 1 = y
        b = -(-x) * 3.0 + (-y) * 2.0     # -(-x) = x, (-y) * 2 = y * -2
        c = np.sin(x) * np.sin(x) + (x * -1.0)   # one sin; x * -1 = -x
        return a + b + c + (x + y) * (y + x)     # x + y and y + x: one add

    ol = make_oplist(f)(0.5, 0.25)
    new = simplify(ol)
    assert _count(new, "sin") == 1 and _count(new, "div") == 0
    assert len(new.ops) < len(ol.ops) - 5, str(new)
    special = [0.0, -0.0, 1.5, -2.5, np.inf, -np.inf, np.nan, 1e-310]
    for x in special:
        for y in special:
            with np.errstate(all="ignore"):
                want = f(np.float64(x), np.float64(y))
            got = jit(f)(x, y)
            assert np.array_equal(got, want, equal_nan=True) and \
                np.signbit(got) == np.signbit(want), (x, y, got, want)


def test_identities_keep_float32():
    def f(x):
        return (-x) * np.float32(3.0) + x * np.float32(1.0)

    x = np.linspace(-2, 2, 7, dtype=np.float32)
    got = jit(f)(x)
    assert got.dtype == np.float32
    np.testing.assert_array_equal(got, f(x))


def test_reverse_mode_of_a_scalar_chain_loses_ops():
    def chain(x, y):
        for _ in range(10):
            x = x + 0.01 * y
            y = y - 0.01 * np.sin(x)
        return 0.5 * y * y - np.cos(x)

    ol = make_oplist(value_and_grad(chain, argnums=(0, 1)))(0.3, 0.5)
    new = simplify(ol)
    assert _count(new, "neg") == 0 and len(new.ops) <= 0.9 * len(ol.ops)
    # the cosines the rules need for the last step are the primal's
    assert _count(new, "cos") == _count(ol, "cos") - 1
    v, g = value_and_grad(chain, argnums=(0, 1))(0.3, 0.5)
    with use_backend("numpy"):
        v_ref, g_ref = value_and_grad(chain, argnums=(0, 1))(0.3, 0.5)
    assert v == v_ref and g == g_ref          # same bits: the rewrites are exact


@pytest.mark.parametrize("shapes", [((1,), (4,)), ((1, 1), (4,)), ((4, 1), (1,)),
                                    ((1, 1, 1), (2, 3)), ((), (1,)), ((1,), (1, 1)),
                                    ((3, 1), (1, 4))])
def test_one_element_operands_become_scalars(shapes, rng):
    a, b = rng.normal(size=shapes[0]), rng.normal(size=shapes[1])

    def f(a, b):
        m = np.max(a, keepdims=True) if a.ndim else a
        return (b - m) * np.exp(m), np.where(b > m, m, b), np.maximum(m + 0.5, b)

    with use_backend("numpy"):
        ref = jit(f)(a, b)
    got = jit(f)(a, b)
    for g, r in zip(got, ref):
        assert g.shape == r.shape and g.dtype == r.dtype
        np.testing.assert_allclose(g, r, rtol=1e-13)


def test_views_of_views_become_one_view():
    def f(x):
        a = np.reshape(np.reshape(x, (12,)), (3, 4))        # one reshape: of x
        b = np.transpose(np.transpose(x, (1, 0)), (1, 0))   # none: x itself
        c = np.transpose(np.transpose(x[None], (1, 2, 0)), (2, 0, 1))   # x[None] again
        d = np.broadcast_to(np.broadcast_to(x[0], (2, 3)), (3, 2, 3))   # one broadcast
        return np.sum(a * 2.0) + np.sum(b * c) + np.sum(np.reshape(x, (4, 3)) * d[:, 0, 0])

    x = np.arange(12.0).reshape(4, 3) / 7.0
    ol = make_oplist(f)(x)
    new = simplify(ol)
    for op in new.ops:
        if op.prim.view_compose is not None:
            assert op.invars[0] not in {o.outvar for o in new.ops if o.prim is op.prim}, str(new)
    assert _count(new, "transpose") == 0 and _count(ol, "transpose") == 4, str(new)
    assert _count(new, "broadcast_to") < _count(ol, "broadcast_to"), str(new)
    with use_backend("numpy"):
        want = value_and_grad(f)(x)
    got = value_and_grad(f)(x)
    assert got[0] == want[0]
    np.testing.assert_array_equal(got[1], want[1])


def test_constant_arrays_of_one_value_become_scalars(rng):
    """A broadcasting operand that is a constant array repeating one value (the reverse
    pass's broadcast seeds) is that value, a scalar: no array read, and a factor of 1
    disappears. Bit for bit: an array holding 0.0 and -0.0 (or different NaNs) stays."""
    x = rng.normal(size=(4, 6))
    half = np.full(6, 0.5)
    zeros = np.array([0.0, -0.0, 0.0, 0.0, 0.0, 0.0])

    def f(x):
        return x * half, x * zeros, np.full((4, 6), 1.0) * (x + 1.0)

    ol = simplify(make_oplist(f)(x))
    consts = [np.shape(c) for c in ol.consts.values()]
    assert (6,) in consts and consts.count(()) >= 1, str(ol)      # zeros kept whole
    assert sum(op.prim.name == "mul" for op in ol.ops) == 2, str(ol)     # x * 1 gone
    with use_backend("numpy"):
        ref = jit(f)(x)
    for g, r in zip(jit(f)(x), ref):
        assert g.tobytes() == r.tobytes()
    # reverse mode: the seed of a sum, broadcast, is a constant array of ones
    ol = simplify(make_oplist(lambda x: value_and_grad(lambda v: np.sum(np.sin(v)))(x))(x))
    assert all(np.shape(c) == () for c in ol.consts.values()), str(ol)
    assert not any(op.prim.name == "mul" for op in ol.ops), str(ol)


def test_gathers_at_constant_positions_in_range_read_directly(rng):
    """Fancy indexing at constant positions, all in range: the gather is marked
    ``bounded``, so compiled loops read it without a bounds check per element."""
    x = rng.normal(size=(4, 5))

    def f(x):
        return np.sum(np.tanh(x[np.array([3, 0, -1])][:, np.array([4, 1])]) * 2.0)

    ol = simplify(make_oplist(f)(x))
    gathers = [op for op in ol.ops if op.prim.name == "gather"]
    assert gathers and all(op.params.get("bounded") for op in gathers), str(ol)
    with use_backend("numpy"):
        ref = jit(f)(x)
    np.testing.assert_allclose(jit(f)(x), ref, rtol=1e-14)


def _scatters(ol):
    return [op for op in ol.ops if op.prim.name == "scatter_add"]


def test_sums_of_scatters_merge_into_one(rng):
    """Reverse mode of element-by-element reads leaves one scatter (an array of zeros the
    size of x, one element set) per read, summed in a chain: O(n) work per read. The
    chain becomes one scatter of all the values, with the same bits (each position's
    values are added in the chain's order), on every compiled backend."""
    def f(x):
        s = 0.0
        for i in range(x.size - 1):
            s = s + x[i] * x[i + 1] + x[-1 - i] ** 2
        return s

    x = rng.normal(size=40)
    x[3], x[7] = -0.0, 1e16            # rounding that depends on the order of the sums
    ol = make_oplist(value_and_grad(f))(x)
    assert len(_scatters(ol)) > 100
    assert len(_scatters(simplify(ol))) == 1, str(simplify(ol))
    with use_backend("numpy"):
        ref = value_and_grad(f)(x)
    for backend in ("numba", "vtape"):
        with use_backend(backend):
            got = value_and_grad(f)(x)
        assert got[0] == ref[0]
        assert got[1].tobytes() == ref[1].tobytes(), backend


def test_only_chains_of_scatters_merge(rng):
    """``(s1 + s2) + (s3 + s4)`` adds position by position in another order than one
    scatter of all four would: its two chains merge, the outer sum stays. A scatter
    whose result is also used elsewhere stays as it is."""
    from jvpvjp.primitives.shape import scatter_add

    p, q = np.array([0, 2]), np.array([2, 3])

    def tree(a, b, c, d):
        s = scatter_add(a, p, shape=(5,))
        t = scatter_add(b, q, shape=(5,))
        u = scatter_add(c, p, shape=(5,))
        return (s + t) + (u + scatter_add(d, q, shape=(5,)))

    def shared(a, b):
        s = scatter_add(a, p, shape=(5,))
        return (s + scatter_add(b, q, shape=(5,))) * s

    args = [np.array([1e16, 1.0]), np.array([1.0, -1e16]), np.array([-1e16, 3.0]),
            np.array([1.0, 2.0])]
    ol = simplify(make_oplist(tree)(*args))
    assert len(_scatters(ol)) == 2 and [op.prim.name for op in ol.ops].count("add") == 1
    assert jit(tree)(*args).tobytes() == tree(*args).tobytes()
    ol = simplify(make_oplist(shared)(*args[:2]))
    assert len(_scatters(ol)) == 2, str(ol)
    assert jit(shared)(*args[:2]).tobytes() == shared(*args[:2]).tobytes()


def test_scatters_merge_only_where_the_bits_stay(rng):
    """A scatter adding two values to one position, after other scatters, would round in
    another order merged: left as it is. A chain of another shape than the sum (add
    broadcasts) is not merged into it."""
    def repeated(x):
        return np.sum(x[np.array([0, 0])] * x[2]) + x[0] * x[1]

    x = np.array([3.0, 1.0, 1e-16])
    with use_backend("numpy"):
        ref = value_and_grad(repeated)(x)
    got = value_and_grad(repeated)(x)
    assert got[1].tobytes() == ref[1].tobytes(), (got[1], ref[1])

    from jvpvjp import grad

    def broadcast(x, M):
        g = grad(lambda t: t[0] * t[1] + t[1] * t[2])(x)     # (3,)
        s = grad(lambda m: np.sin(m[1, 1]))(M)               # (2, 3)
        return g + s

    x, M = np.array([1.0, 2.0, 3.0]), np.arange(6.0).reshape(2, 3)
    with use_backend("numpy"):
        ref = jit(broadcast)(x, M)
    assert jit(broadcast)(x, M).tobytes() == ref.tobytes()
