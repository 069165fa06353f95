"""Rewrites applied before compiling: the compiled result equals the interpreted one."""
import numpy as np
import pytest

from jvpvjp import jit, make_oplist, value_and_grad
from jvpvjp.simplify import simplify
from jvpvjp.testing import use_backend


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
    assert simplify(ol) is ol


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
