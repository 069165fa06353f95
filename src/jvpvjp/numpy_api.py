"""NumPy on traced values: ufuncs, array functions, operators and methods.

Here NumPy's semantics (dtype promotion, broadcasting, ``axis``/``keepdims``, 1-D matmul,
indexing) are reduced to the small primitive set. Composites (mean, var, std, norm, clip,
outer, stack, ...) are built from primitives and need no derivative rules of their own.
Anything not listed raises ``NotImplementedError`` naming the NumPy function.
"""
from __future__ import annotations

import numbers
from operator import index as operator_index

import numpy as np

from .primitives import REGISTRY, elementwise as ew
from .primitives import linalg, reductions, shape as sh
from .tracing import Tracer, TracingError, _state

HANDLED_UFUNCS = {}
HANDLED_FUNCTIONS = {}


def is_traced(x):
    return isinstance(x, Tracer)


def _dtype_of(x):
    if isinstance(x, (Tracer, np.ndarray, np.generic)):
        return x.dtype
    return x   # Python scalars promote weakly in np.result_type


def _as_dtype(x, dtype):
    if isinstance(x, Tracer):
        return x if x.dtype == dtype else sh.convert(x, dtype=dtype)
    return np.asarray(x, dtype=dtype)


def _fresh(x):
    """A new traced array with ``x``'s value, for what NumPy returns as a copy (assigning
    into it must not change ``x``)."""
    return Tracer(x.builder, x.node, x.value) if isinstance(x, Tracer) else np.array(x)


def _check_operand(x):
    if isinstance(x, (Tracer, np.ndarray, np.generic, numbers.Number)):
        return x
    if isinstance(x, (list, tuple)):
        if _holds_tracer(x):
            return stack_nested(x)
        return np.asarray(x)
    raise TypeError(f"unsupported operand type {type(x).__name__}")


def stack_nested(x):
    if isinstance(x, (list, tuple)):
        return stack([stack_nested(e) for e in x])
    return x


def apply_elementwise(prim, ufunc, *args):
    """Promote dtypes as NumPy does, convert every operand to one dtype, bind ``prim``."""
    args = [_check_operand(a) for a in args]
    common = np.result_type(*[_dtype_of(a) for a in args])
    out = ew._ufunc_dtype(ufunc, *([common] * len(args)))
    operand = out if out.kind == "f" and common.kind != "c" else common
    return prim(*[_as_dtype(a, operand) for a in args])


def _ufunc(ufunc, prim):
    HANDLED_UFUNCS[ufunc] = lambda *args: apply_elementwise(prim, ufunc, *args)


# Every ufunc a primitive implements as it is (its ``numpy`` field); the handlers below
# replace some of them (x * x becomes a square, integer powers become products, ...).
for _p in REGISTRY.values():
    for _u in _p.numpy:
        _ufunc(_u, _p)


def multiply(a, b):
    if a is b and is_traced(a):          # x * x: one square, whose derivative is one op
        return apply_elementwise(ew.square, np.square, a)
    return apply_elementwise(ew.mul, np.multiply, a, b)


HANDLED_UFUNCS[np.multiply] = multiply


def _bitwise(prim, ufunc):
    def handler(a, b=None):
        args = (a,) if b is None else (a, b)
        if any(_dtype_of(x) != np.bool_ for x in args if not isinstance(x, bool)):
            raise NotImplementedError(f"numpy.{ufunc.__name__} on non-boolean traced values")
        return apply_elementwise(prim, ufunc, *args)
    HANDLED_UFUNCS[ufunc] = handler


_bitwise(ew.logical_and, np.bitwise_and)
_bitwise(ew.logical_or, np.bitwise_or)
_bitwise(ew.logical_xor, np.bitwise_xor)
_bitwise(ew.logical_not, np.invert)


def _composite_ufunc(ufunc):
    def register(fn):
        HANDLED_UFUNCS[ufunc] = fn
        return fn
    return register


@_composite_ufunc(np.positive)
def positive(x):
    return x


@_composite_ufunc(np.reciprocal)
def reciprocal(x):
    return 1.0 / x


@_composite_ufunc(np.log2)
def log2(x):
    return np.log(x) * (1.0 / np.log(2.0))


@_composite_ufunc(np.log10)
def log10(x):
    return np.log(x) * (1.0 / np.log(10.0))


@_composite_ufunc(np.exp2)
def exp2(x):
    return np.exp(x * np.log(2.0))


@_composite_ufunc(np.hypot)
def hypot(a, b):
    return np.sqrt(a * a + b * b)


@_composite_ufunc(np.logaddexp)
def logaddexp(a, b):
    m = np.maximum(a, b)
    return m + np.log1p(np.exp(-np.abs(a - b)))


@_composite_ufunc(np.power)
def power(a, b):
    # Constant exponents with cheaper exact forms; the general case is the pow primitive.
    if is_traced(a) and not is_traced(b) and np.ndim(b) == 0 and a.dtype.kind == "f":
        e = float(b)
        if e == 1.0:
            return a
        if e == 2.0:
            return apply_elementwise(ew.square, np.square, a)
        if e == 0.5:
            return apply_elementwise(ew.sqrt, np.sqrt, a)
        if e == -1.0:
            return 1.0 / a
    return apply_elementwise(ew.pow_, np.power, a, b)


@_composite_ufunc(np.float_power)
def float_power(a, b):
    return np.power(_as_float64(a), _as_float64(b))


def _as_float64(x):
    return _as_dtype(x, np.result_type(_dtype_of(x), np.float64))


@_composite_ufunc(np.radians)
@_composite_ufunc(np.deg2rad)
def deg2rad(x):
    return x * (np.pi / 180.0)


@_composite_ufunc(np.degrees)
@_composite_ufunc(np.rad2deg)
def rad2deg(x):
    return x * (180.0 / np.pi)


@_composite_ufunc(np.heaviside)
def heaviside(x, h0):
    # 0 below zero, 1 above, h0 at zero, NaN for NaN (d/dh0 = 1 where x == 0)
    return np.where(x > 0, 1.0, np.where(x < 0, 0.0, np.where(x == 0, h0, x)))


@_composite_ufunc(np.floor_divide)
def floor_divide(a, b):
    return np.floor(np.true_divide(a, b))


@_composite_ufunc(np.logaddexp2)
def logaddexp2(a, b):
    return logaddexp(a * np.log(2.0), b * np.log(2.0)) * (1.0 / np.log(2.0))


@_composite_ufunc(np.isnan)
def isnan(x):
    return x != x


@_composite_ufunc(np.isinf)
def isinf(x):
    return np.abs(x) == np.inf


@_composite_ufunc(np.isfinite)
def isfinite(x):
    return np.logical_not(np.logical_or(x != x, np.abs(x) == np.inf))


@_composite_ufunc(np.matmul)
def matmul(a, b):
    a, b = _check_operand(a), _check_operand(b)
    common = np.result_type(_dtype_of(a), _dtype_of(b))
    if common.kind not in "fc":
        if common.kind in "iub":
            raise TypeError("matmul of integer or boolean traced arrays is not supported; "
                            "convert to float first")
        raise TypeError(f"matmul of {common} arrays is not supported")
    a, b = _as_dtype(a, common), _as_dtype(b, common)
    if a.ndim == 0 or b.ndim == 0:
        raise ValueError("matmul: Input operand does not have enough dimensions")
    a2 = reshape(a, (1,) + a.shape) if a.ndim == 1 else a
    b2 = reshape(b, b.shape + (1,)) if b.ndim == 1 else b
    if a2.shape[-1] != b2.shape[-2]:
        raise ValueError(f"matmul: Input operand 1 has a mismatch in its core dimension 0 "
                         f"(size {b2.shape[-2]} is different from {a2.shape[-1]}); shapes "
                         f"{a.shape} and {b.shape}")
    batch = tuple(np.broadcast_shapes(a2.shape[:-2], b2.shape[:-2]))
    a2 = broadcast_to(a2, batch + a2.shape[-2:])
    b2 = broadcast_to(b2, batch + b2.shape[-2:])
    out = linalg.matmul(a2, b2)
    shape = batch + ((a.shape[-2],) if a.ndim > 1 else ()) + ((b.shape[-1],) if b.ndim > 1 else ())
    return reshape(out, shape) if out.shape != shape else out


# -- array functions ----------------------------------------------------------------------
def implements(*funcs):
    def register(fn):
        for f in funcs:
            HANDLED_FUNCTIONS[f] = fn
        return fn
    return register


def _normalize_axes(axis, ndim):
    if axis is None:
        return tuple(range(ndim))
    if isinstance(axis, (tuple, list)):
        axes = tuple(int(a) for a in axis)
    else:
        axes = (int(axis),)
    out = []
    for a in axes:
        if not -ndim <= a < ndim:
            raise np.exceptions.AxisError(a, ndim)
        out.append(a % ndim)
    return tuple(sorted(out))


def _no_extras(name, **kwargs):
    bad = [k for k, v in kwargs.items() if v is not None and v is not np._NoValue]
    if bad:
        raise NotImplementedError(f"numpy.{name}: argument(s) {bad} are not supported on "
                                  f"traced values")


_IDENTITY_OF = {"sum": 0, "prod": 1, "max": -np.inf, "min": np.inf}


def _reduce(prim, name, a, axis=None, keepdims=False, dtype=None, initial=None, where=None,
            **kwargs):
    _no_extras(name, **kwargs)
    a = _check_operand(a)
    if not is_traced(a) and not is_traced(where) and not is_traced(initial):
        extra = {k: v for k, v in (("dtype", dtype), ("initial", initial), ("where", where))
                 if v is not None and v is not np._NoValue}
        return getattr(np, name)(a, axis=axis, keepdims=keepdims, **extra)
    if dtype is not None:
        a = _as_dtype(a, np.dtype(dtype))
    elif name in ("sum", "prod") and _dtype_of(a).kind in "bi" and a.dtype.itemsize < 8:
        a = _as_dtype(a, np.int64 if _dtype_of(a).kind != "u" else np.uint64)
    initial = None if initial is np._NoValue else initial
    where = None if where is np._NoValue or where is True else where
    if where is not None:
        if name in ("max", "min") and initial is None:
            raise ValueError(f"reduction operation '{name}' does not have an identity, so to "
                             f"use a where mask one has to specify 'initial'")
        a = np.where(where, a, _IDENTITY_OF[name])
        a = broadcast_to(a, np.broadcast_shapes(np.shape(a), np.shape(where)))
    axes = _normalize_axes(axis, a.ndim)
    if not axes:
        out = a
    elif name in ("max", "min") and any(a.shape[i] == 0 for i in axes) and initial is None:
        raise ValueError(f"zero-size array to reduction operation {name} which has no identity")
    elif any(a.shape[i] == 0 for i in axes):
        shape = tuple(d for i, d in enumerate(a.shape) if i not in axes)
        out = traced_constant(np.full(shape, _IDENTITY_OF[name], a.dtype))
    else:
        out = prim(a, axes=axes)
    if initial is not None:
        combine = {"sum": np.add, "prod": np.multiply, "max": np.maximum,
                   "min": np.minimum}[name]
        out = combine(out, np.asarray(initial, a.dtype) if not is_traced(initial) else initial)
    if keepdims:
        out = reshape(out, reductions._keepdims_shape(a.shape, axes))
    return out


@implements(np.sum)
def sum(a, axis=None, dtype=None, out=None, keepdims=False, initial=None, where=None):
    return _reduce(reductions.reduce_sum, "sum", a, axis, keepdims, dtype, initial, where,
                   out=out)


@implements(np.prod)
def prod(a, axis=None, dtype=None, out=None, keepdims=False, initial=None, where=None):
    return _reduce(reductions.reduce_prod, "prod", a, axis, keepdims, dtype, initial, where,
                   out=out)


@implements(np.max, np.amax)
def max(a, axis=None, out=None, keepdims=False, initial=None, where=None):
    return _reduce(reductions.reduce_max, "max", a, axis, keepdims, None, initial, where,
                   out=out)


@implements(np.min, np.amin)
def min(a, axis=None, out=None, keepdims=False, initial=None, where=None):
    return _reduce(reductions.reduce_min, "min", a, axis, keepdims, None, initial, where,
                   out=out)


# -- predicates: boolean results, no derivative (guards when used in ``if``) --------------
def _truth_reduce(a, axis, keepdims, every):
    a = _check_operand(a)
    if not is_traced(a):
        return (np.all if every else np.any)(a, axis=axis, keepdims=keepdims)
    t = a if a.dtype == np.bool_ else a != 0
    if t.size == 0:
        return np.full(np.shape(np.any(np.zeros(t.shape), axis=axis, keepdims=keepdims)),
                       every)
    f = _as_dtype(t, np.dtype(np.float64))
    r = (min if every else max)(f, axis=axis, keepdims=keepdims)
    return r > 0.5


@implements(np.any)
def any_(a, axis=None, out=None, keepdims=False, *, where=None):
    _no_extras("any", out=out, where=where)
    return _truth_reduce(a, axis, keepdims, every=False)


@implements(np.all)
def all_(a, axis=None, out=None, keepdims=False, *, where=None):
    _no_extras("all", out=out, where=where)
    return _truth_reduce(a, axis, keepdims, every=True)


@implements(np.isclose)
def isclose(a, b, rtol=1e-05, atol=1e-08, equal_nan=False):
    a, b = _as_float64(_check_operand(a)), _as_float64(_check_operand(b))
    with np.errstate(invalid="ignore"):
        close = (np.abs(a - b) <= atol + rtol * np.abs(b)) | (a == b)
    if equal_nan:
        close = close | ((a != a) & (b != b))
    return close


@implements(np.allclose)
def allclose(a, b, rtol=1e-05, atol=1e-08, equal_nan=False):
    return all_(isclose(a, b, rtol, atol, equal_nan))


@implements(np.array_equal)
def array_equal(a1, a2, equal_nan=False):
    if np.shape(a1) != np.shape(a2):
        return False
    eq = _check_operand(a1) == _check_operand(a2)
    if equal_nan:
        eq = eq | ((a1 != a1) & (a2 != a2))
    return all_(eq)


@implements(np.array_equiv)
def array_equiv(a1, a2):
    try:
        np.broadcast_shapes(np.shape(a1), np.shape(a2))
    except ValueError:
        return False
    return all_(_check_operand(a1) == _check_operand(a2))


def _count(a, axis):
    axes = _normalize_axes(axis, np.ndim(a))
    return int(np.prod([np.shape(a)[i] for i in axes], dtype=np.int64))


@implements(np.mean)
def mean(a, axis=None, dtype=None, out=None, keepdims=False, where=None):
    _no_extras("mean", dtype=dtype, out=out, where=where)
    a = _as_float64(a) if _dtype_of(a).kind in "iub" else a
    return sum(a, axis=axis, keepdims=keepdims) / _count(a, axis)


@implements(np.var)
def var(a, axis=None, dtype=None, out=None, ddof=0, keepdims=False, where=None, mean=None,
        correction=None):
    _no_extras("var", dtype=dtype, out=out, where=where, mean=mean, correction=correction)
    a = _as_float64(a) if _dtype_of(a).kind in "iub" else a
    centered = a - globals()["mean"](a, axis=axis, keepdims=True)
    return sum(centered * centered, axis=axis, keepdims=keepdims) / (_count(a, axis) - ddof)


@implements(np.std)
def std(a, axis=None, dtype=None, out=None, ddof=0, keepdims=False, where=None, mean=None,
        correction=None):
    return np.sqrt(var(a, axis=axis, dtype=dtype, out=out, ddof=ddof, keepdims=keepdims,
                       where=where, mean=mean, correction=correction))


@implements(np.reshape)
def reshape(a, shape=None, order="C", *, newshape=None, copy=None):
    shape = newshape if shape is None else shape
    if order != "C":
        raise NotImplementedError("numpy.reshape with order other than 'C'")
    a = _check_operand(a)
    if isinstance(shape, (numbers.Integral, Tracer)):
        shape = (shape,)
    shape = tuple(int(s) for s in shape)
    if shape.count(-1) > 1:
        raise ValueError("can only specify one unknown dimension")
    if -1 in shape:
        known = int(np.prod([s for s in shape if s != -1], dtype=np.int64))
        size = np.size(a)
        if known == 0 or size % known:
            raise ValueError(f"cannot reshape array of size {size} into shape {shape}")
        shape = tuple(size // known if s == -1 else s for s in shape)
    if not is_traced(a):
        return np.reshape(a, shape)
    return a if a.shape == shape else sh.reshape(a, shape=shape)


@implements(np.ravel)
def ravel(a, order="C"):
    return reshape(a, (-1,), order)


@implements(np.transpose)
def transpose(a, axes=None):
    a = _check_operand(a)
    if axes is None:
        axes = tuple(reversed(range(a.ndim)))
    perm = tuple(int(p) % a.ndim if a.ndim else 0 for p in axes)
    if not is_traced(a):
        return np.transpose(a, perm)
    if perm == tuple(range(a.ndim)):
        return a
    return sh.transpose(a, perm=perm)


@implements(np.swapaxes)
def swapaxes(a, axis1, axis2):
    perm = list(range(np.ndim(a)))
    axis1, axis2 = _normalize_axes(axis1, len(perm))[0], _normalize_axes(axis2, len(perm))[0]
    perm[axis1], perm[axis2] = perm[axis2], perm[axis1]
    return transpose(a, perm)


@implements(np.moveaxis)
def moveaxis(a, source, destination):
    nd = np.ndim(a)
    src = [s % nd for s in np.atleast_1d(source)]
    dst = [d % nd for d in np.atleast_1d(destination)]
    order = [i for i in range(nd) if i not in src]
    for d, s in sorted(zip(dst, src)):
        order.insert(d, s)
    return transpose(a, order)


@implements(np.broadcast_to)
def broadcast_to(array, shape, subok=False):
    array = _check_operand(array)
    shape = (shape,) if isinstance(shape, numbers.Integral) else tuple(int(s) for s in shape)
    if not is_traced(array):
        return np.broadcast_to(array, shape)
    return array if array.shape == shape else sh.broadcast_to(array, shape=shape)


@implements(np.expand_dims)
def expand_dims(a, axis):
    a = _check_operand(a)
    axes = (axis,) if isinstance(axis, numbers.Integral) else tuple(axis)
    nd = np.ndim(a) + len(axes)
    axes = sorted(x % nd for x in axes)
    shape = list(np.shape(a))
    for ax in axes:
        shape.insert(ax, 1)
    return reshape(a, tuple(shape))


@implements(np.squeeze)
def squeeze(a, axis=None):
    shape = np.shape(a)
    if axis is None:
        axes = tuple(i for i, d in enumerate(shape) if d == 1)
    else:
        axes = _normalize_axes(axis, len(shape))
        if any(shape[i] != 1 for i in axes):
            raise ValueError("cannot select an axis to squeeze out which has size not equal "
                             "to one")
    return reshape(a, tuple(d for i, d in enumerate(shape) if i not in axes))


@implements(np.atleast_1d)
def atleast_1d(*arys):
    res = [reshape(a, (1,)) if np.ndim(a) == 0 else a for a in arys]
    return res[0] if len(res) == 1 else res


@implements(np.atleast_2d)
def atleast_2d(*arys):
    res = [reshape(a, (1,) * (2 - np.ndim(a)) + np.shape(a)) if np.ndim(a) < 2 else a
           for a in arys]
    return res[0] if len(res) == 1 else res


@implements(np.concatenate)
def concatenate(arrays, axis=0, out=None, dtype=None, casting=None):
    _no_extras("concatenate", out=out, dtype=dtype, casting=casting)
    arrays = [_check_operand(a) for a in arrays]
    if axis is None:
        arrays, axis = [ravel(a) for a in arrays], 0
    if not arrays:
        raise ValueError("need at least one array to concatenate")
    common = np.result_type(*[_dtype_of(a) for a in arrays])
    arrays = [_as_dtype(a, common) for a in arrays]
    if not any(is_traced(a) for a in arrays):
        return np.concatenate(arrays, axis=axis)
    nd = arrays[0].ndim
    if nd == 0:
        raise ValueError("zero-dimensional arrays cannot be concatenated")
    axis = _normalize_axes(axis, nd)[0]
    arrays = [a for a in arrays if a.shape[axis] != 0] or arrays[:1]
    if len(arrays) == 1:
        return _fresh(arrays[0])
    return sh.concatenate(*arrays, axis=axis)


@implements(np.stack)
def stack(arrays, axis=0, out=None, dtype=None, casting=None):
    _no_extras("stack", out=out, dtype=dtype, casting=casting)
    arrays = [_check_operand(a) for a in arrays]
    shapes = {np.shape(a) for a in arrays}
    if len(shapes) != 1:
        raise ValueError("all input arrays must have the same shape")
    axis = _normalize_axes(axis, np.ndim(arrays[0]) + 1)[0]
    return concatenate([expand_dims(a, axis) for a in arrays], axis=axis)


@implements(np.hstack)
def hstack(tup, dtype=None, casting=None):
    arrs = atleast_1d(*tup) if len(tup) > 1 else [atleast_1d(tup[0])]
    return concatenate(arrs, axis=0 if np.ndim(arrs[0]) == 1 else 1)


@implements(np.vstack)
def vstack(tup, dtype=None, casting=None):
    arrs = atleast_2d(*tup) if len(tup) > 1 else [atleast_2d(tup[0])]
    return concatenate(arrs, axis=0)


@implements(np.where)
def where(condition, x=None, y=None):
    if x is None and y is None:
        return nonzero(condition)
    if x is None or y is None:
        raise ValueError("either both or neither of x and y should be given")
    condition, x, y = _check_operand(condition), _check_operand(x), _check_operand(y)
    if _dtype_of(condition) != np.bool_:
        condition = condition != 0
    common = np.result_type(_dtype_of(x), _dtype_of(y))
    return ew.where(_as_dtype(condition, np.bool_), _as_dtype(x, common), _as_dtype(y, common))


@implements(np.fix)
def fix(x, out=None):
    _no_extras("fix", out=out)
    return np.trunc(x)


@implements(np.round, np.around)
def round_(a, decimals=0, out=None):
    _no_extras("round", out=out)
    if decimals == 0:
        return np.rint(a)
    scale = 10.0 ** decimals
    return np.rint(a * scale) / scale


@implements(np.sinc)
def sinc(x):
    # sin(pi x) / (pi x), 1 at 0 (where the derivative is 0, the limit)
    px = np.pi * x
    zero = px == 0
    safe = np.where(zero, 1.0, px)
    return np.where(zero, 1.0, np.sin(safe) / safe)


@implements(np.nan_to_num)
def nan_to_num(x, copy=True, nan=0.0, posinf=None, neginf=None):
    dtype = _dtype_of(x)
    big = np.finfo(dtype).max if dtype.kind == "f" else None
    posinf = big if posinf is None else posinf
    neginf = -big if neginf is None else neginf
    x = np.where(x != x, nan, x)
    return np.where(x == np.inf, posinf, np.where(x == -np.inf, neginf, x))


@implements(np.cumsum)
def cumsum(a, axis=None, dtype=None, out=None):
    _no_extras("cumsum", out=out)
    if dtype is not None:
        a = _as_dtype(a, np.dtype(dtype))
    elif _dtype_of(a).kind in "bi":        # NumPy accumulates booleans and ints as int64
        a = _as_dtype(a, np.result_type(_dtype_of(a), np.int64))
    if axis is None:
        a, axis = reshape(a, (-1,)), 0
    if np.ndim(a) == 0:
        a = reshape(a, (1,))
    return reductions.cumsum(a, axis=int(axis) % np.ndim(a))


@implements(np.clip)
def clip(a, a_min=None, a_max=None, out=None, **kwargs):
    _no_extras("clip", out=out)
    a_min = kwargs.pop("min", a_min)
    a_max = kwargs.pop("max", a_max)
    if a_min is not None:
        a = np.maximum(a, a_min)
    if a_max is not None:
        a = np.minimum(a, a_max)
    return a


@implements(np.dot)
def dot(a, b, out=None):
    _no_extras("dot", out=out)
    if np.ndim(a) == 0 or np.ndim(b) == 0:
        return a * b
    if np.ndim(a) > 2 or np.ndim(b) > 2:
        # dot(a, b)[i, j, k, m] = sum(a[i, j, :] * b[k, :, m])
        return tensordot(a, b, axes=([-1], [builtins_max(np.ndim(b) - 2, 0)]))
    return matmul(a, b)


@implements(np.vdot)
def vdot(a, b):
    return dot(ravel(a), ravel(b))


@implements(np.inner)
def inner(a, b):
    if np.ndim(a) == 0 or np.ndim(b) == 0:
        return a * b
    return matmul(a, swapaxes(b, -1, -2)) if np.ndim(b) > 1 else matmul(a, b)


@implements(np.outer)
def outer(a, b, out=None):
    _no_extras("outer", out=out)
    return reshape(a, (-1, 1)) * reshape(b, (1, -1))


# -- data movement: one gather from the positions NumPy itself moves ----------------------
def moved(x, fn, fill=None, view=False):
    """``fn(x)`` for a NumPy function ``fn`` that only moves, repeats or drops elements: run
    on the table of ``x``'s flat positions, ``fn`` says where each output element comes
    from, and the result is one gather (its derivatives are the gather's). Where ``fn``
    puts the sentinel ``x.size`` (passed as ``fn``'s second argument), the output is
    ``fill``."""
    x = _check_operand(x)
    if not is_traced(x):
        return fn(np.asarray(x), fill) if fill is not None else fn(np.asarray(x))
    table = np.arange(x.size, dtype=np.int64).reshape(x.shape)
    pos = np.asarray(fn(table, x.size) if fill is not None else fn(table))
    if pos.shape == x.shape and np.array_equal(pos.reshape(-1), np.arange(x.size)):
        return x
    src = x
    if fill is not None and (pos == x.size).any():
        src = concatenate([reshape(x, (-1,)), reshape(_as_dtype(fill, x.dtype), (1,))])
    out = sh.gather(src, pos.astype(np.int64, copy=False))
    if view:
        out.mark_view_of(x)              # NumPy returns a view
    return out


def _movement(func, view=False):
    """Register NumPy ``func`` (data movement only, array first) as a `moved` gather."""
    def handler(a, *args, **kwargs):
        if any(is_traced(v) for v in args + tuple(kwargs.values())):
            raise NotImplementedError(f"numpy.{func.__name__} with traced arguments other "
                                      f"than the array")
        return moved(a, lambda t: func(t, *args, **kwargs), view=view)
    HANDLED_FUNCTIONS[func] = handler
    return handler


for _f in (np.tile, np.repeat, np.roll, np.take, np.resize, np.delete):
    _movement(_f)
_take_moved = HANDLED_FUNCTIONS[np.take]


@implements(np.take)
def take(a, indices, axis=None, out=None, mode="raise"):
    """``np.take``; at traced integer ``indices`` (``mode="raise"``), a gather at positions
    computed in the program, their bounds a guard (as for ``x[k]``)."""
    if not is_traced(indices):
        return _take_moved(a, indices, axis=axis, out=out, mode=mode)
    _no_extras("take", out=out)
    if mode != "raise":
        raise NotImplementedError("numpy.take at traced indices with mode other than 'raise'")
    if indices.dtype.kind not in "iu":
        raise IndexError("`indices` must be an integer array")
    a = _check_operand(a)
    if not is_traced(a):
        a = traced_constant(np.asarray(a))
    if axis is None:
        a, axis = ravel(a), 0
    axis = _axis_of(a, axis)
    _guard_in_bounds(indices, a.shape[axis], axis)
    picked = _take_first_axis(moveaxis(a, axis, 0), indices)   # indices' axes first
    k = indices.ndim
    return transpose(picked, tuple(range(k, k + axis)) + tuple(range(k)) +
                     tuple(range(k + axis, picked.ndim)))
for _f in (np.flip, np.fliplr, np.flipud, np.rot90, np.diagonal, np.rollaxis):
    _movement(_f, view=True)


def _axis_of(a, axis):
    return _normalize_axes(axis, np.ndim(a))[0]


def _guard_in_bounds(indices, n, axis):
    """That traced integer ``indices`` lie in [-n, n) along ``axis``, as a guard (a replay
    with other indices retraces); out of bounds, NumPy's IndexError naming the first one,
    the axis and the user's line. A gather at positions computed from them could otherwise
    land in another row: a wrong value, not an error."""
    if np.size(indices) and not bool(np.all((indices >= -n) & (indices < n))):
        from .tracing import format_where, user_frame
        v = np.asarray(indices.value)
        raise IndexError(f"index {v[(v < -n) | (v >= n)].flat[0]} is out of bounds for axis "
                         f"{axis} with size {n}\n  at {format_where(user_frame())}")


def _flat_along(shape, indices, axis):
    """Flat positions in an array of ``shape`` of ``indices`` along ``axis`` (traced
    integers, NumPy's negative indices wrap): ``take_along_axis`` as one gather."""
    table = np.arange(int(np.prod(shape, dtype=np.int64)), dtype=np.int64).reshape(shape)
    out_shape = tuple(np.broadcast_shapes(
        tuple(1 if i == axis else d for i, d in enumerate(shape)),
        tuple(1 if i == axis else d for i, d in enumerate(indices.shape))))
    out_shape = out_shape[:axis] + (indices.shape[axis],) + out_shape[axis + 1:]
    base = np.take_along_axis(table, np.zeros(out_shape, np.int64), axis)
    stride = int(np.prod(shape[axis + 1:], dtype=np.int64))
    indices = np.where(indices < 0, indices + shape[axis], indices)
    return base + indices * stride


@implements(np.take_along_axis)
def take_along_axis(arr, indices, axis=-1):
    arr = _check_operand(arr)
    if axis is None:
        arr, axis = ravel(arr), 0
    axis = _axis_of(arr, axis)
    if is_traced(indices):
        if indices.dtype.kind not in "iu":
            raise IndexError("`indices` must be an integer array")
        _guard_in_bounds(indices, arr.shape[axis], axis)
        if not is_traced(arr):
            arr = traced_constant(np.asarray(arr))
        return sh.gather(arr, _flat_along(arr.shape, indices, axis))
    indices = _concrete_key(indices)
    return moved(arr, lambda t: np.take_along_axis(t, indices, axis))


def _positions_along(prim, name):
    def handler(a, axis=-1 if name == "argsort" else None, *args, **kwargs):
        kwargs.pop("kind", None)
        kwargs.pop("stable", None)
        keepdims = kwargs.pop("keepdims", False)
        _no_extras(name, **{k: v for k, v in kwargs.items() if k != "order"})
        a = _check_operand(a)
        if not is_traced(a):
            return getattr(np, name)(a, axis=axis)
        if axis is None:
            flat = reshape(a, (-1,))
            out = prim(flat, axis=0)
            return reshape(out, (1,) * a.ndim) if keepdims else out
        axis = _axis_of(a, axis)
        out = prim(a, axis=axis)
        if keepdims and name != "argsort":
            out = reshape(out, a.shape[:axis] + (1,) + a.shape[axis + 1:])
        return out
    HANDLED_FUNCTIONS[getattr(np, name)] = handler
    return handler


argsort = _positions_along(reductions.argsort, "argsort")
argmax = _positions_along(reductions.argmax, "argmax")
argmin = _positions_along(reductions.argmin, "argmin")


@implements(np.sort)
def sort(a, axis=-1, kind=None, order=None, stable=None):
    a = _check_operand(a)
    if axis is None:
        a, axis = ravel(a), 0
    if not is_traced(a):
        return np.sort(a, axis=axis)
    if a.ndim == 0:
        raise np.exceptions.AxisError(axis, 0)
    return take_along_axis(a, argsort(a, axis), axis)


def _quantiles(a, q, axis, keepdims, method, name):
    """Linear interpolation between order statistics (NumPy's default method)."""
    if method != "linear":
        raise NotImplementedError(f"numpy.{name} with method={method!r} on traced values")
    if is_traced(q):
        raise NotImplementedError(f"numpy.{name} at traced quantiles")
    a = _check_operand(a)
    a = _as_float64(a) if _dtype_of(a).kind in "iub" else a
    every_axis = axis is None
    if every_axis:
        src, axis = ravel(a), 0
    else:
        axes = _normalize_axes(axis, a.ndim)
        if len(axes) != 1:
            raise NotImplementedError(f"numpy.{name} over several axes on traced values")
        src, axis = a, axes[0]
    q = np.asarray(q, dtype=np.float64)
    if np.any((q < 0) | (q > 1)):
        raise ValueError("Quantiles must be in the range [0, 1]")
    n = src.shape[axis]
    s = sort(src, axis)
    pos = q.reshape(-1) * (n - 1)
    lo = np.floor(pos).astype(np.int64)
    hi = np.minimum(lo + 1, n - 1)
    frac = pos - lo
    take = lambda idx: moveaxis(np.take(s, idx, axis=axis), axis, 0)
    vlo, vhi = take(lo), take(hi)
    shape = (-1,) + (1,) * (vlo.ndim - 1)
    out = vlo + (vhi - vlo) * frac.reshape(shape)
    out = reshape(out, q.shape + out.shape[1:])
    if keepdims:
        keep = tuple(1 if (i == axis or every_axis) else d for i, d in enumerate(np.shape(a)))
        out = reshape(out, q.shape + keep)
    return out


@implements(np.quantile)
def quantile(a, q, axis=None, out=None, overwrite_input=False, method="linear",
             keepdims=False, *, weights=None, interpolation=None):
    _no_extras("quantile", out=out, weights=weights, interpolation=interpolation)
    return _quantiles(a, q, axis, keepdims, method, "quantile")


@implements(np.percentile)
def percentile(a, q, axis=None, out=None, overwrite_input=False, method="linear",
               keepdims=False, *, weights=None, interpolation=None):
    _no_extras("percentile", out=out, weights=weights, interpolation=interpolation)
    return _quantiles(a, np.asarray(q, dtype=np.float64) / 100.0, axis, keepdims, method,
                      "percentile")


@implements(np.median)
def median(a, axis=None, out=None, overwrite_input=False, keepdims=False):
    _no_extras("median", out=out)
    return _quantiles(a, 0.5, axis, keepdims, "linear", "median")


@implements(np.put_along_axis)
def put_along_axis(arr, indices, values, axis):
    indices = _concrete_key(indices)
    if not is_traced(arr):
        if is_traced(values):
            raise TracingError("numpy.put_along_axis of traced values into a NumPy array "
                               "would drop their derivative; make arr np.zeros_like(x)")
        return np.put_along_axis(arr, indices, values, axis)
    check_assignable(arr, values)
    table = np.arange(arr.size, dtype=np.int64).reshape(arr.shape)
    setitem_flat(arr, np.take_along_axis(table, indices, axis), values)


@implements(np.pad)
def pad(array, pad_width, mode="constant", **kwargs):
    if mode == "constant":
        value = kwargs.pop("constant_values", 0)
        if np.ndim(value) != 0:
            raise NotImplementedError("numpy.pad with per-axis constant_values on traced values")
        if kwargs:
            raise NotImplementedError(f"numpy.pad arguments {sorted(kwargs)}")
        return moved(array, lambda t, s: np.pad(t, pad_width, "constant", constant_values=s),
                     fill=value)
    if mode not in ("edge", "reflect", "symmetric", "wrap"):
        raise NotImplementedError(f"numpy.pad mode {mode!r} on traced values")
    return moved(array, lambda t: np.pad(t, pad_width, mode, **kwargs))


@implements(np.diag)
def diag(v, k=0):
    if np.ndim(v) == 1:
        return moved(v, lambda t, s: np.diag(t, k) + np.where(np.eye(t.size + abs(k), k=k),
                                                               0, s), fill=0.0)
    if np.ndim(v) != 2:
        raise ValueError("Input must be 1- or 2-d.")
    return moved(v, lambda t: np.diag(t, k))


@implements(np.diagflat)
def diagflat(v, k=0):
    return diag(ravel(v), k)


def _triangle(name):
    func = getattr(np, name)

    @implements(func)
    def handler(m, k=0):
        m = _check_operand(m)
        if not is_traced(m):
            return func(m, k)
        if m.ndim < 2:
            m = broadcast_to(m, (m.shape[-1] if m.ndim else 1,) * 2)
        keep = func(np.ones(m.shape[-2:], bool), k)
        return np.where(keep, m, np.zeros((), m.dtype))
    return handler


_triangle("tril")
_triangle("triu")


@implements(np.trace)
def trace(a, offset=0, axis1=0, axis2=1, dtype=None, out=None):
    _no_extras("trace", out=out)
    return sum(np.diagonal(a, offset, axis1, axis2), axis=-1, dtype=dtype)


def _splitter(func):
    @implements(func)
    def handler(ary, indices_or_sections, axis=None):
        ary = _check_operand(ary)
        kw = {} if axis is None else {"axis": axis}
        pieces = func(np.arange(ary.size, dtype=np.int64).reshape(ary.shape),
                      indices_or_sections, **kw)
        return [moved(ary, lambda t, p=p: t.reshape(-1)[p], view=True) for p in pieces]
    return handler


for _f in (np.split, np.array_split, np.hsplit, np.vsplit, np.dsplit):
    _splitter(_f)


@implements(np.append)
def append(arr, values, axis=None):
    if axis is None:
        return concatenate([ravel(arr), ravel(values)])
    return concatenate([arr, values], axis=axis)


@implements(np.dstack)
def dstack(tup):
    return concatenate([atleast_3d(a) for a in tup], axis=2)


@implements(np.column_stack)
def column_stack(tup):
    return concatenate([_as_columns(_check_operand(a)) for a in tup], axis=1)


@implements(np.atleast_3d)
def atleast_3d(*arys):
    res = []
    for a in arys:
        nd = np.ndim(a)
        shape = np.shape(a)
        res.append(reshape(a, (1, 1, 1) if nd == 0 else (1,) + shape + (1,) if nd == 1
                           else shape + (1,) if nd == 2 else shape))
    return res[0] if len(res) == 1 else res


@implements(np.block)
def block(arrays):
    def depth(x):
        return 1 + depth(x[0]) if isinstance(x, list) else 0
    levels = depth(arrays)
    def build(x, level):
        if not isinstance(x, list):
            return _check_operand(x)
        parts = [build(e, level + 1) for e in x]
        nd = builtins_max(levels, *[np.ndim(p) for p in parts])
        parts = [reshape(p, (1,) * (nd - np.ndim(p)) + np.shape(p)) for p in parts]
        return concatenate(parts, axis=nd - levels + level)
    return build(arrays, 0)


@implements(np.meshgrid)
def meshgrid(*xi, copy=True, sparse=False, indexing="xy"):
    xi = [ravel(_check_operand(x)) for x in xi]
    n = len(xi)
    shapes = [[1] * n for _ in xi]
    for i, x in enumerate(xi):
        shapes[i][i] = x.size
    if indexing == "xy" and n > 1:
        for s in shapes:
            s[0], s[1] = s[1], s[0]
    out = [reshape(x, tuple(s)) for x, s in zip(xi, shapes)]
    if sparse:
        return out
    full = tuple(np.broadcast_shapes(*[tuple(s) for s in shapes]))
    return [broadcast_to(o, full) for o in out]


def _value_positions(name):
    """Functions whose result is positions that depend on values (np.nonzero, ...): the
    positions are taken as a guarded constant (no derivative; a new pattern retraces)."""
    func = getattr(np, name)

    @implements(func)
    def handler(a, *args, **kwargs):
        a = _check_operand(a)
        return func(a.concrete_value() if is_traced(a) else a, *args, **kwargs)
    return handler


nonzero = _value_positions("nonzero")
for _name in ("flatnonzero", "argwhere", "count_nonzero"):
    _value_positions(_name)


@implements(np.linspace)
def linspace(start, stop, num=50, endpoint=True, retstep=False, dtype=None, axis=0, *,
             device=None):
    num = operator_index(num)
    if num < 0:
        raise ValueError(f"Number of samples, {num}, must be non-negative.")
    start, stop = _as_float64(_check_operand(start)), _as_float64(_check_operand(stop))
    div = (num - 1) if endpoint else num
    shape = tuple(np.broadcast_shapes(np.shape(start), np.shape(stop)))
    steps = np.arange(num, dtype=np.float64).reshape((-1,) + (1,) * len(shape))
    delta = stop - start
    step = delta / div if div > 0 else delta * np.nan
    y = start + steps * step if div > 0 else start + steps * delta
    if endpoint and num > 1:
        y = concatenate([y[:-1], reshape(broadcast_to(stop, shape), (1,) + shape)])
    if axis != 0:
        y = moveaxis(y, 0, axis)
    if dtype is not None:
        y = _as_dtype(y, np.dtype(dtype))
    return (y, step) if retstep else y


class _FlatIndexer:
    """``x.flat`` of a traced array: indexing and assignment in flat (C) order."""

    def __init__(self, x):
        self._x = x

    def __getitem__(self, key):
        return getitem(ravel(self._x), key)

    def __setitem__(self, key, value):
        check_assignable(self._x, value)
        flat = np.arange(self._x.size, dtype=np.int64)
        setitem_flat(self._x, _positions(flat.shape, _concrete_key(key)), value)

    def __len__(self):
        return self._x.size

    def __iter__(self):
        return iter(ravel(self._x))


@implements(np.zeros_like, np.ones_like, np.empty_like)
def _like(a, dtype=None, order="K", subok=True, shape=None, device=None):
    raise NotImplementedError  # replaced below


def traced_constant(value):
    """``value`` as an array of the innermost trace (so that it can be assigned into)."""
    from .tracing import _state
    b = _state.builders[-1]
    return Tracer(b, b.const(value), value if b.concrete else None)


def _make_like(fill):
    def like(a, dtype=None, order="K", subok=True, shape=None, device=None):
        shape = np.shape(a) if shape is None else shape
        out = np.full(shape, fill, dtype=dtype or _dtype_of(a))
        # the array of a traced one is traced too: item assignment into it is recorded
        return traced_constant(out) if is_traced(a) else out
    return like


HANDLED_FUNCTIONS[np.zeros_like] = _make_like(0)
HANDLED_FUNCTIONS[np.empty_like] = _make_like(0)
HANDLED_FUNCTIONS[np.ones_like] = _make_like(1)


@implements(np.full_like)
def full_like(a, fill_value, dtype=None, order="K", subok=True, shape=None, device=None):
    if is_traced(fill_value):
        return broadcast_to(_as_dtype(fill_value, dtype or _dtype_of(a)),
                            np.shape(a) if shape is None else shape)
    out = np.full(np.shape(a) if shape is None else shape, fill_value,
                  dtype=dtype or _dtype_of(a))
    return traced_constant(out) if is_traced(a) else out


@implements(np.result_type)
def result_type(*arrays_and_dtypes):
    return np.result_type(*[_dtype_of(a) for a in arrays_and_dtypes])


@implements(np.can_cast)
def can_cast(from_, to, casting="safe"):
    return np.can_cast(_dtype_of(from_), to, casting)


@implements(np.iscomplexobj)
def iscomplexobj(x):
    return _dtype_of(x).kind == "c"


@implements(np.isrealobj)
def isrealobj(x):
    return _dtype_of(x).kind != "c"


@implements(np.shape)
def shape(a):
    return a.shape


@implements(np.ndim)
def ndim(a):
    return a.ndim


@implements(np.size)
def size(a, axis=None):
    return a.size if axis is None else a.shape[axis]


@implements(np.copy)
def copy(a, *args, **kwargs):
    return _fresh(a)


# -- arrays from Python containers -----------------------------------------------------
# NumPy does not dispatch np.array / np.asarray (and np.r_, np.c_) on what a list holds, so
# while a user function is traced they are replaced on the numpy module (`tracing`):
# calls without a tracer of this thread's trace go to NumPy unchanged.
def _holds_tracer(x):
    if isinstance(x, Tracer):
        return True
    if isinstance(x, (list, tuple)):
        for e in x:
            if _holds_tracer(e):
                return True
    return False


def _this_thread_traces():
    return bool(_state.builders)


def traced_array(obj, dtype=None, ndmin=0, copy=True):
    """``np.array(obj, dtype, ndmin=ndmin)`` for an ``obj`` that holds traced values."""
    if dtype is not None and np.dtype(dtype) == object:
        raise TypeError("an object array of traced values is not supported")
    try:
        out = stack_nested(obj) if isinstance(obj, (list, tuple)) else obj
    except ValueError:
        raise ValueError("setting an array element with a sequence: the nested lists have "
                         "an inhomogeneous shape (their elements' shapes differ)") from None
    if not is_traced(out):
        out = np.asarray(out)
    if dtype is not None:
        out = _as_dtype(out, np.dtype(dtype))
    elif isinstance(obj, Tracer) and copy:
        out = _fresh(obj)     # np.array copies
    if out.ndim < ndmin:
        out = reshape(out, (1,) * (ndmin - out.ndim) + out.shape)
    return out


def _from_data(original, copies):
    def array(obj, dtype=None, *args, ndmin=0, copy=None, **kwargs):
        if not _this_thread_traces() or not _holds_tracer(obj):
            if ndmin:
                kwargs["ndmin"] = ndmin
            if copy is not None:
                kwargs["copy"] = copy
            return original(obj, dtype, *args, **kwargs)
        return traced_array(obj, dtype, ndmin, copies if copy is None else copy)
    return _standing_in_for(original, array)


def _standing_in_for(original, fn):
    """``fn`` named and documented as the NumPy function it replaces while tracing."""
    fn.__name__, fn.__qualname__ = original.__name__, original.__name__
    fn.__doc__, fn.__wrapped__ = original.__doc__, original
    return fn


def _as_columns(x):
    return reshape(x, (-1, 1)) if np.ndim(x) < 2 else x


class _Concatenator:
    """``np.r_`` / ``np.c_`` that also take traced values (plain items: NumPy's)."""

    def __init__(self, original, columns):
        self._original, self._columns = original, columns

    def __getitem__(self, key):
        items = key if isinstance(key, tuple) else (key,)
        if not _this_thread_traces() or not _holds_tracer(items):
            return self._original[key]
        if any(isinstance(k, str) for k in items):
            raise NotImplementedError("np.r_ / np.c_ with a directive string on traced values")
        parts = []
        for k in items:
            if isinstance(k, slice):
                k = self._original[k]
            k = traced_array(k) if _holds_tracer(k) else np.asarray(k)
            parts.append(_as_columns(k) if self._columns else atleast_1d(k))
        return concatenate(parts, axis=-1 if self._columns else 0)

    def __len__(self):
        return 0


def _sequence_function(original, handler):
    """np.stack and friends of nested lists holding tracers (NumPy dispatches on the
    outer list's items only, which are then lists)."""
    def fn(arrays, *args, **kwargs):
        if not _this_thread_traces() or not _holds_tracer(arrays):
            return original(arrays, *args, **kwargs)
        return handler([traced_array(a) if isinstance(a, (list, tuple)) else a
                        for a in arrays], *args, **kwargs)
    return _standing_in_for(original, fn)


def _install_patches():
    from .tracing import NUMPY_PATCHES
    for name in ("stack", "concatenate", "hstack", "vstack", "dstack", "column_stack"):
        NUMPY_PATCHES[name] = _sequence_function(getattr(np, name), HANDLED_FUNCTIONS[
            getattr(np, name)])
    for name, copies in [("array", True), ("asarray", False), ("asanyarray", False),
                         ("ascontiguousarray", False), ("asfortranarray", False)]:
        NUMPY_PATCHES[name] = _from_data(getattr(np, name), copies)
    NUMPY_PATCHES["r_"] = _Concatenator(np.r_, columns=False)
    NUMPY_PATCHES["c_"] = _Concatenator(np.c_, columns=True)


_install_patches()


import builtins  # noqa: E402

builtins_max, builtins_min = builtins.max, builtins.min


# -- einsum and the products built on it ---------------------------------------------------
_LETTERS = "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ"


def _parse_einsum(subscripts, shapes):
    """Explicit subscripts, one letter per axis (``...`` expanded), and the output's."""
    subscripts = subscripts.replace(" ", "")
    if "->" in subscripts:
        ins, out = subscripts.split("->")
    else:
        ins, out = subscripts, None
    terms = ins.split(",")
    if len(terms) != len(shapes):
        raise ValueError(f"einsum: {len(terms)} operand subscripts for {len(shapes)} operands")
    used = set(c for c in subscripts if c.isalpha())
    spare = [c for c in _LETTERS if c not in used]
    n_ell = builtins_max([len(s) - len(t.replace("...", "")) for t, s in zip(terms, shapes)
                          if "..." in t] + [0])
    ell = "".join(spare[:n_ell])
    full = []
    for t, s in zip(terms, shapes):
        if "..." in t:
            k = len(s) - len(t.replace("...", ""))
            t = t.replace("...", ell[n_ell - k:] if k else "")
        if len(t) != len(s) or not t.isalpha() and t:
            raise ValueError(f"einsum: subscripts {t!r} do not match an operand of shape {s}")
        full.append(t)
    if out is None:
        counts = {}
        for t in full:
            for c in t:
                counts[c] = counts.get(c, 0) + 1
        out = ell + "".join(sorted(c for c, n in counts.items() if n == 1 and c not in ell))
    else:
        out = out.replace("...", ell)
    sizes = {}
    for t, s in zip(full, shapes):
        for c, d in zip(t, s):
            if sizes.get(c, 1) != d and d != 1:
                if sizes.get(c, 1) != 1:
                    raise ValueError(f"einsum: index {c!r} has sizes {sizes[c]} and {d}")
            sizes[c] = builtins_max(sizes.get(c, 1), d)
    if any(c not in sizes for c in out) or len(set(out)) != len(out):
        raise ValueError(f"einsum: invalid output subscripts {out!r}")
    return full, out, sizes


def _einsum_single(x, sub, keep):
    """Operand ``x`` with subscripts ``sub`` reduced to the indices ``keep`` (in order of
    first appearance in ``sub``): repeated indices take the diagonal, the rest are summed."""
    uniq = "".join(dict.fromkeys(sub))
    if uniq != sub:                     # a repeated index: the diagonal (data movement)
        x = moved(x, lambda t: np.einsum(f"{sub}->{uniq}", t))
        sub = uniq
    drop = tuple(i for i, c in enumerate(sub) if c not in keep)
    if drop:
        x = sum(x, axis=drop)
        sub = "".join(c for c in sub if c in keep)
    return x, sub


def _contract(a, sa, b, sb, keep, sizes):
    """Two operands contracted over their shared indices not in ``keep``, as one matmul:
    (batch, a's own, shared) @ (batch, shared, b's own), or products summed when neither
    has indices of its own. Returns the result and its subscripts (batch, a's own, b's
    own)."""
    batch = [c for c in sa if c in sb and c in keep]
    summed = [c for c in sa if c in sb and c not in keep]
    own_a = [c for c in sa if c not in sb]
    own_b = [c for c in sb if c not in sa]

    def arrange(x, s, order):
        x = transpose(x, [s.index(c) for c in order])
        full = tuple(sizes[c] for c in order)
        return broadcast_to(x, full) if x.shape != full else x

    a = arrange(a, sa, batch + own_a + summed)
    b = arrange(b, sb, batch + summed + own_b)
    if not own_a and not own_b:
        # a full contraction (ij,ji->, bi,bi->b): products summed, no matrix product
        axes = tuple(range(len(batch), len(batch) + len(summed)))
        return (sum(a * b, axis=axes) if axes else a * b), "".join(batch)
    nb, m, k, n = (int(np.prod([sizes[c] for c in cs], dtype=np.int64))
                   for cs in (batch, own_a, summed, own_b))
    lead = (nb,) if batch else ()
    p = matmul(reshape(a, lead + (m, k)), reshape(b, lead + (k, n)))
    return reshape(p, tuple(sizes[c] for c in batch + own_a + own_b)), \
        "".join(batch + own_a + own_b)


@implements(np.einsum)
def einsum(subscripts, *operands, out=None, dtype=None, order="K", casting="safe",
           optimize=False):
    _no_extras("einsum", out=out)
    if not isinstance(subscripts, str):
        raise NotImplementedError("numpy.einsum in the interleaved (operand, axes) form on "
                                  "traced values")
    ops = [_check_operand(o) for o in operands]
    if dtype is not None:
        ops = [_as_dtype(o, np.dtype(dtype)) for o in ops]
    common = np.result_type(*[_dtype_of(o) for o in ops])
    if common.kind in "iub":
        common = np.dtype(np.float64) if builtins.any(
            is_traced(o) and o.dtype.kind == "f" for o in ops) else common
    ops = [_as_dtype(o, common) for o in ops]
    subs, out_sub, sizes = _parse_einsum(subscripts, [np.shape(o) for o in ops])
    if common.kind not in "fc":
        raise TypeError(f"einsum of {common} traced arrays is not supported")
    # contract in the order NumPy's greedy path finds for these shapes
    if len(ops) > 2:
        dummies = [np.empty(tuple(sizes[c] for c in t)) for t in subs]
        path = np.einsum_path(",".join(subs) + "->" + out_sub, *dummies,
                              optimize="greedy")[0][1:]
    else:
        path = [tuple(range(len(ops)))]
    ops, subs = list(ops), list(subs)
    for pair in path:
        taken = [(ops.pop(i), subs.pop(i)) for i in sorted(pair, reverse=True)][::-1]
        rest = out_sub + "".join(subs)
        x, s = taken[0]
        if len(taken) == 1:
            x, s = _einsum_single(x, s, rest)
        for j in range(1, len(taken)):
            y, t = taken[j]
            later = rest + "".join(u for _, u in taken[j + 1:])
            x, s = _einsum_single(x, s, later + t)
            y, t = _einsum_single(y, t, later + s)
            x, s = _contract(x, s, y, t, later, sizes)
        ops.append(x)
        subs.append(s)
    x, s = _einsum_single(ops[0], subs[0], out_sub)
    x = transpose(x, [s.index(c) for c in out_sub]) if np.ndim(x) else x
    return x


@implements(np.tensordot)
def tensordot(a, b, axes=2):
    na, nb = np.ndim(a), np.ndim(b)
    if isinstance(axes, numbers.Integral):
        axes_a, axes_b = list(range(na - axes, na)), list(range(axes))
    else:
        axes_a, axes_b = axes
        axes_a = [axes_a] if isinstance(axes_a, numbers.Integral) else list(axes_a)
        axes_b = [axes_b] if isinstance(axes_b, numbers.Integral) else list(axes_b)
    axes_a, axes_b = [x % na for x in axes_a], [x % nb for x in axes_b]
    if len(axes_a) != len(axes_b):
        raise ValueError("shape-mismatch for sum")
    sa = _LETTERS[:na]
    sb = list(_LETTERS[na:na + nb])
    for i, j in zip(axes_a, axes_b):
        if np.shape(a)[i] != np.shape(b)[j]:
            raise ValueError("shape-mismatch for sum")
        sb[j] = sa[i]
    sb = "".join(sb)
    out = "".join(c for i, c in enumerate(sa) if i not in axes_a) + \
        "".join(c for j, c in enumerate(sb) if j not in axes_b)
    return einsum(f"{sa},{sb}->{out}", a, b)


@implements(np.kron)
def kron(a, b):
    a, b = _check_operand(a), _check_operand(b)
    nd = builtins_max(np.ndim(a), np.ndim(b))
    a = reshape(a, (1,) * (nd - np.ndim(a)) + np.shape(a))
    b = reshape(b, (1,) * (nd - np.ndim(b)) + np.shape(b))
    sa, sb = _LETTERS[:nd], _LETTERS[nd:2 * nd]
    p = einsum(f"{sa},{sb}->{''.join(x + y for x, y in zip(sa, sb))}", a, b)
    return reshape(p, tuple(x * y for x, y in zip(np.shape(a), np.shape(b))))


@implements(np.cross)
def cross(a, b, axisa=-1, axisb=-1, axisc=-1, axis=None):
    if axis is not None:
        axisa = axisb = axisc = axis
    a, b = moveaxis(_check_operand(a), axisa, -1), moveaxis(_check_operand(b), axisb, -1)
    if a.shape[-1] not in (2, 3) or b.shape[-1] not in (2, 3):
        raise ValueError("incompatible dimensions for cross product (dimension must be 2 or 3)")
    a0, a1 = a[..., 0], a[..., 1]
    b0, b1 = b[..., 0], b[..., 1]
    a2 = a[..., 2] if a.shape[-1] == 3 else None
    b2 = b[..., 2] if b.shape[-1] == 3 else None
    z = a0 * b1 - a1 * b0
    if a2 is None and b2 is None:
        return z
    a2 = 0.0 if a2 is None else a2
    b2 = 0.0 if b2 is None else b2
    x = a1 * b2 - a2 * b1
    y = a2 * b0 - a0 * b2
    full = tuple(np.broadcast_shapes(*[np.shape(v) for v in (x, y, z)]))
    return moveaxis(stack([broadcast_to(c, full) for c in (x, y, z)], axis=-1), -1, axisc)


@implements(np.linalg.multi_dot)
def multi_dot(arrays, *, out=None):
    _no_extras("multi_dot", out=out)
    arrays = list(arrays)
    result = arrays[0]
    for x in arrays[1:]:
        result = dot(result, x)
    return result


@implements(np.linalg.matrix_power)
def matrix_power(a, n):
    a = _check_operand(a)
    if a.ndim < 2 or a.shape[-1] != a.shape[-2]:
        raise np.linalg.LinAlgError("Last 2 dimensions of the array must be square")
    n = operator_index(n)
    if n == 0:
        return traced_constant(np.broadcast_to(np.eye(a.shape[-1], dtype=a.dtype),
                                               a.shape).copy())
    if n < 0:
        a, n = np.linalg.inv(a), -n
    result, power = None, a
    while n:
        if n & 1:
            result = power if result is None else matmul(result, power)
        n >>= 1
        if n:
            power = matmul(power, power)
    return result




# -- more reductions and scans, from primitives -------------------------------------------
def _is_complex(x):
    return _dtype_of(x).kind == "c" if not isinstance(x, numbers.Number) else \
        isinstance(x, complex)


@_composite_ufunc(np.conjugate)
def conjugate(x):
    x = _check_operand(x)
    return ew.conj(x) if _is_complex(x) and is_traced(x) else x if is_traced(x) else np.conj(x)


@implements(np.real)
def real(val):
    val = _check_operand(val)
    return ew.real(val) if _is_complex(val) and is_traced(val) else \
        val if is_traced(val) else np.real(val)


@implements(np.imag)
def imag(val):
    val = _check_operand(val)
    if not is_traced(val):
        return np.imag(val)
    if _is_complex(val):
        return ew.imag(val)
    return traced_constant(np.zeros(np.shape(val), _dtype_of(val)))


@implements(np.angle)
def angle(z, deg=False):
    z = _check_operand(z)
    scale = 180.0 / np.pi if deg else 1.0
    if _is_complex(z):
        # arg z = Im log z, as NumPy computes it (atan2 of the parts)
        return np.angle(z, deg) if not is_traced(z) else ew.imag(np.log(z)) * scale
    out = np.where(z < 0, np.pi, 0.0) + 0.0 * z
    return np.where(z != z, z, out * scale)


def absolute(x):
    x = _check_operand(x)
    if _is_complex(x) and is_traced(x):
        return ew.complex_abs(x)
    return apply_elementwise(ew.abs_, np.absolute, x)


HANDLED_UFUNCS[np.absolute] = absolute


@implements(np.diff)
def diff(a, n=1, axis=-1, prepend=np._NoValue, append=np._NoValue):
    a = _check_operand(a)
    axis = _axis_of(a, axis)
    parts = ([_along_shape(prepend, a, axis)] if prepend is not np._NoValue else []) + [a] + \
        ([_along_shape(append, a, axis)] if append is not np._NoValue else [])
    a = concatenate(parts, axis=axis) if len(parts) > 1 else a
    for _ in range(n):
        hi = tuple(slice(1, None) if i == axis else slice(None) for i in range(a.ndim))
        lo = tuple(slice(None, -1) if i == axis else slice(None) for i in range(a.ndim))
        a = a[hi] - a[lo]
    return a


def _along_shape(v, a, axis):
    v = _check_operand(v)
    if np.ndim(v) == 0:
        shape = list(np.shape(a))
        shape[axis] = 1
        return broadcast_to(v, tuple(shape)) if is_traced(v) else np.broadcast_to(v, shape)
    return v


@implements(np.ediff1d)
def ediff1d(ary, to_end=None, to_begin=None):
    d = diff(ravel(ary))
    parts = ([ravel(_check_operand(to_begin))] if to_begin is not None else []) + [d] + \
        ([ravel(_check_operand(to_end))] if to_end is not None else [])
    return concatenate(parts) if len(parts) > 1 else d


@implements(np.cumprod)
def cumprod(a, axis=None, dtype=None, out=None):
    """Running products by doubling (Hillis-Steele): log2(n) rounds of products with the
    array shifted by 1, 2, 4, ... along the axis; exact derivatives, no division."""
    _no_extras("cumprod", out=out)
    a = _check_operand(a)
    if dtype is not None:
        a = _as_dtype(a, np.dtype(dtype))
    elif _dtype_of(a).kind in "bi":
        a = _as_dtype(a, np.result_type(_dtype_of(a), np.int64))
    if axis is None:
        a, axis = ravel(a), 0
    if np.ndim(a) == 0:
        a = reshape(a, (1,))
    axis = _axis_of(a, axis)
    n = a.shape[axis]
    shift = 1
    while shift < n:
        shifted = moved(a, lambda t, s, k=shift: np.concatenate(
            [np.full(t.shape[:axis] + (k,) + t.shape[axis + 1:], s, t.dtype),
             np.take(t, np.arange(n - k), axis=axis)], axis=axis), fill=1)
        a = a * shifted
        shift *= 2
    return a


@implements(np.ptp)
def ptp(a, axis=None, out=None, keepdims=False):
    _no_extras("ptp", out=out)
    return max(a, axis=axis, keepdims=keepdims) - min(a, axis=axis, keepdims=keepdims)


@implements(np.average)
def average(a, axis=None, weights=None, returned=False, *, keepdims=False):
    a = _check_operand(a)
    if weights is None:
        avg = mean(a, axis=axis, keepdims=keepdims)
        count = np.full(np.shape(avg), _count(a, axis), np.float64)
        return (avg, count) if returned else avg
    w = _check_operand(weights)
    if np.shape(w) != np.shape(a):
        if axis is None or np.ndim(w) != 1 or np.ndim(a) == 1:
            raise TypeError("Axis must be specified when shapes of a and weights differ.")
        ax = _axis_of(a, axis)
        w = reshape(w, tuple(np.shape(w)[0] if i == ax else 1 for i in range(np.ndim(a))))
        w = broadcast_to(w, np.shape(a))
    scl = sum(w, axis=axis, keepdims=keepdims)
    avg = sum(a * w, axis=axis, keepdims=keepdims) / scl
    return (avg, broadcast_to(scl, np.shape(avg))) if returned else avg


def _nan_reduction(name, reduce, fill):
    func = getattr(np, name)

    @implements(func)
    def handler(a, axis=None, *args, keepdims=False, **kwargs):
        _no_extras(name, **{k: v for k, v in kwargs.items() if k not in ("dtype", "ddof")})
        a = _check_operand(a)
        if _dtype_of(a).kind != "f":
            return reduce(a, axis=axis, keepdims=keepdims, **kwargs)
        nan = a != a
        return reduce(np.where(nan, fill, a), axis=axis, keepdims=keepdims, nan=nan, **kwargs)
    return handler


def _nansum(a, axis=None, keepdims=False, nan=None, **kw):
    return sum(a, axis=axis, keepdims=keepdims, **kw)


def _nanprod(a, axis=None, keepdims=False, nan=None, **kw):
    return prod(a, axis=axis, keepdims=keepdims, **kw)


def _nan_count(a, axis, keepdims, nan):
    if nan is None:
        return _count(a, axis)
    return sum(_as_dtype(np.logical_not(nan), np.dtype(np.float64)), axis=axis,
               keepdims=keepdims)


def _nanmean(a, axis=None, keepdims=False, nan=None, **kw):
    return sum(a, axis=axis, keepdims=keepdims) / _nan_count(a, axis, keepdims, nan)


def _nanvar(a, axis=None, keepdims=False, nan=None, ddof=0, **kw):
    n = _nan_count(a, axis, True, nan)
    m = sum(a, axis=axis, keepdims=True) / n
    c = a - m if nan is None else np.where(nan, 0.0, a - m)
    out = sum(c * c, axis=axis, keepdims=True) / (n - ddof)
    return out if keepdims else squeeze(out, axis)


def _nanstd(a, axis=None, keepdims=False, nan=None, ddof=0, **kw):
    return np.sqrt(_nanvar(a, axis, keepdims, nan, ddof))


def _nan_extreme(reduce, fill):
    def r(a, axis=None, keepdims=False, nan=None, **kw):
        out = reduce(a, axis=axis, keepdims=keepdims)
        if nan is None:
            return out
        # a slice of NaNs only: NaN, as NumPy's (which also warns)
        return np.where(all_(nan, axis=axis, keepdims=keepdims), np.nan, out)
    return r


_nan_reduction("nansum", _nansum, 0.0)
_nan_reduction("nanprod", _nanprod, 1.0)
_nan_reduction("nanmean", _nanmean, 0.0)
_nan_reduction("nanvar", _nanvar, 0.0)
_nan_reduction("nanstd", _nanstd, 0.0)
_nan_reduction("nanmax", _nan_extreme(lambda a, **k: max(a, **k), -np.inf), -np.inf)
_nan_reduction("nanmin", _nan_extreme(lambda a, **k: min(a, **k), np.inf), np.inf)


@implements(np.gradient)
def gradient(f, *varargs, axis=None, edge_order=1):
    f = _check_operand(f)
    if _dtype_of(f).kind in "iub":
        f = _as_float64(f)
    axes = _normalize_axes(axis, f.ndim) if axis is not None else tuple(range(f.ndim))
    if isinstance(axis, (int, np.integer)):
        axes = (_axis_of(f, axis),)
    if not varargs:
        spacing = [1.0] * len(axes)
    elif len(varargs) == 1 and np.ndim(varargs[0]) == 0:
        spacing = [varargs[0]] * len(axes)
    else:
        spacing = list(varargs)
    if edge_order != 1:
        raise NotImplementedError("numpy.gradient with edge_order=2 on traced values")
    out = []
    for ax, h in zip(axes, spacing):
        if np.ndim(h) != 0:
            raise NotImplementedError("numpy.gradient with coordinate arrays on traced values")
        n = f.shape[ax]
        if n < 2:
            raise ValueError("Shape of array too small to calculate a numerical gradient, "
                             "at least (edge_order + 1) elements are required.")
        def sl(a, b):
            return tuple(slice(a, b) if i == ax else slice(None) for i in range(f.ndim))
        first = (f[sl(1, 2)] - f[sl(0, 1)]) / h
        last = (f[sl(n - 1, n)] - f[sl(n - 2, n - 1)]) / h
        parts = [first]
        if n > 2:
            parts.append((f[sl(2, n)] - f[sl(0, n - 2)]) / (2.0 * h))
        parts.append(last)
        out.append(concatenate(parts, axis=ax))
    return out[0] if len(out) == 1 else out


@implements(np.convolve)
def convolve(a, v, mode="full"):
    a, v = ravel(_check_operand(a)), ravel(_check_operand(v))
    if np.size(a) < np.size(v):
        a, v = v, a
    n, m = np.size(a), np.size(v)
    if m == 0:
        raise ValueError("v cannot be empty")
    # full[k] = sum_j a[k - j] v[j]: rows of a shifted, zero outside (a gather with fill)
    k = np.arange(n + m - 1)[:, None] - np.arange(m)[None, :]
    valid = (k >= 0) & (k < n)
    if not is_traced(a):
        a = traced_constant(np.asarray(a))
    windows = moved(a, lambda t, s: np.where(valid, t[np.clip(k, 0, n - 1)], s), fill=0.0)
    full = matmul(windows, _as_dtype(v, windows.dtype))
    if mode == "full":
        return full
    if mode == "same":
        start = (m - 1) // 2
        return full[start:start + n]
    if mode == "valid":
        return full[m - 1:n]
    raise ValueError(f"mode must be one of 'valid', 'same', or 'full' (got {mode!r})")


@implements(np.correlate)
def correlate(a, v, mode="valid"):
    return convolve(a, np.flip(v), mode) if np.size(a) >= np.size(v) else \
        np.flip(convolve(np.flip(a), v, mode))


# -- np.linalg ------------------------------------------------------------------------------
def _float_matrix(a, name, square=True):
    a = _check_operand(a)
    if _dtype_of(a).kind in "iub":
        a = _as_float64(a)
    if np.ndim(a) < 2:
        raise np.linalg.LinAlgError(f"{np.ndim(a)}-dimensional array given. Array must be at "
                                    f"least two-dimensional")
    if square and np.shape(a)[-1] != np.shape(a)[-2]:
        raise np.linalg.LinAlgError("Last 2 dimensions of the array must be square")
    return a


def _linalg_function(func):
    """Register a np.linalg function; with no traced argument it is NumPy's."""
    def register(fn):
        def handler(*args, **kwargs):
            if not builtins.any(is_traced(x) for x in args + tuple(kwargs.values())):
                return func(*args, **kwargs)
            return fn(*args, **kwargs)
        handler.__name__ = fn.__name__
        HANDLED_FUNCTIONS[func] = handler
        return fn
    return register


@_linalg_function(np.linalg.solve)
def linalg_solve(a, b):
    a = _float_matrix(a, "solve")
    b = _check_operand(b)
    common = np.result_type(_dtype_of(a), _dtype_of(b), np.float16)
    a, b = _as_dtype(a, common), _as_dtype(b, common)
    vector = np.ndim(b) == 1
    if vector:
        b = reshape(b, np.shape(b) + (1,))
    batch = tuple(np.broadcast_shapes(np.shape(a)[:-2], np.shape(b)[:-2]))
    a = broadcast_to(a, batch + np.shape(a)[-2:])
    b = broadcast_to(b, batch + np.shape(b)[-2:])
    if not is_traced(a):
        a = traced_constant(np.asarray(a))
    x = linalg.solve(a, b)        # through lu(a): one factorisation per matrix and program
    return reshape(x, np.shape(x)[:-1]) if vector else x


@_linalg_function(np.linalg.inv)
def linalg_inv(a):
    return linalg.inverse(_float_matrix(a, "inv"))


@_linalg_function(np.linalg.det)
def linalg_det(a):
    return linalg.det(_float_matrix(a, "det"))


@_linalg_function(np.linalg.slogdet)
def linalg_slogdet(a):
    packed = linalg.slogdet(_float_matrix(a, "slogdet"))
    return np.linalg._linalg.SlogdetResult(packed[..., 0], packed[..., 1])


@_linalg_function(np.linalg.cholesky)
def linalg_cholesky(a, /, *, upper=False):
    a = _float_matrix(a, "cholesky")
    if not upper:
        return linalg.cholesky(a)
    # NumPy reads the upper triangle then: the lower one of the transpose
    return swapaxes(linalg.cholesky(swapaxes(a, -1, -2)), -1, -2)


def _eigh(a, UPLO):
    a = _float_matrix(a, "eigh")
    if UPLO not in ("L", "U"):
        raise ValueError("UPLO argument must be 'L' or 'U'")
    if UPLO == "U":                  # the upper triangle is the lower one of the transpose
        a = swapaxes(a, -1, -2)
    packed = linalg.eigh(a)
    n = a.shape[-1]
    return packed[..., n], packed[..., :n]


@_linalg_function(np.linalg.eigh)
def linalg_eigh(a, UPLO="L"):
    w, v = _eigh(a, UPLO)
    return np.linalg._linalg.EighResult(w, v)


@_linalg_function(np.linalg.eigvalsh)
def linalg_eigvalsh(a, UPLO="L"):
    return _eigh(a, UPLO)[0]


def _svd(a):
    a = _float_matrix(a, "svd", square=False)
    return linalg.svd_parts(linalg.svd(a), a.shape)


@_linalg_function(np.linalg.svd)
def linalg_svd(a, full_matrices=True, compute_uv=True, hermitian=False):
    u, s, vt = _svd(a)
    if not compute_uv:
        return s
    m, n = np.shape(a)[-2:]
    if full_matrices and m != n:
        raise NotImplementedError(
            "numpy.linalg.svd with full_matrices=True of a non-square traced matrix (the "
            "extra singular vectors are not unique, nor is their derivative); pass "
            "full_matrices=False")
    return np.linalg._linalg.SVDResult(u, s, vt)


@_linalg_function(np.linalg.svdvals)
def linalg_svdvals(x, /):
    return _svd(x)[1]


@_linalg_function(np.linalg.qr)
def linalg_qr(a, mode="reduced"):
    a = _float_matrix(a, "qr", square=False)
    if mode not in ("reduced", "r"):
        raise NotImplementedError(f"numpy.linalg.qr mode={mode!r} on traced values "
                                  f"('reduced' and 'r' are supported)")
    q, r = linalg.qr_parts(linalg.qr(a), a.shape)
    return r if mode == "r" else np.linalg._linalg.QRResult(q, r)


def _pinv_cutoff(s, rcond, rtol, shape):
    if rcond is None and rtol is None:
        rtol = builtins_max(shape[-2:]) * np.finfo(s.dtype).eps
    tol = rcond if rcond is not None else rtol
    return tol * max(s, axis=-1, keepdims=True)


@_linalg_function(np.linalg.pinv)
def linalg_pinv(a, rcond=None, hermitian=False, *, rtol=None):
    a = _float_matrix(a, "pinv", square=False)
    u, s, vt = _svd(a)
    cutoff = _pinv_cutoff(s, rcond, rtol, a.shape)
    kept = s > cutoff
    s_inv = np.where(kept, 1.0 / np.where(kept, s, 1.0), 0.0)
    return matmul(swapaxes(vt, -1, -2) * s_inv[..., None, :], swapaxes(u, -1, -2))


@_linalg_function(np.linalg.lstsq)
def linalg_lstsq(a, b, rcond=None):
    a = _float_matrix(a, "lstsq", square=False)
    b = _check_operand(b)
    m, n = a.shape
    u, s, vt = _svd(a)
    tol = (np.finfo(a.dtype).eps * builtins_max(m, n) if rcond is None else rcond) * \
        max(s)
    kept = s > tol
    rank = int(sum(kept))             # a guard: the rank holds only on this path
    s_inv = np.where(kept, 1.0 / np.where(kept, s, 1.0), 0.0)
    ub = matmul(swapaxes(u, -1, -2), b)
    x = matmul(swapaxes(vt, -1, -2), ub * (s_inv if np.ndim(b) == 1 else s_inv[:, None]))
    if rank == n and m > n:
        r = b - matmul(a, x)
        residuals = reshape(sum(r * r, axis=0), (-1,))
    else:
        residuals = np.zeros((0,), a.dtype)
    return x, residuals, rank, s


def _matrix_norm(x, ord, axes, keepdims):
    r, c = axes
    if ord in (None, "fro"):
        return np.sqrt(sum(x * x, axis=axes, keepdims=keepdims))
    if ord in (2, -2, "nuc"):
        moved = moveaxis(x, (r, c), (-2, -1))
        s = _svd(moved)[1]
        out = {2: lambda: max(s, axis=-1), -2: lambda: min(s, axis=-1),
               "nuc": lambda: sum(s, axis=-1)}[ord]()
        if keepdims:
            out = expand_dims(out, sorted(axes))
        return out
    if ord in (1, -1, np.inf, -np.inf):
        # 1: the largest column sum of |x|, inf: the largest row sum
        along, over = (r, c) if ord in (1, -1) else (c, r)
        sums = sum(np.abs(x), axis=along, keepdims=True)
        out = (max if ord > 0 else min)(sums, axis=over, keepdims=True)
        return out if keepdims else squeeze(out, axis=axes)
    raise ValueError(f"Invalid norm order {ord!r} for matrices")


@implements(np.linalg.norm)
def norm(x, ord=None, axis=None, keepdims=False):
    x = _check_operand(x)
    if _dtype_of(x).kind in "iub":
        x = _as_float64(x)
    if axis is None:
        if ord is None:
            return np.sqrt(sum(x * x, keepdims=keepdims))
        axis = tuple(range(x.ndim))
        if len(axis) not in (1, 2):
            raise ValueError("Improper number of dimensions to norm.")
    axes = _normalize_axes(axis, x.ndim) if not isinstance(axis, (tuple, list)) else \
        tuple(a % x.ndim for a in axis)
    if len(axes) == 2:
        return _matrix_norm(x, ord, axes, keepdims)
    if len(axes) != 1:
        raise ValueError("Improper number of dimensions to norm.")
    (ax,) = axes
    a = np.abs(x)
    if ord is None or ord == 2:
        return np.sqrt(sum(x * x, axis=ax, keepdims=keepdims))
    if ord == np.inf:
        return max(a, axis=ax, keepdims=keepdims)
    if ord == -np.inf:
        return min(a, axis=ax, keepdims=keepdims)
    if ord == 0:
        return sum(_as_dtype(x != 0, x.dtype), axis=ax, keepdims=keepdims)
    if ord == 1:
        return sum(a, axis=ax, keepdims=keepdims)
    if isinstance(ord, str):
        raise ValueError(f"Invalid norm order '{ord}' for vectors")
    return sum(a ** ord, axis=ax, keepdims=keepdims) ** (1.0 / ord)


@implements(np.linalg.matrix_norm)
def matrix_norm(x, /, *, keepdims=False, ord="fro"):
    return norm(x, ord=ord, axis=(-2, -1), keepdims=keepdims)


@implements(np.linalg.vector_norm)
def vector_norm(x, /, *, axis=None, keepdims=False, ord=2):
    x = _check_operand(x)
    if axis is None:
        out = norm(ravel(x), ord=ord)
        return reshape(out, (1,) * x.ndim) if keepdims else out
    return norm(x, ord=ord, axis=axis, keepdims=keepdims)


# -- indexing -----------------------------------------------------------------------------


def _concrete_key(key):
    if isinstance(key, Tracer):
        if key.dtype.kind not in "iub":
            raise IndexError("arrays used as indices must be of integer (or boolean) type")
        return key.concrete_value()
    if isinstance(key, tuple):
        return tuple(_concrete_key(k) for k in key)
    if isinstance(key, list):
        return np.asarray([_concrete_key(k) for k in key]) if key else np.asarray(key, int)
    return key


def _reshape_only_shape(shape, key):
    """The result shape when ``key`` only inserts axes (``None``, ``:``, ``...``), else None."""
    key = key if isinstance(key, tuple) else (key,)
    if not all(k is None or k is Ellipsis or (isinstance(k, slice) and k == slice(None))
               for k in key) or builtins.sum(k is Ellipsis for k in key) > 1:
        return None
    n_real = builtins.sum(1 for k in key if k is not None and k is not Ellipsis)
    if n_real > len(shape):
        return None
    if Ellipsis not in key:
        key = key + (Ellipsis,)
    out, dims = [], iter(shape)
    for k in key:
        if k is None:
            out.append(1)
        elif k is Ellipsis:
            out.extend(next(dims) for _ in range(len(shape) - n_real))
        else:
            out.append(next(dims))
    return tuple(out)


def _take_first_axis(x, k):
    """``x[k]`` for traced integers ``k``: a gather at positions computed in the program
    (a new index replays the same kernel). That ``k`` is in bounds is a guard: a replay
    with an index out of bounds retraces, and the trace raises NumPy's IndexError."""
    n = x.shape[0]
    _guard_in_bounds(k, n, 0)
    inner = x.shape[1:]
    stride = int(np.prod(inner, dtype=np.int64))
    k = np.where(k < 0, k + n, k)
    pos = reshape(k, k.shape + (1,) * len(inner)) * stride + \
        np.arange(stride, dtype=np.int64).reshape(inner)
    return sh.gather(x, _as_dtype(pos, np.dtype(np.int64)))


def getitem(x, key):
    lone = key[0] if isinstance(key, tuple) and len(key) == 1 else key
    if is_traced(lone) and lone.dtype.kind in "iu" and is_traced(x) and x.ndim >= 1:
        return _take_first_axis(x, lone)
    key = _concrete_key(key)
    if not is_traced(x):
        return np.asarray(x)[key]
    new_shape = _reshape_only_shape(x.shape, key)
    if new_shape is not None:        # x[:, None], x[..., None, :]: a reshape, no copy
        return reshape(x, new_shape)
    positions = _positions(x.shape, key)
    if positions.shape == x.shape and np.array_equal(positions.reshape(-1),
                                                     np.arange(positions.size)):
        return x if _basic(key) else _fresh(x)    # (a view, or a copy in NumPy)
    out = x._writes.forward(positions) if x._writes is not None else None
    if out is None:
        out = sh.gather(x, positions)
    if _basic(key) and (out.ndim > 0 or _has_ellipsis(key)):
        out.mark_view_of(x)          # NumPy returns a view (an element alone is a copy)
    return out


def _has_ellipsis(key):
    return any(k is Ellipsis for k in (key if isinstance(key, tuple) else (key,)))


def _positions(shape, key):
    """`index_positions`, its IndexError naming the shape and the user's line."""
    try:
        return sh.index_positions(shape, key)
    except IndexError as e:
        from .tracing import format_where, user_frame
        raise IndexError(f"{e} (indexing an array of shape {shape})\n  at "
                         f"{format_where(user_frame())}") from None


def _basic(key):
    """Whether NumPy index ``key`` is basic indexing (a view), not advanced (a copy)."""
    key = key if isinstance(key, tuple) else (key,)
    return all(k is None or k is Ellipsis or isinstance(k, (slice, int, np.integer))
               for k in key)


def setitem(x, key, value):
    """``x[key] = value`` on a traced array, recorded as a functional update (NumPy's
    semantics: value cast to x's dtype and broadcast, the last write wins)."""
    check_assignable(x, value)
    key = _concrete_key(key)
    setitem_flat(x, _positions(x.shape, key), value)


def check_assignable(x, value):
    """Raise where writing ``value`` into traced ``x`` could differ from NumPy."""
    from .tracing import _state, format_where, user_frame, TracingError as TE
    where = format_where(user_frame())
    if x._base is not None:
        raise TE(f"{where}: assignment into a view of a traced array (a slice, reshape or "
                 f"transpose of it) would change that array in NumPy; assign into the array "
                 f"itself (y[a, b] = v rather than y[a][b] = v)")
    if x.is_input:
        raise TE(f"{where}: assignment into an argument of the traced function would change "
                 f"the caller's array; copy it first (x = x.copy()) and assign into the copy")
    if not _state.builders or _state.builders[-1] is not x.builder:
        raise TE(f"{where}: assignment into a traced array of an enclosing transform; copy "
                 f"it first (y = y.copy())")
    if is_traced(value) and value.dtype.kind in "fc" and x.dtype.kind not in "fc" and \
            value.builder.depends_on_diff(value.node):
        raise TE(f"{where}: assigning a differentiated value into a {x.dtype} array would "
                 f"drop its derivative (NumPy casts it); make the array floating-point")


def setitem_flat(x, positions, value):
    """Write ``value`` (broadcast to ``positions``' shape) at the flat ``positions`` of
    traced ``x``: a functional update, the last write to a position wins. It is kept
    pending on ``x`` (`Writes`) until the program reads ``x``."""
    flat = positions.reshape(-1)
    vals = reshape(broadcast_to(_as_dtype(value, x.dtype), positions.shape), (flat.size,))
    if flat.size == 0:               # nothing written
        return
    if is_traced(vals):
        if vals._base is not None:
            vals.check_fresh()       # a view used after its array was assigned to
        # the values as they are now: the same tracer may be assigned to before the
        # write is recorded (z[0] = 1.0 after y[:3] = z)
        vals = _fresh(vals)
    pos, order = _last_writes(flat)
    after = None
    if x.value is not None:          # the array's value after the write, as NumPy's
        after = np.array(x.value, copy=True, order="C")     # (reshape(-1): a view)
        after.reshape(-1)[pos] = np.asarray(vals.value if is_traced(vals) else vals)[order]
    x.defer_write((pos, order, vals), after)


def _last_writes(flat):
    """The positions ``flat`` writes to, sorted, and for each the index of its last write
    there (the last write to a position wins)."""
    if flat.size < 2 or (flat[1:] > flat[:-1]).all():     # (a slice, an element)
        return flat, np.arange(flat.size, dtype=np.int64)
    pos, from_end = np.unique(flat[::-1], return_index=True)
    return pos, flat.size - 1 - from_end


def _update(x, writes, vals):
    """``x`` with ``writes`` made, as one op: each ``(positions, indices)`` writes the values
    at those indices of ``vals`` (offset by the sizes of the writes before it) to those
    flat positions of x, later writes winning. Every position written reads its last
    value (a gather: exact, -0.0 and inf kept); the others keep x's own value."""
    source = np.zeros(x.size, np.int64)
    mask = np.zeros(x.size, bool)
    offset = 0
    for pos, order, size in writes:
        source[pos] = order + offset
        mask[pos] = True
        offset += size
    return np.where(mask.reshape(x.shape), sh.gather(vals, source.reshape(x.shape)), x)


class Writes:
    """Item assignments into one traced array that the op list does not have yet.

    Recorded one by one, each was an update of the whole array, so a loop of n
    assignments (``y[i] = y[i - 1] * a + x[i]``) cost O(n) per assignment, O(n²) in all,
    and as much again in reverse mode. Kept here instead:
    - a read at constant positions that one of the latest writes covers is that write's
      values (`forward`), and one that none of them touches reads the array as it was
      before them: the same values, no dependence on the array;
    - the first time the program reads the array otherwise (`Tracer.node`), all the
      writes become one update (`record`): a concatenation of their values and one
      gather, the bits of the updates one after another.
    """

    __slots__ = ("base", "writes")

    def __init__(self, base):
        self.base = base        # the array before these writes (a tracer)
        self.writes = []        # (positions sorted, index of the last value, values: 1-D)

    def add(self, write):
        self.writes.append(write)

    def record(self):
        vals = [w[2] for w in self.writes]
        writes = [(pos, order, v.size) for pos, order, v in self.writes]
        return _update(self.base, writes, vals[0] if len(vals) == 1 else concatenate(vals))

    def forward(self, positions):
        """The values at constant ``positions`` (an array of flat positions) read without
        the update, or None when they need it."""
        flat = positions.reshape(-1)
        if flat.size > _FORWARD_MAX:
            return None
        for k in range(len(self.writes) - 1, -1, -1):
            if len(self.writes) - k > _FORWARD_DEPTH:
                return None
            pos, order, vals = self.writes[k]
            at = np.minimum(np.searchsorted(pos, flat), pos.size - 1)
            hit = pos[at] == flat
            if hit.any():
                if not hit.all():
                    return None          # some positions written here, some not
                out = sh.gather(vals, order[at].reshape(positions.shape))
                # (constants written: a traced array still)
                return out if is_traced(out) else traced_constant(out)
        return sh.gather(self.base, positions)


# reads of at most this many elements are forwarded (a lookup in Python: rows of a matrix
# in a loop), through at most this many writes
_FORWARD_MAX = 4096
_FORWARD_DEPTH = 64


# -- Tracer protocol and methods -----------------------------------------------------------
def _array_ufunc(self, ufunc, method, *inputs, **kwargs):
    if kwargs.get("out") is not None:
        raise TracingError(f"numpy.{ufunc.__name__}(..., out=...) on traced values is not "
                           f"supported; use the result (y = f(x)) or y[...] = f(x)")
    if method == "reduce" and ufunc in _UFUNC_REDUCE:
        extra = {k: v for k, v in kwargs.items() if k in ("axis", "keepdims")}
        if "axis" not in extra:
            extra["axis"] = 0
        return _UFUNC_REDUCE[ufunc](*inputs, **extra)
    if method != "__call__":
        raise NotImplementedError(f"numpy.{ufunc.__name__}.{method} is not supported on "
                                  f"traced values")
    kwargs = {k: v for k, v in kwargs.items() if v is not None}
    dtype = kwargs.pop("dtype", None)
    if kwargs:
        raise NotImplementedError(f"numpy.{ufunc.__name__} with arguments {sorted(kwargs)} "
                                  f"is not supported on traced values")
    handler = HANDLED_UFUNCS.get(ufunc)
    if handler is None:
        raise NotImplementedError(f"jvpvjp does not support numpy.{ufunc.__name__} on traced "
                                  f"values")
    out = handler(*inputs)
    return out if dtype is None else _as_dtype(out, np.dtype(dtype))


_UFUNC_REDUCE = {np.add: sum, np.multiply: prod, np.maximum: max, np.minimum: min}


def _array_function(self, func, types, args, kwargs):
    handler = HANDLED_FUNCTIONS.get(func)
    if handler is None:
        mod = getattr(func, "__module__", "numpy") or "numpy"
        mod = "numpy" if mod.startswith("numpy") and "linalg" not in mod else mod
        raise NotImplementedError(f"jvpvjp does not support {mod}.{func.__name__} on traced "
                                  f"values")
    return handler(*args, **kwargs)


def _binop(ufunc, reflected=False):
    handler = HANDLED_UFUNCS[ufunc]
    if reflected:
        return lambda self, other: handler(other, self)
    return lambda self, other: handler(self, other)


def _astype(self, dtype, *args, **kwargs):
    out = _as_dtype(self, np.dtype(dtype))
    return _fresh(out) if out is self else out


Tracer.__array_ufunc__ = _array_ufunc
Tracer.__array_function__ = _array_function
for _name, _uf in [("add", np.add), ("sub", np.subtract), ("mul", np.multiply),
                   ("truediv", np.true_divide), ("pow", np.power), ("matmul", np.matmul),
                   ("lt", np.less), ("le", np.less_equal), ("gt", np.greater),
                   ("ge", np.greater_equal), ("eq", np.equal), ("ne", np.not_equal),
                   ("and", np.bitwise_and), ("or", np.bitwise_or), ("xor", np.bitwise_xor),
                   ("mod", np.remainder), ("floordiv", np.floor_divide)]:
    setattr(Tracer, f"__{_name}__", _binop(_uf))
    if _name not in ("lt", "le", "gt", "ge", "eq", "ne"):
        setattr(Tracer, f"__r{_name}__", _binop(_uf, reflected=True))
Tracer.__neg__ = lambda self: HANDLED_UFUNCS[np.negative](self)
Tracer.__pos__ = _fresh
Tracer.__abs__ = lambda self: HANDLED_UFUNCS[np.absolute](self)
Tracer.__invert__ = lambda self: HANDLED_UFUNCS[np.invert](self)
Tracer.__getitem__ = getitem
Tracer.__setitem__ = setitem
Tracer.astype = _astype
Tracer.sum = lambda self, axis=None, keepdims=False, **kw: sum(self, axis=axis, keepdims=keepdims, **kw)
Tracer.prod = lambda self, axis=None, keepdims=False, **kw: prod(self, axis=axis, keepdims=keepdims, **kw)
Tracer.max = lambda self, axis=None, keepdims=False, **kw: max(self, axis=axis, keepdims=keepdims, **kw)
Tracer.min = lambda self, axis=None, keepdims=False, **kw: min(self, axis=axis, keepdims=keepdims, **kw)
Tracer.mean = lambda self, axis=None, keepdims=False, **kw: mean(self, axis=axis, keepdims=keepdims, **kw)
Tracer.var = lambda self, axis=None, ddof=0, keepdims=False: var(self, axis=axis, ddof=ddof, keepdims=keepdims)
Tracer.std = lambda self, axis=None, ddof=0, keepdims=False: std(self, axis=axis, ddof=ddof, keepdims=keepdims)
Tracer.reshape = lambda self, *shape, order="C": reshape(
    self, shape[0] if len(shape) == 1 and not isinstance(shape[0], numbers.Integral) else shape, order)
Tracer.transpose = lambda self, *axes: transpose(
    self, None if not axes else (axes[0] if len(axes) == 1 and not isinstance(axes[0], numbers.Integral) else axes))
Tracer.T = property(lambda self: transpose(self))
Tracer.mT = property(lambda self: swapaxes(self, -1, -2))
Tracer.ravel = lambda self, order="C": ravel(self, order)
Tracer.flatten = lambda self, order="C": _fresh(ravel(self, order))
Tracer.squeeze = lambda self, axis=None: squeeze(self, axis)
Tracer.swapaxes = swapaxes
Tracer.dot = lambda self, b: dot(self, b)
Tracer.clip = lambda self, min=None, max=None: clip(self, min, max)
Tracer.copy = lambda self, order="C": copy(self)
Tracer.cumsum = lambda self, axis=None, dtype=None, out=None: cumsum(self, axis, dtype, out)
Tracer.argsort = lambda self, axis=-1, kind=None, order=None: argsort(self, axis)
Tracer.argmax = lambda self, axis=None, out=None, keepdims=False: argmax(self, axis, keepdims=keepdims)
Tracer.argmin = lambda self, axis=None, out=None, keepdims=False: argmin(self, axis, keepdims=keepdims)


def _sort_in_place(self, axis=-1, kind=None, order=None):
    check_assignable(self, self)
    self.rebind(sort(self, axis))


Tracer.sort = _sort_in_place
Tracer.any = lambda self, axis=None, out=None, keepdims=False: any_(self, axis, out, keepdims)
Tracer.all = lambda self, axis=None, out=None, keepdims=False: all_(self, axis, out, keepdims)
Tracer.real = property(lambda self: real(self))
Tracer.imag = property(lambda self: imag(self))
Tracer.conj = lambda self: conjugate(self)
Tracer.conjugate = lambda self: conjugate(self)
Tracer.flat = property(lambda self: _FlatIndexer(self))
