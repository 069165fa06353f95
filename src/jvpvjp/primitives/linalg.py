"""Matrix multiplication: one strict primitive, op(a) @ op(b) for (..., m, k) @ (..., k, n)
with equal batch dimensions, where op transposes the last two axes when the flag ``ta`` /
``tb`` is set (as BLAS's gemm does). `numpy_api.matmul` reduces NumPy's 1-D and
broadcasting cases to it. The flags let reverse mode multiply by transposes without
materialising them: a transposed operand costs nothing in BLAS, a transposed copy does."""
from __future__ import annotations

import numpy as np

from . import Case, Primitive, batch_all, item_shape


def _core(shape, t):
    return (shape[-1], shape[-2]) if t else (shape[-2], shape[-1])


def _abstract(a, b, ta=False, tb=False):
    (sa, da), (sb, db) = a, b
    if da != db or da.kind != "f":
        raise TypeError(f"matmul needs two floating arrays of one dtype, got {da} and {db}")
    if len(sa) < 2 or len(sa) != len(sb) or sa[:-2] != sb[:-2] or \
            _core(sa, ta)[1] != _core(sb, tb)[0]:
        raise ValueError(f"matmul: shapes {sa} and {sb} are not aligned")
    return sa[:-2] + (_core(sa, ta)[0], _core(sb, tb)[1]), da


def _swapped(x, t):
    return np.swapaxes(x, -1, -2) if t else x


def _impl(a, b, ta=False, tb=False):
    return np.matmul(_swapped(np.asarray(a), ta), _swapped(np.asarray(b), tb))


def _jvp(primals, tangents, out, ta=False, tb=False):
    (a, b), (da, db) = primals, tangents
    terms = ([matmul(da, b, ta=ta, tb=tb)] if da is not None else []) + \
            ([matmul(a, db, ta=ta, tb=tb)] if db is not None else [])
    if not terms:
        return None
    return terms[0] if len(terms) == 1 else terms[0] + terms[1]


def _vjp(ct, primals, out, needs, ta=False, tb=False):
    # out = A @ B with A = op(a), B = op(b): ct_A = ct @ B^T, ct_B = A^T @ ct, and a
    # transposed operand takes the transpose of its cotangent.
    a, b = primals
    ca = cb = None
    if needs[0]:
        ca = matmul(b, ct, ta=tb, tb=True) if ta else matmul(ct, b, tb=not tb)
    if needs[1]:
        cb = matmul(ct, a, ta=True, tb=ta) if tb else matmul(a, ct, ta=not ta)
    return (ca, cb)


def _lower(args, op):
    a, b = args
    ta, tb = op.params.get("ta", False), op.params.get("tb", False)
    if op.outvar.ndim == 2:
        return f"({a}{'.T' if ta else ''} @ {b}{'.T' if tb else ''})"
    (sa, _), (sb, _) = op.invars[0].aval, op.invars[1].aval
    batch = int(np.prod(sa[:-2], dtype=np.int64))
    return (f"_batched_matmul_{'t' if ta else 'n'}{'t' if tb else 'n'}("
            f"_flat({a}).reshape(({batch}, {sa[-2]}, {sa[-1]})), "
            f"_flat({b}).reshape(({batch}, {sb[-2]}, {sb[-1]})))"
            f".reshape({op.outvar.shape!r})")


def _batching(args, batched, size, ta=False, tb=False):
    from .shape import reshape, transpose
    a, b = args
    ba, bb = batched
    if ba and bb:      # equal batch dimensions, as the primitive needs
        return matmul(a, b, ta=ta, tb=tb)
    item_a, item_b = item_shape(a, ba), item_shape(b, bb)
    if ba and len(item_a) == 2 and not ta:
        # stack the slices' rows: one (size * m, k) @ (k, n) product
        m, k = item_a
        p = matmul(reshape(a, shape=(size * m, k)), b, tb=tb)
        return reshape(p, shape=(size, m, p.shape[-1]))
    if bb and len(item_b) == 2:
        n = item_b[0] if tb else item_b[1]
        m = item_a[1] if ta else item_a[0]
        if n == 1:
            # matrix-vector products side by side: one (m, k) @ (k, size) product
            vecs = reshape(b, shape=(size, item_b[0] * item_b[1]))
            p = matmul(a, vecs, ta=ta, tb=True)                  # (m, size)
            return reshape(transpose(p, perm=(1, 0)), shape=(size, m, 1))
        cols = transpose(b, perm=(2, 0, 1) if tb else (1, 0, 2))     # (k, size, n)
        k = cols.shape[0]
        p = matmul(a, reshape(cols, shape=(k, size * n)), ta=ta)       # (m, size * n)
        return transpose(reshape(p, shape=(m, size, n)), perm=(1, 0, 2))
    return matmul(batch_all(a, ba, size), batch_all(b, bb, size), ta=ta, tb=tb)


matmul = Primitive("matmul", _impl, _abstract, _jvp, _vjp, _lower, contiguous_args=True,
                   kind="product",
                   batch_rule=_batching,
                   tests=[Case(np.matmul, ((3, 4), (4, 2)), ((-2, 2), (-2, 2)), name="mm"),
                          Case(np.matmul, ((2, 3, 4), (2, 4, 2)), ((-2, 2), (-2, 2)),
                               name="batched"),
                          Case(np.matmul, ((4,), (4, 3)), ((-2, 2), (-2, 2)), name="vec_mat"),
                          Case(np.matmul, ((4,), (4,)), ((-2, 2), (-2, 2)), name="dot"),
                          Case(np.matmul, ((2, 1, 3, 4), (5, 4, 2)), ((-2, 2), (-2, 2)),
                               name="broadcast_batch"),
                          Case(lambda a, b: np.dot(a, b), ((3, 4), (4,)),
                               ((-2, 2), (-2, 2)), name="np_dot")])
