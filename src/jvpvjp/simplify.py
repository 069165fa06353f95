"""Algebraic rewrites of an op list that save work before it is compiled.

The one rewrite so far moves a sum over a free axis of a matrix product inside it:
``sum(A @ B, axis=-1) = A @ sum(B, axis=-1)`` and ``sum(A @ B, axis=-2) = sum(A, axis=-2)
@ B``. Reverse mode produces this shape whenever a broadcast operand of a product gets its
cotangent (``A @ (X - mu[:, None])`` summed back to ``mu``'s shape): rewritten, the O(d p n)
product becomes an O(p n) sum and an O(d p) product. The compiled backends apply it; the
NumPy interpreter runs op lists as they are, so tests comparing the two check it.
"""
from __future__ import annotations

from collections import Counter

from .oplist import dead_code_elimination
from .tracing import Builder, bind


def _sum_of_products(ol):
    """{id(reduce_sum op): (matmul op, summed axis is the last)} for rewritable pairs."""
    producer = {op.outvar: op for op in ol.ops}
    uses = Counter(v for op in ol.ops for v in op.invars)
    uses.update(ol.outvars)
    uses.update(g.var for g in ol.guards)
    found = {}
    for op in ol.ops:
        if op.prim.name != "reduce_sum" or len(op.params["axes"]) != 1:
            continue
        m = producer.get(op.invars[0])
        if m is None or m.prim.name != "matmul" or uses[m.outvar] != 1:
            continue
        r = m.outvar.ndim
        axis = op.params["axes"][0] % r
        if axis in (r - 1, r - 2):
            found[id(op)] = (m, axis == r - 1)
    return found


def _rewrite(a, b, ta, tb, last):
    from .primitives.linalg import matmul
    from .primitives.reductions import reduce_sum
    from .primitives.shape import reshape
    if last:        # sum over the columns of op(a) @ op(b): sum op(b)'s columns first
        s = reduce_sum(b, axes=(b.ndim - 2 if tb else b.ndim - 1,))
        p = matmul(a, reshape(s, shape=s.shape + (1,)), ta=ta, tb=False)
        return reshape(p, shape=p.shape[:-1])
    s = reduce_sum(a, axes=(a.ndim - 1 if ta else a.ndim - 2,))
    p = matmul(reshape(s, shape=s.shape[:-1] + (1, s.shape[-1])), b, ta=False, tb=tb)
    return reshape(p, shape=p.shape[:-2] + p.shape[-1:])


def simplify(ol):
    """``ol`` with the rewrites above applied (the same op list when none applies)."""
    found = _sum_of_products(ol)
    if not found:
        return ol
    from .transforms import _finish
    with Builder(concrete=False) as b:
        env = dict(ol.consts)
        env.update(zip(ol.invars, [b.new_input(aval=v.aval) for v in ol.invars]))
        for op in ol.ops:
            hit = found.get(id(op))
            if hit is not None:
                m, last = hit
                a, bb = (env[v] for v in m.invars)
                env[op.outvar] = _rewrite(a, bb, m.params.get("ta", False),
                                          m.params.get("tb", False), last)
            else:
                env[op.outvar] = bind(op.prim, *[env[v] for v in op.invars], **op.params)
        return dead_code_elimination(_finish(b, ol, env, [env[v] for v in ol.outvars]))
