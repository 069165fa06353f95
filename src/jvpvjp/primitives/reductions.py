"""Reductions over a tuple of axes (no keepdims: that is a reshape, in `numpy_api`)."""
from __future__ import annotations

import numpy as np

from . import OPAQUE, Case, Primitive, flat_as, permuted


def _abstract(x, axes):
    shape, dtype = x
    for a in axes:
        if not 0 <= a < len(shape):
            raise ValueError(f"axis {a} is out of bounds for array of dimension {len(shape)}")
    if len(set(axes)) != len(axes):
        raise ValueError(f"duplicate value in 'axis': {axes}")
    out = tuple(d for i, d in enumerate(shape) if i not in axes)
    return out, dtype


def _keepdims_shape(shape, axes):
    return tuple(1 if i in axes else d for i, d in enumerate(shape))


def expand_back(y, shape, axes):
    """Broadcast a reduced value back over the reduced axes of ``shape``."""
    from .shape import broadcast_to, reshape
    if y.shape != _keepdims_shape(shape, axes):
        y = reshape(y, shape=_keepdims_shape(shape, axes))
    return broadcast_to(y, shape=tuple(shape)) if y.shape != tuple(shape) else y


def _lower(full, rows, cols=None):
    def lower(args, op):
        (x,), axes = args, op.params["axes"]
        shape = op.invars[0].shape
        if op.outvar.shape == ():
            return f"{full}({x})" if shape else x
        kept = [i for i in range(len(shape)) if i not in axes]
        perm = tuple(kept) + tuple(axes)
        outer = int(np.prod([shape[i] for i in kept], dtype=np.int64))
        inner = int(np.prod([shape[i] for i in axes], dtype=np.int64))
        if cols and tuple(axes) == tuple(range(len(axes))):
            # leading axes (undoing broadcasting): no transposed copy
            return (f"_shaped({cols}({flat_as(x, (inner, outer))}), "
                    f"{op.outvar.shape!r})")
        src = permuted(x, perm)
        return (f"_shaped({rows}({flat_as(src, (outer, inner))}), "
                f"{op.outvar.shape!r})")
    return lower


def _cases(fn_name, domain=(-2.0, 2.0), **kw):
    fn = getattr(np, fn_name)
    return [Case(lambda x: fn(x), ((3, 4),), (domain,), name=f"{fn_name}_all", **kw),
            Case(lambda x: fn(x, axis=1), ((3, 4),), (domain,), name=f"{fn_name}_axis1", **kw),
            Case(lambda x: fn(x, axis=(0, 2), keepdims=True), ((2, 3, 2),), (domain,),
                 name=f"{fn_name}_axes_keepdims", **kw)]


# -- sum ------------------------------------------------------------------------------------
def _sum_jvp(primals, tangents, out, axes):
    return None if tangents[0] is None else reduce_sum(tangents[0], axes=axes)


def _sum_vjp(ct, primals, out, needs, axes):
    return (expand_back(ct, primals[0].shape, axes),)


reduce_sum = Primitive("reduce_sum", lambda x, axes: np.sum(x, axis=axes), _abstract,
                       _sum_jvp, _sum_vjp, _lower("np.sum", "_sum_rows", "_sum_cols"),
                       tests=_cases("sum"), kind="reduction", numpy_name="np.sum",
                       complex=True, accumulate=("0.0", "({0} + {1})"))


# -- max / min: the derivative is shared equally between tied positions (as JAX does) ---
def _chooser_rules():
    def mask_and_count(x, out, axes):
        from .shape import convert
        mask = convert(x == expand_back(out, x.shape, axes), dtype=x.dtype)
        return mask, reduce_sum(mask, axes=axes)

    def jvp(primals, tangents, out, axes):
        (x,), (t,) = primals, tangents
        if t is None:
            return None
        mask, count = mask_and_count(x, out, axes)
        return reduce_sum(t * mask, axes=axes) / count

    def vjp(ct, primals, out, needs, axes):
        (x,) = primals
        mask, count = mask_and_count(x, out, axes)
        return (mask * expand_back(ct / count, x.shape, axes),)
    return jvp, vjp


reduce_max = Primitive("reduce_max", lambda x, axes: np.max(x, axis=axes), _abstract,
                       *_chooser_rules(), _lower("np.max", "_max_rows"),
                       tests=_cases("max", unique=True), kind="reduction",
                       numpy_name="np.max",    # NaN wins, as in NumPy
                       accumulate=("-np.inf", "({1} if ({1} > {0} or {1} != {1}) else {0})"))
reduce_min = Primitive("reduce_min", lambda x, axes: np.min(x, axis=axes), _abstract,
                       *_chooser_rules(), _lower("np.min", "_min_rows"),
                       tests=_cases("min", unique=True), kind="reduction",
                       numpy_name="np.min",
                       accumulate=("np.inf", "({1} if ({1} < {0} or {1} != {1}) else {0})"))


# -- prod -----------------------------------------------------------------------------------
# d prod / d x_i = prod / x_i: exact away from zeros, NaN (never silently wrong) at a zero.
def _prod_jvp(primals, tangents, out, axes):
    (x,), (t,) = primals, tangents
    if t is None:
        return None
    return reduce_sum(t * expand_back(out, x.shape, axes) / x, axes=axes)


def _prod_vjp(ct, primals, out, needs, axes):
    (x,) = primals
    return (expand_back(ct * out, x.shape, axes) / x,)


reduce_prod = Primitive("reduce_prod", lambda x, axes: np.prod(x, axis=axes), _abstract,
                        _prod_jvp, _prod_vjp, _lower("np.prod", "_prod_rows"),
                        tests=_cases("prod", domain=(0.5, 1.5)), kind="reduction", complex=True,
                        numpy_name="np.prod", accumulate=("1.0", "({0} * {1})"))


def _reduction_batching(prim):
    def rule(args, batched, size, axes):
        return prim(args[0], axes=tuple(a + 1 for a in axes))
    return rule


for _prim in (reduce_sum, reduce_max, reduce_min, reduce_prod):
    _prim.batch_rule = _reduction_batching(_prim)


# -- cumsum: running sums along one axis (a scan) -------------------------------------------
def _cumsum_abstract(x, axis):
    shape, dtype = x
    if not 0 <= axis < len(shape):
        raise ValueError(f"axis {axis} is out of bounds for array of dimension {len(shape)}")
    return shape, dtype


def _flip(x, axis):
    """``x`` reversed along ``axis`` (a gather at constant positions)."""
    from .shape import gather, index_positions
    key = tuple(slice(None, None, -1) if i == axis else slice(None) for i in range(x.ndim))
    return gather(x, index_positions(x.shape, key))


def _cumsum_vjp(ct, primals, out, needs, axis):
    # the transpose of a running sum is the running sum from the other end
    return (_flip(cumsum(_flip(ct, axis), axis=axis), axis),)


def rows_lowering(helper, reduces=False):
    """A Numba lowering along ``op.params["axis"]``: that axis moved last, the array as
    rows, ``helper`` applied to the rows (it keeps them, or reduces each to one value when
    ``reduces``), the result put back in ``x``'s layout."""
    def lower(args, op):
        (x,), axis = args, op.params["axis"]
        shape = op.invars[0].shape
        n = len(shape)
        perm = tuple(i for i in range(n) if i != axis) + (axis,)
        inner = shape[axis]
        outer = int(np.prod([shape[i] for i in perm[:-1]], dtype=np.int64))
        src = permuted(x, perm)
        # a helper called through a symbol takes, first, the dtype it runs on
        first = f"{op.invars[0].dtype.name!r}, " if helper in OPAQUE else ""
        rows = f"{helper}({first}{flat_as(src, (outer, inner))})"
        if reduces:
            return f"{rows}[0]" if op.outvar.shape == () else \
                f"_shaped({rows}, {op.outvar.shape!r})"
        if perm == tuple(range(n)):
            return f"_shaped({rows}, {shape!r})"
        inv = tuple(perm.index(i) for i in range(n))
        moved = tuple(shape[i] for i in perm)
        return f"_contiguous({permuted(f'_shaped({rows}, {moved!r})', inv)})"
    return lower


_cumsum_lower = rows_lowering("_cumsum_rows")


cumsum = Primitive(
    "cumsum", lambda x, axis: np.cumsum(x, axis=axis), _cumsum_abstract,
    lambda p, t, out, axis: None if t[0] is None else cumsum(t[0], axis=axis),
    _cumsum_vjp, _cumsum_lower, complex=True,
    batch_rule=lambda args, batched, size, axis: cumsum(args[0], axis=axis + 1)
    if batched[0] else cumsum(args[0], axis=axis),
    tests=[Case(lambda x: np.cumsum(x, axis=1), ((3, 4),), name="cumsum_axis1"),
           Case(lambda x: np.cumsum(x, axis=0), ((2, 3, 2),), name="cumsum_axis0"),
           Case(lambda x: np.cumsum(x), ((2, 3),), name="cumsum_flat")])


# -- argsort, argmax, argmin: positions along one axis (no derivative) ------------------------
def _positions_abstract(reduces):
    def abstract(x, axis):
        shape, dtype = x
        if not 0 <= axis < len(shape):
            raise ValueError(f"axis {axis} is out of bounds for array of dimension "
                             f"{len(shape)}")
        if reduces and shape[axis] == 0:
            raise ValueError("attempt to get argmax of an empty sequence")
        out = tuple(d for i, d in enumerate(shape) if i != axis) if reduces else shape
        return out, np.dtype(np.int64)
    return abstract


def _positions_primitive(name, impl, helper, reduces, tests):
    return Primitive(
        name, lambda x, axis: np.asarray(impl(x, axis), dtype=np.int64),
        _positions_abstract(reduces), lower=rows_lowering(helper, reduces),
        differentiable=False, kind="other", tapes=False,
        batch_rule=lambda args, batched, size, axis: prims[name](
            args[0], axis=axis + 1 if batched[0] else axis),
        tests=tests)


prims = {}
prims["argsort"] = argsort = _positions_primitive(
    "argsort", lambda x, axis: np.argsort(x, axis=axis, kind="stable"), "_argsort_rows", False,
    [Case(lambda x: np.sort(x, axis=0), ((4, 3),), unique=True, name="sort_axis0"),
     Case(lambda x: np.sort(x), ((2, 5),), unique=True, name="sort_last")])
prims["argmax"] = argmax = _positions_primitive(
    "argmax", lambda x, axis: np.argmax(x, axis=axis), "_argmax_rows", True,
    [Case(lambda x: np.take_along_axis(x, np.argmax(x, axis=1)[:, None], 1), ((3, 4),),
          unique=True, name="take_argmax")])
prims["argmin"] = argmin = _positions_primitive(
    "argmin", lambda x, axis: np.argmin(x, axis=axis), "_argmin_rows", True,
    [Case(lambda x: x.reshape(-1)[np.argmin(x)] * x, ((3, 4),), unique=True,
          name="index_argmin")])
