"""Elementwise primitives: one row each.

A differentiable row gives the NumPy ufunc, the partial derivative of the output with
respect to each input (as traced code: `d(x, out)` or `d(a, b, out)`), the Numba
expression, and the test domain. JVP, VJP, broadcasting and tests follow from the row.
Inputs reach these primitives already converted to one dtype (see `numpy_api`).
"""
from __future__ import annotations

import functools

import numpy as np

from . import Case, Primitive, broadcast_shapes, unbroadcast, zeros


@functools.lru_cache(maxsize=None)
def _ufunc_dtype(ufunc, *dtypes):
    return ufunc(*[np.zeros(0, d) for d in dtypes]).dtype


def _abstract(ufunc):
    def abstract_eval(*avals, **params):
        shape = broadcast_shapes(*[s for s, _ in avals])
        return shape, _ufunc_dtype(ufunc, *[d for _, d in avals])
    return abstract_eval


def _fit(t, out):
    """Give a tangent the output's shape and dtype (an input may have broadcast)."""
    from .shape import broadcast_to, convert
    if t.dtype != out.dtype:
        t = convert(t, dtype=out.dtype)
    if t.shape != out.shape:
        t = broadcast_to(t, shape=out.shape)
    return t


def _ufunc_lower(fmt):
    return lambda args, op: fmt.format(*args)


def unary(name, ufunc, deriv, lower, domain=(-2.0, 2.0), avoid=None, linear=False,
          scalar=None, numpy=None, numpy_faster=False, complex=False, loop=None, cost=1,
          array_loop=None, **tol):
    """Register ``name``: ``deriv(x, out)`` is d out / d x as traced code (None: zero);
    ``lower`` the Numba expression template, ``scalar`` the tapes' one when it differs;
    ``numpy`` the ufuncs it implements (default: ``ufunc``)."""
    prim = None

    if linear:
        def jvp_rule(primals, tangents, out):
            return None if tangents[0] is None else prim(tangents[0])

        def vjp_rule(ct, primals, out, needs):
            return (prim(ct),)
    else:
        def jvp_rule(primals, tangents, out):
            (t,) = tangents
            if t is None or deriv is None:
                return None
            return t * deriv(primals[0], out)

        def vjp_rule(ct, primals, out, needs):
            if deriv is None:
                return (None,)
            return (ct * deriv(primals[0], out),)

    prim = Primitive(name, ufunc, _abstract(ufunc), jvp_rule, vjp_rule,
                     _ufunc_lower(lower), batch_rule="elementwise",
                     tests=[Case(ufunc, "broadcast", (domain,), avoid=avoid, name=name, **tol)],
                     kind="elementwise", nin=1, numpy=(ufunc,) if numpy is None else numpy,
                     scalar=scalar or lower, numpy_faster=numpy_faster, complex=complex,
                     loop=loop, cost=cost, array_loop=array_loop)
    return prim


def binary(name, ufunc, derivs, lower, domain=((-2.0, 2.0), (-2.0, 2.0)), scalar=None,
           numpy=None, commutative=False, numpy_faster=False, complex=False, cost=1, **case):
    """Register ``name``: ``derivs[i](a, b, out)`` is d out / d input i (None: zero); the
    other arguments as for `unary`."""

    def jvp_rule(primals, tangents, out):
        a, b = primals
        terms = []
        for i, t in enumerate(tangents):
            if t is None or derivs[i] is None:
                continue
            d = derivs[i](a, b, out)
            terms.append(t if d is _ONE else (-t if d is _MINUS_ONE else t * d))
        if not terms:
            return None
        total = terms[0]
        for t in terms[1:]:
            total = total + t
        return _fit(total, out)

    def vjp_rule(ct, primals, out, needs):
        a, b = primals
        cts = []
        for i, x in enumerate(primals):
            if not needs[i] or derivs[i] is None:
                cts.append(None)
                continue
            d = derivs[i](a, b, out)
            if d is _ONE or d is _MINUS_ONE:    # negate after summing: fewer elements
                c = unbroadcast(ct, x.shape)
                cts.append(c if d is _ONE else -c)
            else:
                cts.append(unbroadcast(ct * d, x.shape))
        return tuple(cts)

    return Primitive(name, ufunc, _abstract(ufunc), jvp_rule, vjp_rule, _ufunc_lower(lower),
                     batch_rule="elementwise",
                     tests=[Case(ufunc, "broadcast", domain, name=name, **case)],
                     kind="elementwise", nin=2, numpy=(ufunc,) if numpy is None else numpy,
                     scalar=scalar or lower, commutative=commutative,
                     numpy_faster=numpy_faster, complex=complex, cost=cost)


def comparison(name, ufunc, lower, scalar=None, commutative=False, complex=False):
    """Register ``name``, a boolean-valued ufunc (no derivative)."""
    dom = ((-2.0, 2.0), (-2.0, 2.0))
    return Primitive(name, ufunc, _abstract(ufunc), lower=_ufunc_lower(lower),
                     batch_rule="elementwise",
                     differentiable=False,
                     tests=[Case(ufunc, "broadcast", dom if ufunc.nin == 2 else dom[:1],
                                 name=name)],
                     kind="elementwise", nin=ufunc.nin, numpy=(ufunc,),
                     scalar=scalar or lower, commutative=commutative, complex=complex)


# Sentinels for the common derivatives +1 and -1, so add/sub emit no multiplications.
_ONE, _MINUS_ONE = object(), object()


def _one(a, b, out):
    return _ONE


def _minus_one(a, b, out):
    return _MINUS_ONE


# ---------------------------------------------------------------------------------------
# NumPy's rules where Numba's scalar functions differ: maximum / minimum return the first
# operand if it is NaN or wins, else the second; sign keeps NaN and gives +0.0 for zeros.
_MAXIMUM = "({0} if ({0} > {1} or {0} != {0}) else {1})"
_MINIMUM = "({0} if ({0} < {1} or {0} != {0}) else {1})"
_SIGN = "(1.0 if {0} > 0.0 else (-1.0 if {0} < 0.0 else (0.0 if {0} == 0.0 else {0})))"
# transcendental: NumPy's SIMD loops beat Numba's scalar calls on big arrays, and an
# element costs about ten adds; those with a ``loop`` form have a vectorisable version
# (backend.vmath) that generated loops use instead, on real floating dtypes
_FAST = dict(numpy_faster=True, cost=10)
_C = dict(complex=True)              # holomorphic: the same rules for complex values
_FAST_C = dict(_FAST, complex=True)

neg = unary("neg", np.negative, None, "(-{0})", linear=True, **_C)
exp = unary("exp", np.exp, lambda x, y: y, "np.exp({0})", loop="vexp({0})", **_FAST_C)
log = unary("log", np.log, lambda x, y: 1.0 / x, "np.log({0})", domain=(0.1, 3.0),
            loop="vlog({0})", **_FAST_C)
log1p = unary("log1p", np.log1p, lambda x, y: 1.0 / (x + 1.0), "np.log1p({0})",
              domain=(-0.8, 3.0), loop="vlog1p({0})", **_FAST)
expm1 = unary("expm1", np.expm1, lambda x, y: y + 1.0, "np.expm1({0})", loop="vexpm1({0})",
              **_FAST)
sqrt = unary("sqrt", np.sqrt, lambda x, y: 0.5 / y, "np.sqrt({0})", domain=(0.1, 3.0), **_C)
square = unary("square", np.square, lambda x, y: 2.0 * x, "({0} * {0})", **_C)
sin = unary("sin", np.sin, lambda x, y: np.cos(x), "np.sin({0})", domain=(-3.0, 3.0),
            loop="vsin({0})", array_loop="_sincos_array({0}, False)", **_FAST_C)
cos = unary("cos", np.cos, lambda x, y: -np.sin(x), "np.cos({0})", domain=(-3.0, 3.0),
            loop="vcos({0})", array_loop="_sincos_array({0}, True)", **_FAST_C)
tan = unary("tan", np.tan, lambda x, y: 1.0 + y * y, "np.tan({0})", domain=(-1.2, 1.2),
            **_FAST_C)
arcsin = unary("arcsin", np.arcsin, lambda x, y: 1.0 / np.sqrt(1.0 - x * x),
               "np.arcsin({0})", domain=(-0.9, 0.9), **_FAST)
arccos = unary("arccos", np.arccos, lambda x, y: -1.0 / np.sqrt(1.0 - x * x),
               "np.arccos({0})", domain=(-0.9, 0.9), **_FAST)
arctan = unary("arctan", np.arctan, lambda x, y: 1.0 / (1.0 + x * x), "np.arctan({0})",
               domain=(-3.0, 3.0), **_FAST)
sinh = unary("sinh", np.sinh, lambda x, y: np.cosh(x), "np.sinh({0})", **_FAST_C)
cosh = unary("cosh", np.cosh, lambda x, y: np.sinh(x), "np.cosh({0})", **_FAST_C)
tanh = unary("tanh", np.tanh, lambda x, y: 1.0 - y * y, "np.tanh({0})", loop="vtanh({0})",
             **_FAST_C)
abs_ = unary("abs", np.abs, lambda x, y: np.sign(x), "np.abs({0})", avoid=0.0,
             numpy=(np.absolute, np.fabs))
sign = unary("sign", np.sign, None, "np.sign({0})", avoid=0.0, scalar=_SIGN)

add = binary("add", np.add, (_one, _one), "({0} + {1})", commutative=True, **_C)
sub = binary("sub", np.subtract, (_one, _minus_one), "({0} - {1})", **_C)
mul = binary("mul", np.multiply, (lambda a, b, y: b, lambda a, b, y: a), "({0} * {1})",
             commutative=True, **_C)
div = binary("div", np.true_divide, (lambda a, b, y: 1.0 / b, lambda a, b, y: -y / b),
             "({0} / {1})", domain=((-2.0, 2.0), (0.5, 2.0)), **_C)
def _scaling(divide):
    """The ``one_hot_rule`` of mul (and of div, for the dividend): a one-hot value times an
    unbatched array of its shape (or one broadcast to it) is one-hot, its hot values times
    the array's elements there. (Its zeros stay zeros: the dense op's 0 * inf or 0 / 0 at
    other positions is NaN.)"""
    def rule(hot, k, args, op):
        from .shape import broadcast_to, gather, reshape
        c = args[1 - k]
        dtype = getattr(c, "dtype", None)
        if (divide and k != 0) or tuple(op.outvar.shape) != hot.shape or \
                dtype is None or not hot.dtype == np.dtype(dtype) == op.outvar.dtype:
            return None
        if tuple(np.shape(c)) != hot.shape:
            c = broadcast_to(c, shape=hot.shape)
        flat = reshape(c, shape=(int(np.prod(hot.shape, dtype=np.int64)),))
        if divide:
            return hot.shape, lambda idx, scale: scale / gather(flat, idx, bounded=True)
        return hot.shape, lambda idx, scale: scale * gather(flat, idx, bounded=True)
    return rule


neg.one_hot_rule = lambda hot, k, args, op: (op.outvar.shape, lambda idx, scale: -scale)
mul.one_hot_rule = _scaling(False)
div.one_hot_rule = _scaling(True)


# np.power itself goes through numpy_api (integer exponents become products)
pow_ = binary("pow", np.power,
              (lambda a, b, y: b * a ** (b - 1.0), lambda a, b, y: np.log(a) * y),
              "({0} ** {1})", domain=((0.2, 2.0), (-2.0, 2.0)), numpy=(), **_FAST_C)
arctan2 = binary("arctan2", np.arctan2,
                 (lambda a, b, y: b / (a * a + b * b), lambda a, b, y: -a / (a * a + b * b)),
                 "np.arctan2({0}, {1})", domain=((0.3, 2.0), (-2.0, 2.0)), **_FAST)
# Ties split the derivative equally between the two arguments, as JAX does.
maximum = binary("maximum", np.maximum,
                 (lambda a, b, y: np.where(a > b, 1.0, np.where(a == b, 0.5, 0.0)),
                  lambda a, b, y: np.where(b > a, 1.0, np.where(a == b, 0.5, 0.0))),
                 "np.maximum({0}, {1})", distinct=True, scalar=_MAXIMUM)
minimum = binary("minimum", np.minimum,
                 (lambda a, b, y: np.where(a < b, 1.0, np.where(a == b, 0.5, 0.0)),
                  lambda a, b, y: np.where(b < a, 1.0, np.where(a == b, 0.5, 0.0))),
                 "np.minimum({0}, {1})", distinct=True, scalar=_MINIMUM)

# Inverse hyperbolic functions and the cube root.
arcsinh = unary("arcsinh", np.arcsinh, lambda x, y: 1.0 / np.sqrt(x * x + 1.0),
                "np.arcsinh({0})", **_FAST)
arccosh = unary("arccosh", np.arccosh, lambda x, y: 1.0 / np.sqrt(x * x - 1.0),
                "np.arccosh({0})", domain=(1.2, 3.0), **_FAST)
arctanh = unary("arctanh", np.arctanh, lambda x, y: 1.0 / (1.0 - x * x), "np.arctanh({0})",
                domain=(-0.9, 0.9), **_FAST)
cbrt = unary("cbrt", np.cbrt, lambda x, y: 1.0 / (3.0 * y * y), "np.cbrt({0})",
             avoid=0.0, gap=0.3, **_FAST)

# Piecewise-constant functions: derivative zero (test domains stay between their jumps).
floor = unary("floor", np.floor, None, "np.floor({0})", domain=(0.1, 0.9))
ceil = unary("ceil", np.ceil, None, "np.ceil({0})", domain=(0.1, 0.9))
trunc = unary("trunc", np.trunc, None, "np.trunc({0})", domain=(-0.9, 0.9), avoid=0.0)
rint = unary("rint", np.rint, None, "np.rint({0})", domain=(-0.4, 0.4))

# remainder(a, b) = a - floor(a / b) * b; fmod(a, b) = a - trunc(a / b) * b
remainder = binary("remainder", np.remainder,
                   (_one, lambda a, b, y: -np.floor(a / b)), "np.remainder({0}, {1})",
                   domain=((0.2, 1.8), (2.1, 3.0)))
fmod = binary("fmod", np.fmod, (_one, lambda a, b, y: -np.trunc(a / b)),
              "np.fmod({0}, {1})", domain=((-1.8, 1.8), (2.1, 3.0)))
copysign = binary("copysign", np.copysign,
                  (lambda a, b, y: np.sign(a) * np.sign(b), None), "np.copysign({0}, {1})",
                  domain=((-2.0, 2.0), (-2.0, 2.0)), avoid=0.0)
# fmax / fmin: NaN only where both are NaN; ties split the derivative as for maximum
fmax = binary("fmax", np.fmax,
              (lambda a, b, y: np.where(a > b, 1.0, np.where(a == b, 0.5, 0.0)),
               lambda a, b, y: np.where(b > a, 1.0, np.where(a == b, 0.5, 0.0))),
              "np.fmax({0}, {1})", distinct=True,
              scalar="({0} if ({0} > {1} or {1} != {1}) else {1})")
fmin = binary("fmin", np.fmin,
              (lambda a, b, y: np.where(a < b, 1.0, np.where(a == b, 0.5, 0.0)),
               lambda a, b, y: np.where(b < a, 1.0, np.where(a == b, 0.5, 0.0))),
              "np.fmin({0}, {1})", distinct=True,
              scalar="({0} if ({0} < {1} or {1} != {1}) else {1})")

less = comparison("lt", np.less, "({0} < {1})")
less_equal = comparison("le", np.less_equal, "({0} <= {1})")
greater = comparison("gt", np.greater, "({0} > {1})")
greater_equal = comparison("ge", np.greater_equal, "({0} >= {1})")
equal = comparison("eq", np.equal, "({0} == {1})", commutative=True, complex=True)
not_equal = comparison("ne", np.not_equal, "({0} != {1})", commutative=True, complex=True)
logical_and = comparison("logical_and", np.logical_and, "np.logical_and({0}, {1})",
                         commutative=True)
logical_or = comparison("logical_or", np.logical_or, "np.logical_or({0}, {1})",
                        commutative=True)
logical_xor = comparison("logical_xor", np.logical_xor, "np.logical_xor({0}, {1})",
                         commutative=True)
logical_not = comparison("logical_not", np.logical_not, "np.logical_not({0})")


# -- where: select(cond, a, b) ------------------------------------------------------------
def _where_abstract(c, a, b):
    if a[1] != b[1]:
        raise TypeError(f"where: branches have dtypes {a[1]} and {b[1]}")
    return broadcast_shapes(c[0], a[0], b[0]), a[1]


def _where_jvp(primals, tangents, out):
    c, a, b = primals
    _, ta, tb = tangents
    if ta is None and tb is None:
        return None
    ta = zeros(a.shape, out.dtype) if ta is None else ta
    tb = zeros(b.shape, out.dtype) if tb is None else tb
    return _fit(where(c, ta, tb), out)


def _where_vjp(ct, primals, out, needs):
    c, a, b = primals
    z = np.zeros((), ct.dtype)
    ca = unbroadcast(where(c, ct, z), a.shape) if needs[1] else None
    cb = unbroadcast(where(c, z, ct), b.shape) if needs[2] else None
    return (None, ca, cb)


def _where_lower(args, op):
    c, a, b = args
    if op.outvar.shape == ():
        return f"({a} if {c} else {b})"
    shape = op.outvar.shape
    bc = [x if v.shape == shape else (f"_full({shape!r}, {x})" if v.shape == () else
                                      f"_broadcast({x}, {shape!r})")
          for x, v in zip(args, op.invars)]
    return f"np.where({bc[0]}, {bc[1]}, {bc[2]})"


def _where_fn(c, a, b):
    return np.where(c > 0, a, b)


# (np.where has its own front end: one-argument form, Python scalars)
where = Primitive("where", np.where, _where_abstract, _where_jvp, _where_vjp, _where_lower,
                  batch_rule="elementwise", kind="elementwise", nin=3,
                  scalar="({1} if {0} else {2})", fuses=False, complex=True,
                  tests=[Case(_where_fn, "broadcast", ((-1.0, 1.0), (-2.0, 2.0), (-2.0, 2.0)),
                              avoid=0.0, name="where")])


# -- stop_gradient: the value passes, the derivative is zero --------------------------------
def _identity(x):
    return np.array(x, copy=True)


stop_gradient = Primitive(
    "stop_gradient", _identity, lambda x: x,
    lambda primals, tangents, out: None,
    lambda ct, primals, out, needs: (None,),
    lambda args, op: args[0], batch_rule="elementwise", kind="view", complex=True,
    identity=True, sparsity=lambda op, constants: [])    # its derivative reads nothing
# Finite differences cannot see a stop_gradient: its test is written out in test_registry.
stop_gradient.tests = [Case(lambda x: x * stop_gradient(x), ((3,),), name="stop_gradient")]


# -- complex parts: real, imag, conj, abs of complex values ----------------------------------
# Not holomorphic; their VJPs follow JAX's convention (for a real-valued h of z = x + iy,
# the cotangent ct becomes ct (dh/dx - i dh/dy)). Not tape rows: the tapes run real values.
def _real_dtype(dtype):
    return np.dtype(np.float32) if np.dtype(dtype) == np.complex64 else np.dtype(np.float64)


def _complex_part_abstract(name):
    def abstract(x):
        shape, dtype = x
        if dtype.kind != "c":
            raise TypeError(f"{name} takes complex values (numpy_api handles real ones)")
        return shape, _real_dtype(dtype) if name != "conj" else dtype
    return abstract


def _as_complex(x, like):
    from .shape import convert
    return convert(x, dtype=like.dtype)


def _complex_part(name, impl, jvp, vjp, lower, fn):
    return Primitive(name, impl, _complex_part_abstract(name), jvp, vjp,
                     lambda args, op: lower.format(*args), batch_rule="elementwise",
                     kind="other", tapes=False, complex=True,
                     tests=[Case(fn, ((3, 2),), ((-2.0, 2.0),), name=name)])


def _cx(x):
    """A test case's real array made complex: x + i (x^2 - 1)."""
    return x + 1j * (x * x - 1.0)


real = _complex_part(
    "real", np.real, lambda p, t, out: None if t[0] is None else real(t[0]),
    lambda ct, p, out, needs: (_as_complex(ct, p[0]),), "np.real({0})",
    lambda x: np.real(_cx(x) ** 2))
imag = _complex_part(
    "imag", np.imag, lambda p, t, out: None if t[0] is None else imag(t[0]),
    lambda ct, p, out, needs: (_as_complex(ct, p[0]) * np.asarray(-1j, p[0].dtype),),
    "np.imag({0})", lambda x: np.imag(np.exp(_cx(x))))
conj = _complex_part(
    "conj", np.conj, lambda p, t, out: None if t[0] is None else conj(t[0]),
    lambda ct, p, out, needs: (conj(ct),), "np.conj({0})",
    lambda x: np.real(np.conj(_cx(x)) * _cx(x) * 1j + np.conj(_cx(x)) ** 2))
complex_abs = _complex_part(
    "complex_abs", np.abs,
    lambda p, t, out: None if t[0] is None else real(conj(p[0]) * t[0]) / out,
    lambda ct, p, out, needs: (_as_complex(ct / out, p[0]) * conj(p[0]),), "np.abs({0})",
    lambda x: np.abs(_cx(x) + 0.5))
