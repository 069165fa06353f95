"""The batching transform, generated from the registry: a batched op list equals the
original run slice by slice, for every primitive and every mix of batched operands."""
import itertools

import numpy as np
import pytest

from jvpvjp import make_oplist
from jvpvjp.backend import compile_oplist
from jvpvjp.batching import NotBatchable, batch_oplist
from jvpvjp.primitives import REGISTRY, load_all
from jvpvjp.transforms import eval_oplist

from test_registry import _fixed_args

load_all()
CASES = [(p, c) for p in REGISTRY.values() for c in p.tests]
SIZE = 3


@pytest.mark.parametrize("prim,case", CASES, ids=[f"{p.name}-{c.name}" for p, c in CASES])
def test_batched_equals_slice_by_slice(prim, case, rng):
    args = _fixed_args(case, rng)
    ol = make_oplist(case.fn)(*args)
    n = len(ol.invars)
    for pattern in itertools.product([False, True], repeat=n):
        if not any(pattern):
            continue
        stacks = [np.stack([a + 0.01 * k for k in range(SIZE)]) if b else a
                  for a, b in zip(args, pattern)]
        try:
            bol = batch_oplist(ol, list(pattern), SIZE)
        except NotBatchable:
            continue
        got, _ = eval_oplist(bol, stacks)
        for k in range(SIZE):
            want, _ = eval_oplist(ol, [s[k] if b else s for s, b in zip(stacks, pattern)])
            for g, w in zip(got, want):
                assert g.shape == (SIZE,) + np.shape(w), (pattern, g.shape)
                np.testing.assert_allclose(g[k], w, rtol=1e-13, atol=1e-14,
                                           err_msg=str(pattern))


@pytest.mark.parametrize("ta", [False, True])
@pytest.mark.parametrize("tb", [False, True])
@pytest.mark.parametrize("pattern", [(True, False), (False, True), (True, True)])
@pytest.mark.parametrize("n", [1, 4])
def test_matmul_batching_on_numba(ta, tb, pattern, n, rng):
    from jvpvjp.primitives.linalg import matmul
    a = rng.normal(size=(5, 3) if ta else (3, 5))
    b = rng.normal(size=(n, 5) if tb else (5, n))

    def f(a, b):
        return matmul(a, b, ta=ta, tb=tb)

    ol = make_oplist(f)(a, b)
    stacks = [np.stack([x * (k + 1) for k in range(SIZE)]) if p else x
              for x, p in zip((a, b), pattern)]
    bol = batch_oplist(ol, list(pattern), SIZE)
    got = compile_oplist(bol, "numba")(*stacks)[0]
    for k in range(SIZE):
        want = f(*[s[k] if p else s for s, p in zip(stacks, pattern)])
        np.testing.assert_allclose(got[k], want, rtol=1e-13)


def _one_hot_blocks(shape, rows, start):
    """A block of seeds: row k is the basis vector start + k of a slice of ``shape``, or
    zero past the end (as the Jacobian loops pad their last block)."""
    n = int(np.prod(shape))
    s = np.zeros((rows, n))
    for k in range(rows):
        if start + k < n:
            s[k, start + k] = 1.0
    return s.reshape((rows,) + shape)


@pytest.mark.parametrize("ta", [False, True])
@pytest.mark.parametrize("tb", [False, True])
@pytest.mark.parametrize("side", ["left", "right"])
def test_products_with_one_hot_seeds_are_gathers(ta, tb, side, rng):
    """With ``one_hot``, a seed scaled (mul, div, neg), reshaped and multiplied by a matrix
    (either side, either operand transposed) becomes gathers of the matrix: the same
    numbers as the dense program, on every backend, for full and partial blocks."""
    from jvpvjp.primitives.linalg import matmul
    a = rng.normal(size=((5, 3) if ta else (3, 5)) if side == "left" else
                   ((3, 5) if tb else (5, 3)))
    c = rng.uniform(1.0, 2.0, size=5)

    def f(a, c, s):
        u = -(s / c) * 2.0
        if side == "left":         # op(a) @ (a column)
            v = u.reshape((1, 5) if tb else (5, 1))
            return matmul(a, v, ta=ta, tb=tb)
        v = u.reshape((5, 1) if ta else (1, 5))    # (a row) @ op(a)
        return matmul(v, a, ta=ta, tb=tb)

    ol = make_oplist(f)(a, c, np.zeros(5))
    dense = batch_oplist(ol, [False, False, True], 4)
    gathered = batch_oplist(ol, [False, False, True], 4, one_hot=[2])
    names = [op.prim.name for op in gathered.ops]
    assert "matmul" not in names and "gather" in names and "argmax" in names
    for start in (0, 3):                              # a full block, then a partial one
        s = _one_hot_blocks((5,), 4, start)
        want, _ = eval_oplist(dense, [a, c, s])
        for backend in ("numpy", "numba"):
            got = compile_oplist(gathered, backend)(a, c, s)[0]
            np.testing.assert_array_equal(got, want[0])
        for k in range(min(4, 5 - start)):           # and each slice is f of its seed
            np.testing.assert_allclose(want[0][k], f(a, c, s[k]), rtol=1e-15)
