"""Algebraic rewrites of an op list that save work before it is compiled.

Exact scalar identities first, the kind reverse mode leaves behind (``sub``'s cotangent is
negated and then scaled; seeds multiply by 1): ``x * 1 = x``, ``x / 1 = x``,
``x * -1 = -x``, ``-(-x) = x`` and ``(-x) * c = x * (-c)``; and common subexpressions
(derivative rules recompute ``cos(x)`` or ``tanh(x)`` the primal already has). Each gives
the same bits as the original, so no result changes. One more moves a scalar factor out
of a sum, ``sum(c * a) = c * sum(a)`` (one rounding less; often the sum exists already:
the softmax's ``sum(exp(x - m) / s)`` in reverse mode of logsumexp is ``sum(exp(x - m))
/ s``, which saves a pass over x).

Then a sum over a free axis of a matrix product moves inside it:
``sum(A @ B, axis=-1) = A @ sum(B, axis=-1)`` and ``sum(A @ B, axis=-2) = sum(A, axis=-2)
@ B``. Reverse mode produces this shape whenever a broadcast operand of a product gets its
cotangent (``A @ (X - mu[:, None])`` summed back to ``mu``'s shape): rewritten, the O(d p n)
product becomes an O(p n) sum and an O(d p) product. The compiled backends apply it; the
NumPy interpreter runs op lists as they are, so tests comparing the two check it.
"""
from __future__ import annotations

from collections import Counter

import numpy as np

from .oplist import Guard, Op, OpList, Var, dead_code_elimination, gc_paused
from .primitives import broadcast_shapes
from .tracing import Builder, bind


def _uses(ol):
    """How many times each value is read: by ops, as an output, by guards."""
    uses = Counter(v for op in ol.ops for v in op.invars)
    uses.update(ol.outvars)
    uses.update(g.var for g in ol.guards)
    return uses


def _sum_of_products(ol):
    """{id(reduce_sum op): (matmul op, summed axis is the last)} for rewritable pairs."""
    producer = {op.outvar: op for op in ol.ops}
    uses = _uses(ol)
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


def _scalar_const(ol_consts, v):
    """The value of a float scalar constant as a Python float, else None."""
    if v.shape != () or v.dtype.kind != "f":
        return None
    c = ol_consts.get(v)
    return None if c is None else float(c)


def _uniform(c):
    """The one value a real floating constant array repeats (bit for bit: -0.0 is not
    0.0, and NaNs match only the same NaN), as a 0-d array, else None."""
    if c is None or np.ndim(c) == 0 or np.asarray(c).dtype.kind != "f" or np.size(c) == 0:
        return None
    flat = np.ascontiguousarray(c).reshape(-1)
    if flat.dtype.itemsize not in (2, 4, 8):
        return None
    bits = flat.view(f"u{flat.dtype.itemsize}")
    if bits[-1] != bits[0] or bits[bits.size // 2] != bits[0]:
        return None                 # (most constants: no pass over a large one)
    return flat[0].copy().reshape(()) if (bits == bits[0]).all() else None


def _peephole(ol):
    """The exact scalar identities, applied by renaming values: no tracing."""
    consts = dict(ol.consts)
    alias, producer, computed, ops, changed = {}, {}, {}, [], False
    scalar_of = {}

    def one_element(v):
        """The 0-d value that ``v`` only repeats (v is a size-1 array or a broadcast of
        one), appending a reshape to () when needed; else None."""
        src = v
        while True:
            p = producer.get(src)
            if p is None or p.prim.name not in ("reshape", "broadcast_to", "stop_gradient") or \
                    p.invars[0].size != 1:
                break
            src = p.invars[0]
        if src.size != 1 or src is v and v.shape == ():
            return None
        if src.shape == ():
            return src
        if src not in scalar_of:
            scalar = Var((), src.dtype)
            if src in consts:           # a constant: a scalar constant (seen as one below)
                consts[scalar] = np.asarray(consts[src]).reshape(())
            else:
                scalar_op = Op(_prim("reshape"), (src,), scalar, {"shape": ()}, None)
                ops.append(scalar_op)
                producer[scalar] = scalar_op
            scalar_of[src] = scalar
        return scalar_of[src]

    for op in ol.ops:
        ins = tuple(alias.get(v, v) for v in op.invars)
        out, name = op.outvar, op.prim.name
        new = None
        if op.prim.broadcasting and out.size > 1 and len({v.dtype for v in ins}) == 1:
            # (one operand dtype: Numba would type a mixed scalar operand by value rules)
            # x + broadcast(c) with c one element: x + c, a scalar operand (no array
            # broadcast), when the other operands alone give the output's shape
            for k, v in enumerate(ins):
                uniform = _uniform(consts.get(v)) if v.shape != () else None
                if v.shape == () or v.size != 1 and producer.get(v) is None and uniform is None:
                    continue
                rest = [u.shape for j, u in enumerate(ins) if j != k]
                if not rest or broadcast_shapes(*rest) != out.shape:
                    continue
                if uniform is not None:     # a constant array of one value repeated
                    scalar = Var((), v.dtype)
                    consts[scalar] = uniform
                    ins = ins[:k] + (scalar,) + ins[k + 1:]
                    continue
                scalar = one_element(v)
                if scalar is not None:
                    ins = ins[:k] + (scalar,) + ins[k + 1:]
        if name in ("mul", "div") and out.dtype.kind == "f":
            for i in ((0, 1) if name == "mul" else (1,)):
                c, other = _scalar_const(consts, ins[i]), ins[1 - i]
                if c is None or other.shape != out.shape or other.dtype != out.dtype:
                    continue
                if c == 1.0:
                    alias[out] = other
                    break
                if name == "div":
                    break
                p = producer.get(other)
                if p is not None and p.prim.name == "neg":
                    if c == -1.0:
                        alias[out] = p.invars[0]
                    else:
                        k = Var((), ins[i].dtype)
                        consts[k] = np.asarray(-c, k.dtype)
                        new = Op(op.prim, (p.invars[0], k), out, {}, op.where)
                    break
                if c == -1.0:
                    new = Op(_prim("neg"), (other,), out, {}, op.where)
                    break
        elif name == "neg":
            p = producer.get(ins[0])
            if p is not None and p.prim.name == "neg":
                alias[out] = p.invars[0]
        elif name == "reduce_sum" and out.dtype.kind == "f":
            new = _scalar_out_of_sum(op, ins[0], producer, computed, ops)
        elif name == "gather" and not op.params.get("bounded") and ins[1] in consts:
            # constant positions all in range: read directly, no bounds check per element
            pos, size = np.asarray(consts[ins[1]]), ins[0].size
            if pos.size and -size <= pos.min() and pos.max() < size:
                new = Op(op.prim, ins, out, {**op.params, "bounded": True}, op.where)
        elif op.prim.identity:          # stop_gradient, custom rules: their value is x
            alias[out] = ins[0]
        elif op.prim.view_compose is not None:
            new = _view_of_view(op, ins[0], producer, alias)
        if out in alias:
            changed = True
            continue
        if new is None:
            new = op if ins == tuple(op.invars) else Op(op.prim, ins, out, op.params, op.where)
        key = _cse_key(new)
        if key is not None:             # the same op on the same values: computed once
            seen = computed.get(key)
            if seen is not None:
                alias[out] = seen
                changed = True
                continue
            computed[key] = out
        changed = changed or new is not op
        producer[out] = new
        ops.append(new)
    if not changed:
        return ol
    guards = [Guard(alias.get(g.var, g.var), g.value, g.kind, g.where) for g in ol.guards]
    return dead_code_elimination(OpList(list(ol.invars), [alias.get(v, v) for v in ol.outvars],
                                        ops, consts, guards))


def _view_of_view(op, x, producer, alias):
    """A view of a view of y as one view of y (a reshape of a reshape, a transpose of a
    transpose, a broadcast of a broadcast), and a view that changes nothing as its operand
    (recorded in ``alias``). The new op, or None for none."""
    out, params = op.outvar, op.params
    p = producer.get(x)
    if p is not None and p.prim is op.prim:
        params = op.prim.view_compose(p.params, op)
        x = p.invars[0]
    new = Op(op.prim, (x,), out, params, op.where)
    idx = [f"j{d}" for d in range(out.ndim)]
    if out.shape == x.shape and out.dtype == x.dtype and \
            op.prim.view_index is not None and op.prim.view_index(new, idx, {}) == idx:
        alias[out] = x
        return None
    return new if x is not op.invars[0] or params != op.params else None


def _scalar_out_of_sum(op, x, producer, computed, ops):
    """sum(c * a) as c * sum(a) for a scalar c (appending the sum, or reusing the same
    sum computed before), else None."""
    p = producer.get(x)
    if p is None or p.prim.name != "mul":
        return None
    for c, a in (p.invars, p.invars[::-1]):
        if c.shape == () and a.shape == x.shape and a.dtype == x.dtype:
            total = Var(op.outvar.shape, op.outvar.dtype)
            sum_op = Op(op.prim, (a,), total, op.params, op.where)
            key = _cse_key(sum_op)
            seen = computed.get(key)
            if seen is None:
                computed[key] = total
                producer[total] = sum_op
                ops.append(sum_op)
            else:
                total = seen
            return Op(p.prim, (c, total), op.outvar, {}, op.where)
    return None


def _cse_key(op):
    ins = op.invars
    if op.prim.commutative:
        ins = tuple(sorted(ins, key=lambda v: v.id))
    try:
        key = (op.prim, ins, tuple(sorted(op.params.items())))
        hash(key)
    except TypeError:     # an array-valued parameter: not worth comparing
        return None
    return key


def _prim(name):
    from .primitives import REGISTRY
    return REGISTRY[name]


def _merge_scatters(ol):
    """Sums of scatters into one: ``scatter(a, p) + scatter(b, q)`` is ``scatter([a, b],
    [p, q])`` for constant positions. Reverse mode leaves a chain of them wherever code
    reads an array element by element (``x[i] * x[i + 1]`` in a loop): one cotangent
    array the size of ``x`` per element read, each made of zeros and added to the running
    sum, O(n) work per read. Merged, the chain is one scatter of all the reads' values.

    Only chains are merged, sums whose every step adds one scatter of at most one value
    per position, each value used once: the scatter then adds each position's values in
    the order the chain did, so the result is the same to the bit (the zeros a scatter
    starts from add nothing; a tree of sums, or a step adding two values to a position
    already summed, would round in another order)."""
    producer = {op.outvar: op for op in ol.ops}
    uses = _uses(ol)

    def leaf(v):
        p = producer.get(v)
        if p is None or p.prim.name != "scatter_add" or p.invars[0].dtype != v.dtype or \
                p.invars[1] not in ol.consts:
            return None
        return [(p.invars[0], ol.consts[p.invars[1]], p.where)]

    def once(part):
        """Whether a one-scatter part adds at most one value to each position (only the
        first scatter of a merged chain may add several: its own sums come first)."""
        pos = np.asarray(part[0][1]).reshape(-1)
        return np.unique(pos).size == pos.size

    chains = {}                          # add result -> its scatters, in summing order
    for op in ol.ops:
        out = op.outvar
        if op.prim.name != "add" or out.dtype.kind not in "fc" or out.ndim == 0:
            continue
        parts = []
        for v in op.invars:          # (add broadcasts: only parts of the result's shape)
            ok = uses[v] == 1 and v.shape == out.shape and v.dtype == out.dtype
            parts.append((chains.get(v) or leaf(v)) if ok else None)
        if parts[0] is None or parts[1] is None:
            continue
        if len(parts[1]) == 1 and once(parts[1]):
            first, last = parts
        elif len(parts[0]) == 1 and once(parts[0]):
            first, last = parts[1], parts[0]
        else:
            continue
        first.extend(last)          # (in place: the chain is read by this sum only)
        chains[out] = first
    if not chains:
        return ol
    inner = {v for op in ol.ops if op.prim.name == "add" and op.outvar in chains
             for v in op.invars if v in chains}
    ops, flats = [], {}
    consts = dict(ol.consts)
    for op in ol.ops:
        scatters = chains.get(op.outvar)
        if scatters is None or op.outvar in inner:
            ops.append(op)
            continue
        pieces = []
        for values, _, where in scatters:
            if values.shape != (values.size,) and values not in flats:
                flats[values] = Var((values.size,), values.dtype)
                ops.append(Op(_prim("reshape"), (values,), flats[values],
                              {"shape": (values.size,)}, where))
            pieces.append(flats.get(values, values))
        merged = Var((sum(v.size for v in pieces),), op.outvar.dtype)
        ops.append(Op(_prim("concatenate"), tuple(pieces), merged, {"axis": 0}, op.where))
        positions = Var(merged.shape, np.dtype(np.int64))
        consts[positions] = np.concatenate(
            [np.asarray(p, np.int64).reshape(-1) for _, p, _ in scatters])
        ops.append(Op(_prim("scatter_add"), (merged, positions), op.outvar,
                      {"shape": op.outvar.shape}, op.where))
    return dead_code_elimination(OpList(list(ol.invars), list(ol.outvars), ops, consts,
                                        list(ol.guards)))


@gc_paused
def simplify(ol):
    """``ol`` with the rewrites above applied (the same op list when none applies)."""
    ol = _merge_scatters(_peephole(ol))
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
