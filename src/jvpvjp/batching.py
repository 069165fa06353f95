"""Batching: an op list run on a stack of inputs at once (a leading batch axis).

``batch_oplist(ol, batched, size)`` returns an op list whose inputs marked in ``batched``
carry a leading axis of ``size`` (one slice per problem) and whose outputs all do. Each
primitive has a batching rule in `RULES`, written with ordinary primitive calls, so the
result is an op list like any other. Jacobians use it to push a block of basis vectors
through the linear part in one pass: a matrix-vector product per column becomes one
matrix-matrix product per block.

Rules take ``(args, batched, size, **params)``, where ``batched[i]`` says whether args[i]
has the batch axis, and return the batched output. Unbatched operands are never copied
per slice: NumPy's right-aligned broadcasting pairs them with every slice.
"""
from __future__ import annotations

import numpy as np

from .oplist import dead_code_elimination, gc_paused
from .primitives import REGISTRY, broadcast_shapes
from .tracing import Builder, bind


class NotBatchable(Exception):
    """An op list with an op that has no batching rule for its operands."""


def _item_shape(x, b):
    return tuple(x.shape[1:]) if b else tuple(np.shape(x))


def _with_rank(x, b, rank):
    """A batched x of item rank r as (size, 1, ..., 1, *item) of item rank ``rank``."""
    from .primitives.shape import reshape
    item = _item_shape(x, b)
    if not b or len(item) == rank:
        return x
    return reshape(x, shape=(x.shape[0],) + (1,) * (rank - len(item)) + item)


def _broadcast_batch(x, b, size):
    from .primitives.shape import broadcast_to
    return x if b else broadcast_to(x, shape=(size,) + tuple(np.shape(x)))


def _elementwise(prim):
    def rule(args, batched, size, **params):
        rank = len(broadcast_shapes(*[_item_shape(x, b) for x, b in zip(args, batched)]))
        return bind(prim, *[_with_rank(x, b, rank) for x, b in zip(args, batched)], **params)
    return rule


def _reduction(prim):
    def rule(args, batched, size, axes):
        return bind(prim, args[0], axes=tuple(a + 1 for a in axes))
    return rule


def _reshape(args, batched, size, shape):
    from .primitives.shape import reshape
    return reshape(args[0], shape=(size,) + tuple(shape))


def _broadcast_to(args, batched, size, shape):
    from .primitives.shape import broadcast_to
    x = _with_rank(args[0], True, len(shape))
    return broadcast_to(x, shape=(size,) + tuple(shape))


def _transpose(args, batched, size, perm):
    from .primitives.shape import transpose
    return transpose(args[0], perm=(0,) + tuple(p + 1 for p in perm))


def _concatenate(args, batched, size, axis):
    from .primitives.shape import concatenate
    return concatenate(*[_broadcast_batch(x, b, size) for x, b in zip(args, batched)],
                       axis=axis + 1)


def _positions(idx, item_size, size):
    """Flat positions of ``idx`` in every slice of a (size, item...) array."""
    if not isinstance(idx, np.ndarray):
        raise NotBatchable("gather/scatter with traced positions")
    offsets = (np.arange(size, dtype=idx.dtype) * item_size).reshape((size,) + (1,) * idx.ndim)
    return idx[None] + offsets


def _gather(args, batched, size):
    from .primitives.shape import gather
    x, idx = args
    if batched[1]:
        raise NotBatchable("gather with batched positions")
    return gather(x, _positions(idx, int(np.prod(x.shape[1:], dtype=np.int64)), size))


def _scatter_add(args, batched, size, shape):
    from .primitives.shape import scatter_add
    ct, idx = args
    if batched[1]:
        raise NotBatchable("scatter_add with batched positions")
    ct = _broadcast_batch(ct, batched[0], size)
    return scatter_add(ct, _positions(idx, int(np.prod(shape, dtype=np.int64)), size),
                       shape=(size,) + tuple(shape))


def _matmul(args, batched, size, ta=False, tb=False):
    from .primitives.linalg import matmul
    from .primitives.shape import reshape, transpose
    a, b = args
    ba, bb = batched
    if ba and bb:
        return matmul(a, b, ta=ta, tb=tb)
    item_a, item_b = _item_shape(a, ba), _item_shape(b, bb)
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
            vecs = reshape(b, shape=(size, b.shape[1] * b.shape[2]))
            p = matmul(a, vecs, ta=ta, tb=True)               # (m, size)
            return reshape(transpose(p, perm=(1, 0)), shape=(size, m, 1))
        cols = transpose(b, perm=(2, 0, 1) if tb else (1, 0, 2))   # (k, size, n)
        k = cols.shape[0]
        p = matmul(a, reshape(cols, shape=(k, size * n)), ta=ta)     # (m, size * n)
        return transpose(reshape(p, shape=(m, size, n)), perm=(1, 0, 2))
    return matmul(_broadcast_batch(a, ba, size), _broadcast_batch(b, bb, size), ta=ta, tb=tb)


def _identity(args, batched, size):
    return bind(REGISTRY["stop_gradient"], args[0])


_NOT_ELEMENTWISE = {"reduce_sum": None, "reduce_max": None, "reduce_min": None,
                    "reduce_prod": None, "reshape": _reshape, "broadcast_to": _broadcast_to,
                    "transpose": _transpose, "concatenate": _concatenate, "gather": _gather,
                    "scatter_add": _scatter_add, "matmul": _matmul,
                    "stop_gradient": _identity}


def _rules():
    rules = {}
    for name, prim in REGISTRY.items():
        if name.startswith("reduce_"):
            rules[name] = _reduction(prim)
        elif name in _NOT_ELEMENTWISE:
            rules[name] = _NOT_ELEMENTWISE[name]
        else:       # elementwise, where and convert: broadcasting does the work
            rules[name] = _elementwise(prim)
    return rules


RULES = {}


@gc_paused
def batch_oplist(ol, batched, size):
    """``ol`` over stacks of ``size`` inputs where ``batched[i]``; every output batched.
    Raises `NotBatchable` when an op has no rule for its operands."""
    if not RULES:
        RULES.update(_rules())
    from .transforms import _finish
    with Builder(concrete=False) as bld:
        env, is_b = dict(ol.consts), {}
        for v, b in zip(ol.invars, batched):
            env[v] = bld.new_input(aval=(((size,) + v.shape) if b else v.shape, v.dtype))
            is_b[v] = b
        for op in ol.ops:
            flags = tuple(is_b.get(v, False) for v in op.invars)
            args = [env[v] for v in op.invars]
            if any(flags):
                rule = RULES.get(op.prim.name)
                if rule is None:
                    raise NotBatchable(f"no batching rule for {op.prim.name}")
                env[op.outvar] = rule(args, flags, size, **op.params)
                is_b[op.outvar] = True
            else:
                env[op.outvar] = bind(op.prim, *args, **op.params)
                is_b[op.outvar] = False
        outs = [_broadcast_batch(env[v], is_b.get(v, False), size) for v in ol.outvars]
        return dead_code_elimination(_finish(bld, ol, env, outs))
