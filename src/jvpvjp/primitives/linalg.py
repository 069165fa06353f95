"""Matrix multiplication: one strict primitive, (..., m, k) @ (..., k, n) with equal batch
dimensions. `numpy_api.matmul` reduces NumPy's 1-D and broadcasting cases to it, so the
rules stay four lines. Always lowered to BLAS."""
from __future__ import annotations

import numpy as np

from . import Case, Primitive


def _abstract(a, b):
    (sa, da), (sb, db) = a, b
    if da != db or da.kind != "f":
        raise TypeError(f"matmul needs two floating arrays of one dtype, got {da} and {db}")
    if len(sa) < 2 or len(sa) != len(sb) or sa[:-2] != sb[:-2] or sa[-1] != sb[-2]:
        raise ValueError(f"matmul: shapes {sa} and {sb} are not aligned")
    return sa[:-1] + sb[-1:], da


def _swap(x):
    from .shape import transpose
    perm = tuple(range(x.ndim - 2)) + (x.ndim - 1, x.ndim - 2)
    return transpose(x, perm=perm)


def _jvp(primals, tangents, out):
    (a, b), (ta, tb) = primals, tangents
    terms = ([matmul(ta, b)] if ta is not None else []) + \
            ([matmul(a, tb)] if tb is not None else [])
    if not terms:
        return None
    return terms[0] if len(terms) == 1 else terms[0] + terms[1]


def _vjp(ct, primals, out, needs):
    a, b = primals
    return (matmul(ct, _swap(b)) if needs[0] else None,
            matmul(_swap(a), ct) if needs[1] else None)


def _lower(args, op):
    a, b = args
    if op.outvar.ndim == 2:
        return f"({a} @ {b})"
    (sa, _), (sb, _) = op.invars[0].aval, op.invars[1].aval
    batch = int(np.prod(sa[:-2], dtype=np.int64))
    return (f"_batched_matmul(_flat({a}).reshape(({batch}, {sa[-2]}, {sa[-1]})), "
            f"_flat({b}).reshape(({batch}, {sb[-2]}, {sb[-1]})))"
            f".reshape({op.outvar.shape!r})")


matmul = Primitive("matmul", np.matmul, _abstract, _jvp, _vjp, _lower, contiguous_args=True,
                   tests=[Case(np.matmul, ((3, 4), (4, 2)), ((-2, 2), (-2, 2)), name="mm"),
                          Case(np.matmul, ((2, 3, 4), (2, 4, 2)), ((-2, 2), (-2, 2)),
                               name="batched"),
                          Case(np.matmul, ((4,), (4, 3)), ((-2, 2), (-2, 2)), name="vec_mat"),
                          Case(np.matmul, ((4,), (4,)), ((-2, 2), (-2, 2)), name="dot"),
                          Case(np.matmul, ((2, 1, 3, 4), (5, 4, 2)), ((-2, 2), (-2, 2)),
                               name="broadcast_batch"),
                          Case(lambda a, b: np.dot(a, b), ((3, 4), (4,)),
                               ((-2, 2), (-2, 2)), name="np_dot")])
