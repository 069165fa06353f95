"""Transforms from op lists to op lists: evaluation/inlining, JVP, VJP, splitting.

Each transform replays the op list through `bind` on an abstract `Builder`, calling the
primitives' rules, which themselves emit ops. The result is again an op list, so the
transforms compose (a derivative program can be differentiated again, or inlined into an
enclosing trace). Ops whose inputs are all constants fold to constants on the way.
"""
from __future__ import annotations

import numpy as np

from .oplist import Guard, OpList, dead_code_elimination, gc_paused
from .primitives import zeros
from .tracing import Builder, Tracer, bind


def eval_oplist(ol, args):
    """Evaluate ``ol`` on ``args``: NumPy when they are arrays, or record into the
    enclosing trace when some are tracers (inlining). Returns (outputs, guard values)."""
    env = dict(ol.consts)
    env.update(zip(ol.invars, args))
    with np.errstate(all="ignore"):
        for op in ol.ops:
            env[op.outvar] = bind(op.prim, *[env[v] for v in op.invars], **op.params)
    return [env[v] for v in ol.outvars], [env[g.var] for g in ol.guards]


def inline(ol, args):
    """Record ``ol`` applied to ``args`` into the enclosing trace, keeping its guards."""
    outs, guard_values = eval_oplist(ol, args)
    for g, val in zip(ol.guards, guard_values):
        if isinstance(val, Tracer) and val.value is not None:
            val.builder.add_guard(val, g.kind, None)
            val.builder.guards[-1].where = g.where      # the user's line, kept
    return outs


def _is_float(v):
    return np.dtype(v.dtype).kind in "fc"


def _finish(b, ol, env, outs):
    new = b.finish(outs)
    for g in ol.guards:
        val = env[g.var]
        if isinstance(val, Tracer):
            new.guards.append(Guard(val.node, g.value, g.kind, g.where))
    return dead_code_elimination(new)


def _zeros_for(v):
    return zeros(v.shape, v.dtype)


@gc_paused
def jvp_oplist(ol, has_tangent):
    """Op list ``(primals..., tangents...) -> (outputs..., output tangents...)``.

    ``has_tangent[i]`` says whether input i gets a tangent input (floats only)."""
    with Builder(concrete=False) as b:
        primals = [b.new_input(aval=v.aval) for v in ol.invars]
        env = dict(ol.consts)
        env.update(zip(ol.invars, primals))
        tenv = {v: b.new_input(aval=v.aval)
                for v, m in zip(ol.invars, has_tangent) if m and _is_float(v)}
        for op in ol.ops:
            ins = [env[v] for v in op.invars]
            out = bind(op.prim, *ins, **op.params)
            env[op.outvar] = out
            ts = [tenv.get(v) for v in op.invars]
            if any(t is not None for t in ts) and op.prim.differentiable and _is_float(op.outvar):
                t = op.prim.jvp_rule(tuple(ins), tuple(ts), out, **op.params)
                if t is not None:
                    tenv[op.outvar] = t
        outs = [env[v] for v in ol.outvars]
        touts = [tenv[v] if v in tenv else _zeros_for(v) for v in ol.outvars]
        return _finish(b, ol, env, outs + touts)


def _differentiable_vars(ol, wrt):
    diff = {v for v, w in zip(ol.invars, wrt) if w and _is_float(v)}
    for op in ol.ops:
        if op.prim.differentiable and _is_float(op.outvar) and any(v in diff for v in op.invars):
            diff.add(op.outvar)
    return diff


class VJPProgram:
    """A reverse-mode program and how to split it into forward and backward kernels."""

    def __init__(self, oplist, n_primals, n_outs, n_grads):
        self.oplist = oplist
        self.n_primals, self.n_outs, self.n_grads = n_primals, n_outs, n_grads

    def split(self):
        """(forward, backward): forward maps primals to (outputs, residuals); backward maps
        (residuals, output cotangents) to input cotangents. Guards go with forward, and so
        does every op that does not depend on the cotangents (`partial_eval`)."""
        known = [True] * self.n_primals + [False] * (len(self.oplist.invars) - self.n_primals)
        return partial_eval(self.oplist, known, self.n_outs)


@gc_paused
def vjp_oplist(ol, wrt, n_seeded=None, initial=None):
    """Reverse mode: op list ``(primals..., output cotangents...) -> (outputs..., input
    cotangents for each i with wrt[i]...)``, as a `VJPProgram`. Only the first
    ``n_seeded`` outputs (default: all) take a cotangent; the rest (aux) pass through.

    ``initial[i]`` (for inputs with wrt[i]) adds an input after the cotangents: the
    cotangent input i has accumulated before, which this program's contributions are
    added to in order (a primitive's `vjp_accumulate` rule sums as the inlined program
    would, to the bit)."""
    n_seeded = len(ol.outvars) if n_seeded is None else n_seeded
    diff = _differentiable_vars(ol, wrt)
    with Builder(concrete=False) as b:
        primals = [b.new_input(aval=v.aval) for v in ol.invars]
        env = dict(ol.consts)
        env.update(zip(ol.invars, primals))
        for op in ol.ops:
            env[op.outvar] = bind(op.prim, *[env[v] for v in op.invars], **op.params)
        cts_in = [b.new_input(aval=v.aval) for v in ol.outvars[:n_seeded]]
        ct_env = {}

        def accumulate(v, ct):
            ct_env[v] = ct if v not in ct_env else ct_env[v] + ct

        if initial is not None:
            for v, w, init in zip(ol.invars, wrt, initial):
                if w and init:
                    ct_env[v] = b.new_input(aval=v.aval)
        for v, ct in zip(ol.outvars, cts_in):
            if v in diff:
                accumulate(v, ct)
        for op in reversed(ol.ops):
            ct = ct_env.pop(op.outvar, None)
            if ct is None:
                continue
            needs = tuple(v in diff for v in op.invars)
            primals = tuple(env[v] for v in op.invars)
            if op.prim.vjp_accumulate is not None and len(set(op.invars)) == len(op.invars):
                totals = op.prim.vjp_accumulate(
                    ct, primals, env[op.outvar], needs,
                    tuple(ct_env.get(v) if need else None for v, need in zip(op.invars, needs)),
                    **op.params)
                for v, c, need in zip(op.invars, totals, needs):
                    if need and c is not None:
                        ct_env[v] = c
                continue
            cts = op.prim.vjp_rule(ct, primals, env[op.outvar], needs, **op.params)
            for v, c, need in zip(op.invars, cts, needs):
                if need and c is not None:
                    accumulate(v, c)
        wrt_vars = [v for v, w in zip(ol.invars, wrt) if w]
        grads = [ct_env[v] if v in ct_env else _zeros_for(v) for v in wrt_vars]
        outs = [env[v] for v in ol.outvars]
        new = _finish(b, ol, env, outs + grads)
    return VJPProgram(new, len(ol.invars), len(ol.outvars), len(wrt_vars))


@gc_paused
def partial_eval(ol, known, n_known_outs):
    """Split ``ol`` by what its inputs depend on, as JAX's partial evaluation does.

    ``known[i]`` says whether input i is available first (primals) or later (tangents,
    cotangents). Returns ``(first, second)``: ``first`` maps the known inputs to the first
    ``n_known_outs`` outputs followed by the residuals (known values the rest reads), and
    keeps the guards; ``second`` maps ``(residuals..., unknown inputs...)`` to the remaining
    outputs. An op runs in ``first`` exactly when all its inputs are known, so running
    ``second`` many times (one seed per Jacobian column) repeats no work that is the same
    for every seed."""
    unknown = {v for v, k in zip(ol.invars, known) if not k}
    first_ops, second_ops = [], []
    for op in ol.ops:
        if any(v in unknown for v in op.invars):
            unknown.add(op.outvar)
            second_ops.append(op)
        else:
            first_ops.append(op)
    known_outs, later_outs = ol.outvars[:n_known_outs], ol.outvars[n_known_outs:]
    for v in known_outs:
        if v in unknown:
            raise ValueError("partial_eval: a known output depends on an unknown input")
    residuals, seen = [], set()
    for v in [v for op in second_ops for v in op.invars] + list(later_outs):
        if v not in unknown and v not in ol.consts and v not in seen:
            seen.add(v)
            residuals.append(v)
    first = dead_code_elimination(OpList(
        [v for v, k in zip(ol.invars, known) if k], list(known_outs) + residuals,
        first_ops, dict(ol.consts), list(ol.guards)))
    second = dead_code_elimination(OpList(
        residuals + [v for v, k in zip(ol.invars, known) if not k], list(later_outs),
        second_ops, dict(ol.consts), []))
    return first, second
