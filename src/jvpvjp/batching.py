"""Batching: an op list run on a stack of inputs at once (a leading batch axis).

``batch_oplist(ol, batched, size)`` returns an op list whose inputs marked in ``batched``
carry a leading axis of ``size`` (one slice per problem) and whose outputs all do. Each
primitive has a batching rule in `RULES`, written with ordinary primitive calls, so the
result is an op list like any other. Jacobians use it to push a block of basis vectors
through the linear part in one pass: a matrix-vector product per column becomes one
matrix-matrix product per block.

Each primitive's ``batch_rule(args, batched, size, **params)`` sits with its other rules
(``batched[i]`` says whether args[i] has the batch axis). Unbatched operands are never
copied per slice where broadcasting can pair them with every slice.
"""
from __future__ import annotations

import numpy as np

from .oplist import dead_code_elimination, gc_paused
from .primitives import NotBatchable, batch_all
from .tracing import Builder, bind

__all__ = ["batch_oplist", "NotBatchable", "OneHot"]


@gc_paused
def batch_oplist(ol, batched, size, one_hot=()):
    """``ol`` over stacks of ``size`` inputs where ``batched[i]``; every output batched.
    Raises `NotBatchable` when an op has no rule for its operands.

    Inputs whose position is in ``one_hot`` are promised to hold, in each slice, at most
    one non-zero element (a block of Jacobian seeds: rows of the identity, or zero).
    Products and scalings of such a value are then gathers of the other operand (`OneHot`
    and each primitive's ``one_hot_rule``): a block of basis vectors through ``A @ v``
    costs a copy of columns of ``A``, not a matrix product."""
    from .transforms import _finish
    with Builder(concrete=False) as bld:
        env, is_b = dict(ol.consts), {}
        for k, (v, b) in enumerate(zip(ol.invars, batched)):
            env[v] = bld.new_input(aval=(((size,) + v.shape) if b else v.shape, v.dtype))
            is_b[v] = b
            if k in one_hot and b and v.dtype.kind == "f" and v.size > 1:
                env[v] = OneHot.seed(env[v], v.shape, size)
        for op in ol.ops:
            flags = tuple(is_b.get(v, False) for v in op.invars)
            args = [env[v] for v in op.invars]
            if any(isinstance(a, OneHot) for a in args):
                out = _one_hot_rule(op, args, flags, size)
                if out is not None:
                    env[op.outvar] = out
                    is_b[op.outvar] = True
                    continue
                args = [a.value() if isinstance(a, OneHot) else a for a in args]
            if any(flags):
                rule = op.prim.batch_rule
                if rule is None:
                    raise NotBatchable(f"no batching rule for {op.prim.name}")
                out = rule(args, flags, size, **op.params)
                if tuple(out.shape) != (size,) + op.outvar.shape or \
                        out.dtype != op.outvar.dtype:
                    raise AssertionError(
                        f"internal error: batching {op.prim.name} gave {out.shape} "
                        f"{out.dtype}, expected {(size,) + op.outvar.shape} "
                        f"{op.outvar.dtype}")
                env[op.outvar] = out
                is_b[op.outvar] = True
            else:
                env[op.outvar] = bind(op.prim, *args, **op.params)
                is_b[op.outvar] = False
        for v in list(ol.outvars) + [g.var for g in ol.guards]:    # what leaves, built
            if isinstance(env.get(v), OneHot):
                env[v] = env[v].value()
        outs = [batch_all(env[v], is_b.get(v, False), size) for v in ol.outvars]
        return dead_code_elimination(_finish(bld, ol, env, outs))


class OneHot:
    """A batched value whose slice ``b`` (of ``shape`` and ``dtype``) is zero but for
    ``scale[b]`` at flat position ``idx[b]`` (``scale[b]`` may be 0: a slice that is all
    zero). ``value()`` builds it densely, by the plain batching rules of the ops that made
    it, so a value that meets an op without a ``one_hot_rule`` is what it always was."""
    __slots__ = ("shape", "dtype", "_parts", "_make", "_value")

    def __init__(self, shape, dtype, parts, make):
        self.shape, self.dtype = tuple(shape), np.dtype(dtype)
        self._parts, self._make, self._value = parts, make, None

    @classmethod
    def seed(cls, x, shape, size):
        """The seed input ``x`` itself; its hot positions and their values are found (by an
        argmax over each slice) when first needed."""
        from .primitives.reductions import argmax
        from .primitives.shape import gather, reshape
        n = int(np.prod(shape, dtype=np.int64))

        def parts():
            idx = argmax(reshape(x, shape=(size, n)), axis=1)
            return idx, gather(x, idx + np.arange(size, dtype=np.int64) * n, bounded=True)
        return cls(shape, x.dtype, _once(parts), lambda: x)

    def parts(self):
        """(idx, scale): tracers of shape (size,), integer positions and values."""
        return self._parts()

    def value(self):
        if self._value is None:
            self._value = self._make()
        return self._value


def _once(fn):
    memo = []

    def once():
        if not memo:
            memo.append(fn())
        return memo[0]
    return once


def _one_hot_rule(op, args, flags, size):
    """``op``'s batched result when one operand is a `OneHot` and the others are not
    batched, by the primitive's ``one_hot_rule``, or None (no rule, or it declines).

    A rule returns a dense batched value, or ``(shape, scale_fn)`` for a result that is
    one-hot too: ``scale_fn(idx, scale)`` gives its hot values, and ``op``'s batching rule
    on the dense operands builds it when it is needed whole."""
    hot = [k for k, a in enumerate(args) if isinstance(a, OneHot)]
    rule = op.prim.one_hot_rule
    if rule is None or len(hot) != 1 or any(f for k, f in enumerate(flags) if k != hot[0]):
        return None
    h = args[hot[0]]
    out = rule(h, hot[0], args, op)
    if not isinstance(out, tuple):
        return out
    shape, scale_fn = out

    def parts():
        idx, scale = h.parts()
        return idx, scale_fn(idx, scale)

    def make():
        dense = [a.value() if isinstance(a, OneHot) else a for a in args]
        return op.prim.batch_rule(dense, flags, size, **op.params)
    return OneHot(shape, op.outvar.dtype, _once(parts), make)
