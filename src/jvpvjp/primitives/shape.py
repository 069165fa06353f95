"""Shape primitives: reshape, broadcast_to, transpose, concatenate, gather, scatter_add,
convert.

Every NumPy indexing expression (integers, slices, None, Ellipsis, integer arrays, boolean
masks) is lowered to one `gather` from the flattened array with a constant table of flat
positions, computed once at trace time; its transpose is `scatter_add`.
"""
from __future__ import annotations

import numpy as np

from ..sparsity import gather_pairs, scatter_add_pairs
from . import (Case, NotBatchable, Primitive, batch_all, broadcast_shapes, flat_as, permuted,
               unbroadcast, with_item_rank, zeros)


def _dtype_name(dtype):
    return "bool_" if np.dtype(dtype) == np.bool_ else np.dtype(dtype).name


# -- convert ------------------------------------------------------------------------------
def _convert_impl(x, dtype):
    x = np.asarray(x)
    if x.dtype.kind == "c" and np.dtype(dtype).kind != "c":
        x = np.real(x)            # NumPy's cast keeps the real part (and warns)
    return x.astype(dtype)


def _is_float(dtype):
    return np.dtype(dtype).kind in "fc"


def _convert_jvp(primals, tangents, out, dtype):
    (t,) = tangents
    if t is None or not _is_float(dtype):
        return None
    return convert(t, dtype=dtype)


def _convert_vjp(ct, primals, out, needs, dtype):
    (x,) = primals
    return (convert(ct, dtype=x.dtype) if needs[0] and _is_float(x.dtype) else None,)


def _convert_lower(args, op):
    name = _dtype_name(op.params["dtype"])
    x = args[0]
    if op.invars[0].dtype.kind == "c" and np.dtype(op.params["dtype"]).kind != "c":
        x = f"np.real({x})"
    if op.outvar.shape == ():
        return f"np.{name}({x})"
    return f"{x}.astype(np.{name})"


def _convert_loop(args, op):
    x = args[0]
    if op.invars[0].dtype.kind == "c" and np.dtype(op.params["dtype"]).kind != "c":
        x = f"({x}).real"
    return f"np.{_dtype_name(op.params['dtype'])}({x})"


convert = Primitive(
    "convert", _convert_impl, lambda x, dtype: (x[0], np.dtype(dtype)),
    _convert_jvp, _convert_vjp, _convert_lower, batch_rule="elementwise", kind="shape", complex=True,
    loop=_convert_loop, pointwise=True,
    tests=[Case(lambda x: x.astype(np.float32).astype(np.float64), ((3, 2),), rtol=1e-3,
                atol=1e-4, eps=1e-2, name="convert")])


# -- reshape ------------------------------------------------------------------------------
def _reshape_abstract(x, shape):
    if int(np.prod(x[0], dtype=np.int64)) != int(np.prod(shape, dtype=np.int64)):
        raise ValueError(f"cannot reshape array of shape {x[0]} into shape {shape}")
    return tuple(shape), x[1]


def _reshape_lower(args, op):
    shape = op.outvar.shape
    if shape == ():
        return f"_flat({args[0]})[0]"
    if op.invars[0].shape == ():
        return f"_full({shape!r}, {args[0]})"
    return flat_as(args[0], shape)


def _product_term(e, stride):
    e = e if e.isidentifier() or e.isdigit() else f"({e})"
    return e if stride == 1 else f"{e} * {stride}"


def _reshape_index(op, idx, consts):
    """Operand index of a reshape's element: the same indices when only length-1 axes
    come or go, the linear position when the operand is flat, else None."""
    src, dst = op.invars[0].shape, op.outvar.shape
    if not src:
        return []
    if tuple(n for n in src if n != 1) == tuple(n for n in dst if n != 1):
        kept = iter(e for e, n in zip(idx, dst) if n != 1)
        return ["0" if n == 1 else next(kept) for n in src]
    if len(src) == 1:
        terms, stride = [], 1
        for e, n in zip(reversed(idx), reversed(dst)):
            if e != "0" and n != 1:
                terms.append(_product_term(e, stride))
            stride *= n
        return [" + ".join(reversed(terms)) or "0"]
    return None


reshape = Primitive(
    "reshape", lambda x, shape: np.reshape(x, shape), _reshape_abstract,
    lambda p, t, out, shape: None if t[0] is None else reshape(t[0], shape=shape),
    lambda ct, p, out, needs, shape: (reshape(ct, shape=p[0].shape),),
    _reshape_lower,
    kind="view", complex=True, view_index=_reshape_index,
    view_compose=lambda inner, op: op.params,
    batch_rule=lambda args, batched, size, shape: reshape(args[0], shape=(size,) + tuple(shape)),
    one_hot_rule=lambda hot, k, args, op: (op.outvar.shape, lambda idx, scale: scale),
    tests=[Case(lambda x: np.reshape(x, (2, 6)), ((3, 4),), name="reshape"),
           Case(lambda x: np.reshape(x, (1, 1)), ((),), name="reshape_scalar"),
           Case(lambda x: np.reshape(x.T, (12,)), ((3, 4),), name="reshape_transposed")])


# -- broadcast_to -------------------------------------------------------------------------
def _broadcast_abstract(x, shape):
    if broadcast_shapes(x[0], shape) != tuple(shape):
        raise ValueError(f"cannot broadcast shape {x[0]} to {tuple(shape)}")
    return tuple(shape), x[1]


def _broadcast_lower(args, op):
    shape = op.outvar.shape
    if op.invars[0].shape == ():
        return f"_full({shape!r}, {args[0]})"
    return f"_broadcast({args[0]}, {shape!r})"


broadcast_to = Primitive(
    "broadcast_to", lambda x, shape: np.broadcast_to(x, shape), _broadcast_abstract,
    lambda p, t, out, shape: None if t[0] is None else broadcast_to(t[0], shape=shape),
    lambda ct, p, out, needs, shape: (unbroadcast(ct, p[0].shape),),
    _broadcast_lower,
    kind="view", complex=True, view_compose=lambda inner, op: op.params,
    view_index=lambda op, idx, consts: [
        "0" if n == 1 else e for e, n in
        zip(idx[len(idx) - op.invars[0].ndim:], op.invars[0].shape)],
    batch_rule=lambda args, batched, size, shape: broadcast_to(
        with_item_rank(args[0], True, len(shape)), shape=(size,) + tuple(shape)),
    tests=[Case(lambda x: np.broadcast_to(x, (2, 3, 4)), ((3, 1),), name="broadcast_to"),
           Case(lambda x: np.broadcast_to(x, (3,)), ((),), name="broadcast_scalar")])


# -- transpose ----------------------------------------------------------------------------
def _transpose_abstract(x, perm):
    if sorted(perm) != list(range(len(x[0]))):
        raise ValueError(f"axes {perm} don't match array of {len(x[0])} dimensions")
    return tuple(x[0][p] for p in perm), x[1]


def _inverse(perm):
    return tuple(int(i) for i in np.argsort(perm))


transpose = Primitive(
    "transpose", lambda x, perm: np.transpose(x, perm), _transpose_abstract,
    lambda p, t, out, perm: None if t[0] is None else transpose(t[0], perm=perm),
    lambda ct, p, out, needs, perm: (transpose(ct, perm=_inverse(perm)),),
    lambda args, op: permuted(args[0], op.params["perm"]),
    kind="view", complex=True,
    view_index=lambda op, idx, consts: [idx[op.params["perm"].index(d)]
                                        for d in range(len(idx))],
    view_compose=lambda inner, op: {"perm": tuple(inner["perm"][d] for d in op.params["perm"])},
    batch_rule=lambda args, batched, size, perm: transpose(
        args[0], perm=(0,) + tuple(p + 1 for p in perm)),
    tests=[Case(lambda x: np.transpose(x, (1, 2, 0)), ((2, 3, 4),), name="transpose")])


# -- concatenate --------------------------------------------------------------------------
def _concat_abstract(*xs, axis):
    first = xs[0][0]
    if not first:
        raise ValueError("zero-dimensional arrays cannot be concatenated")
    for s, d in xs:
        if len(s) != len(first) or any(a != b for i, (a, b) in enumerate(zip(s, first))
                                       if i != axis):
            raise ValueError(f"all input array dimensions except for the concatenation "
                             f"axis must match exactly, got {[x[0] for x in xs]}")
        if d != xs[0][1]:
            raise TypeError("concatenate: inputs must share a dtype")
    shape = list(first)
    shape[axis] = sum(s[axis] for s, _ in xs)
    return tuple(shape), xs[0][1]


def _concat_jvp(primals, tangents, out, axis):
    if all(t is None for t in tangents):
        return None
    ts = [zeros(p.shape, out.dtype) if t is None else t for p, t in zip(primals, tangents)]
    return concatenate(*ts, axis=axis)


def _concat_vjp(ct, primals, out, needs, axis):
    cts, start = [], 0
    for p, need in zip(primals, needs):
        stop = start + p.shape[axis]
        if need:
            sl = (slice(None),) * axis + (slice(start, stop),)
            cts.append(gather(ct, index_positions(ct.shape, sl)))
        else:
            cts.append(None)
        start = stop
    return tuple(cts)


def _concat_lower(args, op):
    """Each input copied into its columns of the flat result (`_place`), then shaped. (The
    sizes are typed int64, not literals: a literal argument would make Numba compile the
    helper again for each value.) Many inputs give statements, one per input, not one
    nested expression."""
    shape, axis = op.outvar.shape, op.params["axis"]
    outer = int(np.prod(shape[:axis], dtype=np.int64))
    inner = int(np.prod(shape[axis + 1:], dtype=np.int64))
    expr = f"_empty({int(np.prod(shape, dtype=np.int64))}, {_dtype_name(op.outvar.dtype)!r})"
    places, elements, offset = [], [], 0
    for a, x in zip(args, op.invars):
        places.append(f"_flat({a}), np.int64({outer}), np.int64({shape[axis] * inner}), "
                      f"np.int64({offset})")
        # (one element of a list of scalars: stored, as a statement)
        elements.append(f"{{out}}[{offset}] = _flat({a})[0]" if x.size == 1 and outer == 1
                        else f"_place({{out}}, {places[-1]})")
        offset += x.shape[axis] * inner
    if len(places) > _NESTED_PLACES:      # Python parses at most 200 nested parentheses
        return [f"{{out}} = {expr}"] + elements, f"_shaped({{out}}, {tuple(shape)!r})"
    for p in places:
        expr = f"_place({expr}, {p})"
    return f"_shaped({expr}, {tuple(shape)!r})"


# Concatenations of more inputs are lowered as statements, one per input
_NESTED_PLACES = 32


concatenate = Primitive(
    "concatenate", lambda *xs, axis: np.concatenate(xs, axis=axis), _concat_abstract,
    _concat_jvp, _concat_vjp, _concat_lower,
    kind="shape", complex=True,
    batch_rule=lambda args, batched, size, axis: concatenate(
        *[batch_all(x, b, size) for x, b in zip(args, batched)], axis=axis + 1),
    tests=[Case(lambda a, b: np.concatenate([a, b], axis=1), ((2, 3), (2, 2)),
                domain=((-2, 2), (-2, 2)), name="concatenate")])


# -- gather / scatter_add -----------------------------------------------------------------
def _gather_impl(x, idx, bounded=False):
    return np.asarray(x).reshape(-1)[idx]


def _gather_abstract(x, idx, bounded=False):
    if idx[1].kind != "i":
        raise TypeError("gather positions must be integers")
    return idx[0], x[1]


def _gather_lower(args, op):
    x, idx = args
    vec = f"_full((1,), {x})" if op.invars[0].shape == () else f"_flat({x})"  # (0-d: a scalar)
    if op.outvar.shape == ():
        return _gather_loop([vec, idx], op)
    return f"_shaped(_take({vec}, _flat({idx})), {op.outvar.shape!r})"


def _gather_loop(args, op):
    """One element: ``args[0]`` is the operand as a vector, ``args[1]`` the position. A
    gather whose positions are known to lie in range by construction (``bounded``: the
    Jacobian's one-hot seeds, see `batching.OneHot`; constant positions in range, see
    `simplify`) reads it directly, so that its loop nest vectorises; any other checks its
    bounds as NumPy does (`_at`)."""
    x, p = args
    return f"{x}[{p}]" if op.params.get("bounded") else f"_at({x}, {p})"


def _gather_index(op, idx, consts):
    """Operand index of a gather's element when its positions are constants that walk the
    operand's axes at constant steps as the output index moves (basic slicing, a row, a
    column, a reversal), else None (fancy indexing, positions out of range)."""
    pos = consts.get(op.invars[1])
    xs, out = op.invars[0].shape, op.outvar.shape
    if pos is None or not xs or not out or np.shape(pos) != out:
        return None
    size = int(np.prod(xs, dtype=np.int64))
    pos = np.asarray(pos, np.int64)
    if pos.min() < -size or pos.max() >= size:
        return None                         # the gather itself raises IndexError
    pos = np.where(pos < 0, pos + size, pos)
    base = int(pos.flat[0])
    incs = [int(pos[(0,) * k + (1,) + (0,) * (len(out) - k - 1)]) - base if n > 1 else 0
            for k, n in enumerate(out)]
    walk = base + sum(np.arange(n).reshape((n,) + (1,) * (len(out) - k - 1)) * inc
                      for k, (n, inc) in enumerate(zip(out, incs)))
    if not np.array_equal(np.broadcast_to(walk, out), pos):
        return None
    strides = [int(np.prod(xs[d + 1:], dtype=np.int64)) for d in range(len(xs))]
    start = [int(i) for i in np.unravel_index(base, xs)]
    terms = [[str(a)] if a else [] for a in start]
    low, high = list(start), list(start)
    for k, inc in enumerate(incs):
        if inc == 0:
            continue
        d = next((d for d in range(len(xs)) if xs[d] > 1 and inc % strides[d] == 0
                  and abs(inc // strides[d]) < xs[d]), None)
        if d is None:
            return None
        step = inc // strides[d]
        reach = step * (out[k] - 1)
        low[d] += min(reach, 0)
        high[d] += max(reach, 0)
        if idx[k] != "0":
            terms[d].append(_product_term(idx[k], step))
    if any(lo < 0 or hi >= n for lo, hi, n in zip(low, high, xs)):
        return None                          # a walk that wraps into the next row
    return [" + ".join(t).replace("+ -", "- ") or "0" for t in terms]


def index_positions(shape, key):
    """Flat positions selected by NumPy index ``key`` from an array of ``shape``."""
    lead = key if isinstance(key, tuple) else (key,)
    if 0 < len(lead) <= len(shape) and all(type(k) is int or isinstance(k, np.integer)
                                           for k in lead):
        # integers on the leading axes (an element, a row: reads in a loop): computed
        # directly, not picked from a table of every position (O(size) per read)
        pos = 0
        for axis, (k, n) in enumerate(zip(lead, shape)):
            k = int(k)
            if not -n <= k < n:
                raise IndexError(f"index {k} is out of bounds for axis {axis} with size {n}")
            pos = pos * n + (k + n if k < 0 else k)
        rest = tuple(shape[len(lead):])
        size = int(np.prod(rest, dtype=np.int64))
        return np.asarray(pos * size + np.arange(size, dtype=np.int64).reshape(rest)
                          if rest else pos, dtype=np.int64)
    table = np.arange(int(np.prod(shape, dtype=np.int64)), dtype=np.int64).reshape(shape)
    return np.asarray(table[key])


gather = Primitive(
    "gather", _gather_impl, _gather_abstract,
    lambda p, t, out, **params: None if t[0] is None else gather(t[0], p[1], **params),
    lambda ct, p, out, needs, bounded=False: (scatter_add(ct, p[1], shape=p[0].shape), None),
    _gather_lower, kind="index", complex=True, sparsity=gather_pairs,
    view_index=_gather_index, loop=_gather_loop, pointwise=True, whole_operands=(0,),
    tests=[Case(lambda x: x[1:, ::-2], ((3, 4),), name="slice"),
           Case(lambda x: x[np.array([0, 2, 0])], ((3, 2),), name="repeated_index"),
           Case(lambda x: x[..., None, 1], ((2, 3),), name="ellipsis_newaxis"),
           Case(lambda x: x[np.array([True, False, True])], ((3, 2),), name="mask"),
           Case(lambda x: x[1, 2], ((3, 4),), name="scalar_index")])


def _positions(idx, item_size, size):
    """Flat positions ``idx`` of one slice, repeated for every slice of a batch."""
    if not isinstance(idx, np.ndarray):
        raise NotBatchable("gather/scatter_add at traced positions")
    offsets = np.arange(size, dtype=idx.dtype) * item_size
    return idx[None] + offsets.reshape((size,) + (1,) * idx.ndim)


def _gather_batching(args, batched, size, **params):
    x, idx = args
    if batched[1]:
        raise NotBatchable("gather at batched positions")
    return gather(x, _positions(idx, int(np.prod(x.shape[1:], dtype=np.int64)), size),
                  **params)      # (``bounded``: in range still, slice by slice)


gather.batch_rule = _gather_batching


def _scatter_impl(ct, idx, shape):
    ct = np.asarray(ct)
    size = int(np.prod(shape, dtype=np.int64))
    idx = np.asarray(idx).reshape(-1)
    if ct.dtype.kind == "c":      # bincount weighs by real numbers
        return (_scatter_impl(ct.real, idx, shape) + 1j * _scatter_impl(ct.imag, idx, shape)
                ).astype(ct.dtype)
    out = np.bincount(idx, weights=ct.reshape(-1), minlength=size)
    return out.astype(ct.dtype, copy=False).reshape(shape)


def _scatter_abstract(ct, idx, shape):
    if ct[0] != idx[0]:
        raise ValueError("scatter_add: values and positions differ in shape")
    return tuple(shape), ct[1]


def _scatter_lower(args, op):
    ct, idx = args
    size = op.outvar.size
    if op.invars[0].shape == ():
        ct, idx = f"_full(1, {ct})", f"_full(1, {idx})"
    out = f"_scatter_add(_flat({ct}), _flat({idx}), np.int64({size}))"
    return f"{out}[0]" if op.outvar.shape == () else f"_shaped({out}, {op.outvar.shape!r})"


def _scatter_fn(x):
    return scatter_add(x, np.array([[0, 2], [2, 5]]), shape=(2, 3))


scatter_add = Primitive(
    "scatter_add", _scatter_impl, _scatter_abstract,
    lambda p, t, out, shape: None if t[0] is None else scatter_add(t[0], p[1], shape=shape),
    lambda ct, p, out, needs, shape: (gather(ct, p[1]), None),
    _scatter_lower, kind="index", complex=True, sparsity=scatter_add_pairs,
    tests=[Case(_scatter_fn, ((2, 2),), name="scatter_add")])


def _scatter_batching(args, batched, size, shape):
    ct, idx = args
    if batched[1]:
        raise NotBatchable("scatter_add at batched positions")
    return scatter_add(batch_all(ct, batched[0], size),
                       _positions(idx, int(np.prod(shape, dtype=np.int64)), size),
                       shape=(size,) + tuple(shape))


scatter_add.batch_rule = _scatter_batching
