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

from .oplist import dead_code_elimination, gc_paused
from .primitives import NotBatchable, batch_all
from .tracing import Builder, bind

__all__ = ["batch_oplist", "NotBatchable"]


@gc_paused
def batch_oplist(ol, batched, size):
    """``ol`` over stacks of ``size`` inputs where ``batched[i]``; every output batched.
    Raises `NotBatchable` when an op has no rule for its operands."""
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
        outs = [batch_all(env[v], is_b.get(v, False), size) for v in ol.outvars]
        return dead_code_elimination(_finish(bld, ol, env, outs))
