"""Transcendental functions that LLVM vectorises inside generated loops.

Numba's ``np.exp`` and friends call the C library once per element, and this Numba has no
SVML, so a loop that calls them runs one element at a time (about 6 ns per ``exp`` here)
and large arrays used to leave compiled code for NumPy. The functions here are branch
free: a range reduction built from bit operations, a polynomial, and selects for the
special values (inf, nan, signed zeros, subnormals). With no call and no branch left in a
loop body, LLVM's loop vectoriser runs four (AVX2) or eight (AVX-512, see `wide_vectors`)
elements at once, so a fused loop over ``exp(x - m)`` and its sum needs about 1.05 ns per
element here and no NumPy temporary.

Each function is written once, in Python, over a small builder (`_Ops`) that emits LLVM
instructions, and exposed to Numba as an intrinsic: a call in a kernel is expanded in
place. Nothing is compiled per function and nothing has to be inlined, so a kernel with
many of them compiles as fast as one calling the C library. Multiplies and adds carry
LLVM's ``contract`` flag only, so a multiply-add may become a fused multiply-add (more
accurate, half the instructions); the rest of the kernel keeps IEEE semantics exactly.

Accuracy (``tests/test_vmath.py``: dense sweeps, special values and Hypothesis against
NumPy; mpmath spot checks): within 2 ulp of NumPy over the whole float64 range, and at
most about 1.3 ulp from the exact result. float32 arguments are computed in float64 and
rounded once.

The reductions follow fdlibm / musl: Cody-Waite reduction by ln 2 with a two-part
constant; fdlibm's log kernel (s = f / (2 + f), a polynomial in s²); log1p as that
kernel plus the rounding error of 1 + x; expm1 as (2^k - 1) + 2^k r + 2^k q with the
first sum exact; tanh as an odd polynomial up to 0.625 and 1 - 2 / (expm1(2|x|) + 2)
above; sin and cos as fdlibm's kernels after a reduction by pi/2 that is exact for every
double (Payne and Hanek's, in int64 limbs, from a table of the digits of 2/pi: see
`_reduce_pio2`), or, in `sin_medium` / `cos_medium`, fdlibm's three-step Cody-Waite
reduction, exact enough below 2^20 pi/2 and about a sixth of the work. The full
reduction costs about 8 ns per element here; `numba_helpers._sincos_array` takes the
cheap one for large arrays, block by block (1.6 ns per element).
"""
from __future__ import annotations

from llvmlite import ir
from numba import types
from numba.extending import intrinsic

_F64 = ir.DoubleType()
_I64 = ir.IntType(64)
_FLAGS = ("contract",)


class _Val:
    """An LLVM value under construction: float64 ("f"), int64 ("i") or bool ("b")."""
    __slots__ = ("ops", "v", "kind")

    def __init__(self, ops, v, kind):
        self.ops, self.v, self.kind = ops, v, kind

    def _other(self, o):
        if isinstance(o, _Val):
            return o
        if self.kind == "f":
            return _Val(self.ops, ir.Constant(_F64, float(o)), "f")
        return _Val(self.ops, ir.Constant(_I64, int(o)), "i")

    def _arith(self, o, fop, iop, swap=False):
        o = self._other(o)
        a, b = (o, self) if swap else (self, o)
        b_ = self.ops.b
        if self.kind == "f":
            return _Val(self.ops, getattr(b_, fop)(a.v, b.v, flags=_FLAGS), "f")
        return _Val(self.ops, getattr(b_, iop)(a.v, b.v), "i")

    def __add__(self, o): return self._arith(o, "fadd", "add")
    def __radd__(self, o): return self._arith(o, "fadd", "add", True)
    def __sub__(self, o): return self._arith(o, "fsub", "sub")
    def __rsub__(self, o): return self._arith(o, "fsub", "sub", True)
    def __mul__(self, o): return self._arith(o, "fmul", "mul")
    def __rmul__(self, o): return self._arith(o, "fmul", "mul", True)
    def __truediv__(self, o): return self._arith(o, "fdiv", None)
    def __rtruediv__(self, o): return self._arith(o, "fdiv", None, True)

    def __neg__(self):
        return _Val(self.ops, self.ops.b.fneg(self.v), "f")

    def __rshift__(self, n):       # arithmetic shift of an int64 (by a constant or an int64)
        return _Val(self.ops, self.ops.b.ashr(self.v, self._other(n).v), "i")

    def __lshift__(self, n):
        return _Val(self.ops, self.ops.b.shl(self.v, self._other(n).v), "i")

    def __and__(self, o):
        return _Val(self.ops, self.ops.b.and_(self.v, self._other(o).v), "i")

    def __or__(self, o):
        return _Val(self.ops, self.ops.b.or_(self.v, self._other(o).v), "i")

    def __floordiv__(self, n):     # of a non-negative int64 by a positive constant
        return _Val(self.ops, self.ops.b.sdiv(self.v, ir.Constant(_I64, n)), "i")

    def _cmp(self, o, op):
        o = self._other(o)
        b = self.ops.b
        if self.kind == "f":      # ordered comparisons (false with a NaN), except !=
            v = (b.fcmp_unordered(op, self.v, o.v) if op == "!=" else
                 b.fcmp_ordered(op, self.v, o.v))
        else:
            v = b.icmp_signed(op, self.v, o.v)
        return _Val(self.ops, v, "b")

    def __lt__(self, o): return self._cmp(o, "<")
    def __le__(self, o): return self._cmp(o, "<=")
    def __gt__(self, o): return self._cmp(o, ">")
    def __ge__(self, o): return self._cmp(o, ">=")
    def __eq__(self, o): return self._cmp(o, "==")
    def __ne__(self, o): return self._cmp(o, "!=")
    __hash__ = None

    def __bool__(self):
        raise TypeError("a value under construction has no truth value: use ops.select")


class _Ops:
    """The operations the functions below are written in, emitting into one IRBuilder."""

    def __init__(self, builder):
        self.b = builder

    def f(self, x):
        return _Val(self, ir.Constant(_F64, float(x)), "f")

    def select(self, cond, a, b):
        """a where cond else b (a Python number takes the other operand's kind)."""
        a = self._like(b, a)
        b = self._like(a, b)
        return _Val(self, self.b.select(cond.v, a.v, b.v), a.kind)

    def _like(self, other, x):
        if isinstance(x, _Val):
            return x
        kind = other.kind if isinstance(other, _Val) else "f"
        return _Val(self, ir.Constant(_F64 if kind == "f" else _I64,
                                      float(x) if kind == "f" else int(x)), kind)

    def min(self, a, b):          # a if a < b else b (b when a is NaN)
        return self.select(a < b, a, b)

    def max(self, a, b):
        return self.select(a > b, a, b)

    def _intrinsic(self, name, *args):
        fn = self.b.module.declare_intrinsic(
            name, [_F64], ir.FunctionType(_F64, [_F64] * len(args)))
        return _Val(self, self.b.call(fn, [a.v for a in args]), "f")

    def abs(self, x):
        return self._intrinsic("llvm.fabs", x)

    def copysign(self, x, s):
        return self._intrinsic("llvm.copysign", x, s)

    def bits(self, x):
        """The IEEE bits of a float64 as an int64 (a bitcast)."""
        return _Val(self, self.b.bitcast(x.v, _I64), "i")

    def from_bits(self, i):
        return _Val(self, self.b.bitcast(i.v, _F64), "f")

    def to_float(self, i):
        return _Val(self, self.b.sitofp(i.v, _F64), "f")

    def exact_mul(self, a, b):
        """a * b rounded on its own: never fused with an add (for exact-product splits)."""
        b = a._other(b)
        return _Val(self, self.b.fmul(a.v, b.v), "f")

    def table(self, name, values, index):
        """``values[index]`` for an int64 index, from a constant int64 table of the module
        (a gather once vectorised)."""
        module = self.b.module
        table = module.globals.get(name)
        if table is None:
            kind = ir.ArrayType(_I64, len(values))
            table = ir.GlobalVariable(module, kind, name)
            table.initializer = ir.Constant(kind, [int(v) for v in values])
            table.global_constant = True
            table.linkage = "internal"
        ptr = self.b.gep(table, [ir.Constant(_I64, 0), index.v], inbounds=True)
        return _Val(self, self.b.load(ptr), "i")

    def pow2(self, k):
        """2.0 ** k for an integer -1022 <= k <= 1023."""
        return self.from_bits((k + 1023) << 52)

    def poly(self, t, coefs):
        """The polynomial with ``coefs`` (highest degree first) at t, by Estrin's scheme:
        pairs of terms first, then pairs of pairs with t**2, t**4, ...: a dependency chain
        of log2(degree) multiply-adds instead of Horner's degree, so a vectorised loop is
        not held up by the latency of one long chain."""
        terms = [self.f(c) for c in reversed(coefs)]      # lowest degree first
        power = t
        while len(terms) > 1:
            pairs = [terms[i] + power * terms[i + 1] for i in range(0, len(terms) - 1, 2)]
            if len(terms) % 2:
                pairs.append(terms[-1])
            terms = pairs
            if len(terms) > 1:
                power = power * power
        return terms[0]


# -- the functions -----------------------------------------------------------------------
_SHIFT = 6755399441055744.0           # 1.5 * 2**52: adding it rounds to an integer
_SHIFT_BITS = 0x4338000000000000
_LOG2E = 1.4426950408889634
_LN2_HI = 6.93147180369123816490e-01  # 32 bits: k * _LN2_HI is exact for |k| < 2**20
_LN2_LO = 1.90821492927058770002e-10
_INF = float("inf")
_NAN = float("nan")
_TINY_ARG = 5.551115123125783e-17     # 2**-54: below it expm1(x) and log1p(x) round to x
# (exp(r) - 1 - r) / r**2 for |r| <= ln(2) / 2: the Taylor series to degree 13 of exp
_EXP = tuple(1.0 / f for f in (6227020800.0, 479001600.0, 39916800.0, 3628800.0,
                               362880.0, 40320.0, 5040.0, 720.0, 120.0, 24.0, 6.0, 2.0))


def _reduce_ln2(F, x):
    """(k, r, c): x = k ln 2 + r + c, |r| <= ln(2) / 2 (c: what rounding r lost)."""
    kf = x * _LOG2E + _SHIFT
    k = F.bits(kf) - _SHIFT_BITS
    kd = kf - _SHIFT
    hi = x - kd * _LN2_HI
    lo = kd * _LN2_LO
    r = hi - lo
    return k, r, (hi - r) - lo


def exp(F, x):
    xc = F.min(F.max(x, -746.0), 710.0)
    k, r, c = _reduce_ln2(F, xc)
    p = 1.0 + (r + (r * r * F.poly(r, _EXP) + c))
    k1 = k >> 1                       # two factors: 2**k may be subnormal or overflow
    y = p * F.pow2(k1) * F.pow2(k - k1)
    return F.select(x == x, y, x)


def expm1(F, x):
    xc = F.min(F.max(x, -50.0), 710.0)
    k, r, c = _reduce_ln2(F, xc)
    q = r * r * F.poly(r, _EXP) + c     # expm1(r) = r + q
    # 2**k (1 + r + q) - 1 = (2**k - 1) + 2**k r + 2**k q: the first sum exactly (2Sum)
    s = F.pow2(F.min(k, 56))
    a = s - 1.0
    b = s * r
    h = a + b
    bb = h - a
    small = h + (((a - (h - bb)) + (b - bb)) + s * q)
    k1 = k >> 1
    large = (1.0 + (r + q)) * F.pow2(k1) * F.pow2(k - k1)  # k > 56: the -1 is below an ulp
    y = F.select(k <= 56, small, large)
    y = F.select(F.abs(x) < _TINY_ARG, x, y)              # tiny and +-0: x itself
    return F.select(x == x, y, x)


_LG = (1.479819860511658591e-01, 1.531383769920937332e-01, 1.818357216161805012e-01,
       2.222219843214978396e-01, 2.857142874366239149e-01, 3.999999999940941908e-01,
       6.666666666666735130e-01)
_SQRT_HALF_BITS = 0x3FE6A09E667F3BCD   # bits of sqrt(2) / 2
_MIN_NORMAL = 2.2250738585072014e-308


def _log_parts(F, x):
    """(k, f): x = 2**k (1 + f) with sqrt(2)/2 <= 1 + f < sqrt(2), for finite x > 0."""
    sub = x < _MIN_NORMAL
    xs = F.select(sub, x * 18014398509481984.0, x)     # 2**54: subnormals become normal
    ix = F.bits(xs)
    k = (ix - _SQRT_HALF_BITS) >> 52
    m = F.from_bits(ix - (k << 52))
    return F.select(sub, k - 54, k), m - 1.0


def _log_kernel(F, f, k, c):
    """log(2**k (1 + f)) + c: fdlibm's polynomial in s = f / (2 + f)."""
    dk = F.to_float(k)
    hfsq = 0.5 * f * f
    s = f / (2.0 + f)
    z = s * s
    w = z * z
    t1 = w * F.poly(w, _LG[1::2])         # Lg6, Lg4, Lg2
    t2 = z * F.poly(w, _LG[0::2])         # Lg7, Lg5, Lg3, Lg1
    r = t2 + t1
    return dk * _LN2_HI - ((hfsq - (s * (hfsq + r) + (dk * _LN2_LO + c))) - f)


def log(F, x):
    k, f = _log_parts(F, x)
    y = _log_kernel(F, f, k, F.f(0.0))
    y = F.select(x == _INF, _INF, y)
    y = F.select(x == 0.0, -_INF, y)
    return F.select(x >= 0.0, y, _NAN)      # negative and NaN


def log1p(F, x):
    u = 1.0 + x
    k, f = _log_parts(F, u)
    c = F.select(k > 0, 1.0 - (u - x), x - (u - 1.0))   # the rounding error of 1 + x
    y = _log_kernel(F, f, k, c / u)
    y = F.select(F.abs(x) < _TINY_ARG, x, y)
    y = F.select(x == _INF, _INF, y)
    y = F.select(x == -1.0, -_INF, y)
    return F.select(x >= -1.0, y, _NAN)


# (tanh(x) - x) / x**3 as a polynomial in t = x**2 for |x| <= 0.625: a Chebyshev fit
# (mpmath.chebyfit, degree 11, absolute error 4e-18)
_TANH = (6.485163482793113e-06, -3.12011014257974e-05, 9.257116129556769e-05,
         -0.0002375906496055562, 0.0005896606577757043, -0.0014557754120478055,
         0.0035921217511549622, -0.008863235103240878, 0.021869488519008305,
         -0.05396825396789699, 0.13333333333333042, -0.3333333333333333)


def tanh(F, x):
    a = F.abs(x)
    t = a * a
    near = a + a * (t * F.poly(t, _TANH))
    far = 1.0 - 2.0 / (expm1(F, 2.0 * a) + 2.0)
    return F.copysign(F.select(a <= 0.625, near, far), x)


# -- sin and cos ---------------------------------------------------------------------------
def _two_over_pi_words(n_words=60):
    """The binary digits of 2/pi as 24-bit words, most significant first, the stream
    starting 63 digits before the binary point (those are zero): word q holds digits
    24 q - 63 ... 24 q - 40 (digit j weighs 2**-j). pi comes from Machin's formula in
    integer arithmetic, 1400 digits and 32 guard digits."""
    prec = 1432
    one = 1 << prec

    def arctan_inv(n):                # arctan(1 / n) * 2**prec
        total, term, k, sign = 0, one // n, 1, 1
        while term:
            total += sign * (term // k)
            term //= n * n
            k += 2
            sign = -sign
        return total

    pi = 16 * arctan_inv(5) - 4 * arctan_inv(239)
    g = (2 << (2 * prec)) // pi                          # 2/pi * 2**prec
    return [(g >> (prec - (24 * q - 40))) & 0xFFFFFF for q in range(n_words)]


_PIO2_WORDS = _two_over_pi_words()
_PIO4 = 0.7853981633974483            # below it the argument is its own reduction
_PIO2_HI = 1.5707963267948966
_PIO2_LO = 6.123233995736766e-17
_M24 = 0xFFFFFF
# fdlibm's kernels on [-pi/4, pi/4]: sin(x + y) and cos(x + y) for a double-double x + y
_S = (-1.66666666666666324348e-01, 8.33333333332248946124e-03, -1.98412698298579493134e-04,
      2.75573137070700676789e-06, -2.50507602534068634195e-08, 1.58969099521155010221e-10)
_C = (4.16666666666666019037e-02, -1.38888888888741095749e-03, 2.48015872894767294178e-05,
      -2.75573143513906633035e-07, 2.08757232129817482790e-09, -1.13596475577881948265e-11)


def _split(F, a):
    """a = hi + lo with each half 26 bits (Veltkamp), so products of halves are exact."""
    c = F.exact_mul(a, 134217729.0)
    hi = c - (c - a)
    return hi, a - hi


def _two_product(F, a, b):
    """(p, e): p = a * b rounded, e its rounding error, exactly (Dekker)."""
    p = F.exact_mul(a, b)
    ah, al = _split(F, a)
    bh, bl = _split(F, b)
    e = ((F.exact_mul(ah, bh) - p) + F.exact_mul(ah, bl) + F.exact_mul(al, bh)) \
        + F.exact_mul(al, bl)
    return p, e


def _two_sum(a, b):
    s = a + b
    bb = s - a
    return s, (a - (s - bb)) + (b - bb)


def _reduce_pio2(F, a):
    """(n mod 4, hi, lo): a = n pi/2 + hi + lo, |hi + lo| <= pi/4, for finite a >= pi/4
    (Payne and Hanek's reduction, branch free). With a = M 2**e (M a 53-bit integer),
    only the digits of 2/pi from 2**-(e-1) on matter modulo 4: eight 24-bit words of them,
    read at a bit offset from the table, times M in exact int64 limbs, give a (2/pi) mod 4
    to 2**-142; the worst case for doubles cancels about 61 bits of it."""
    ix = F.bits(a)
    e = (ix >> 52) - 1075
    e = F.select(e < -62, -62, e)     # small lanes (their result is not used)
    e = F.select(e > 971, 971, e)     # inf and NaN lanes
    u = e + 62                         # stream position of digit e - 1 (j + 63)
    q = u // 24
    t = u - q * 24
    words = [F.table("jvpvjp_2_over_pi", _PIO2_WORDS, q + k) for k in range(9)]
    back = 24 - t
    w = [(((words[i] << 24) | words[i + 1]) >> back) & _M24 for i in range(8)]
    m = (ix & ((1 << 52) - 1)) | (1 << 52)
    a0, a1, a2 = m >> 48, (m >> 24) & _M24, m & _M24
    # limb d (weight 2**(-22 - 24 d)) of a (2/pi) mod 4: the a_k w_i with k + i = 2 + d,
    # plus the carry from limb d + 1
    limbs = []
    carry = None
    for d in range(7, -1, -1):
        terms = [ak * w[2 + d - k] for k, ak in enumerate((a0, a1, a2)) if 0 <= 2 + d - k < 8]
        c = terms[0]
        for x in terms[1:]:
            c = c + x
        if carry is not None:
            c = c + carry
        limbs.append(c & _M24)
        carry = c >> 24
    l0, l1, l2, l3, l4, l5 = limbs[::-1][:6]
    up = (l0 >> 21) & 1                # the fraction is >= 1/2: round the quadrant up
    n = ((l0 >> 22) + up) & 3
    hi = F.to_float(((l0 & 0x3FFFFF) << 24) | l1) * 1.4210854715202004e-14 - F.to_float(up)
    mid = F.to_float((l2 << 24) | l3) * 5.048709793414476e-29      # 2**-94
    lo = F.to_float((l4 << 24) | l5) * 1.793662034335766e-43       # 2**-142
    s, err = _two_sum(hi, mid)
    tail = err + lo
    fs = s + tail
    ft = tail - (fs - s)
    p, perr = _two_product(F, fs, F.f(_PIO2_HI))
    rest = perr + (fs * _PIO2_LO + ft * _PIO2_HI)
    rh = p + rest
    return n, rh, rest - (rh - p)


def _sin_kernel(F, x, y):
    z = x * x
    v = z * x
    r = _S[1] + z * (_S[2] + z * (_S[3] + z * (_S[4] + z * _S[5])))
    return x - ((z * (0.5 * y - v * r) - y) - v * _S[0])


def _cos_kernel(F, x, y):
    z = x * x
    w = z * z
    r = z * (_C[0] + z * (_C[1] + z * _C[2])) + w * w * (_C[3] + z * (_C[4] + z * _C[5]))
    hz = 0.5 * z
    w = 1.0 - hz
    return w + (((1.0 - w) - hz) + (z * r - x * y))


def _sin_cos(F, x, medium):
    """(n mod 4, sin and cos of the reduced argument) for |x|: Payne and Hanek's reduction
    for every finite x, or (``medium``) fdlibm's three-step Cody-Waite reduction, exact
    enough below `SIN_MEDIUM` (where n * pi/2 to 33 bits is an exact product) and about a
    sixth of the work."""
    a = F.abs(x)
    if medium:
        fn = a * 0.6366197723675814 + _SHIFT
        n = F.bits(fn) & 3
        fn = fn - _SHIFT
        r = a - fn * 1.57079632673412561417e+00
        for part, tail in ((6.07710050630396597660e-11, 2.02226624879595063154e-21),
                           (2.02226624871116645580e-21, 8.47842766036889956997e-32)):
            t = r
            w = fn * part
            r = t - w
            w = fn * tail - ((t - r) - w)
        hi = r - w
        lo = (r - hi) - w
    else:
        n, hi, lo = _reduce_pio2(F, a)
    small = a < _PIO4
    n = F.select(small, 0, n)
    hi = F.select(small, a, hi)
    lo = F.select(small, 0.0, lo)
    return n, _sin_kernel(F, hi, lo), _cos_kernel(F, hi, lo)


SIN_MEDIUM = 1647099.0     # below 2**20 pi/2: where the medium reduction holds


def _sin(F, x, medium):
    n, s, c = _sin_cos(F, x, medium)
    y = F.select((n & 1) == 0, s, c)
    y = F.select((n & 2) == 0, y, -y)
    y = F.select(F.bits(x) < 0, -y, y)                   # sin(-x) = -sin(x), -0.0 too
    return F.select(F.abs(x) <= 1.7976931348623157e308, y, _NAN)   # inf and NaN


def _cos(F, x, medium):
    n, s, c = _sin_cos(F, x, medium)
    y = F.select((n & 1) == 0, c, -s)
    y = F.select((n & 2) == 0, y, -y)
    return F.select(F.abs(x) <= 1.7976931348623157e308, y, _NAN)


def sin(F, x):
    return _sin(F, x, False)


def cos(F, x):
    return _cos(F, x, False)


def sin_medium(F, x):
    """sin(x) for |x| < `SIN_MEDIUM` (anything beyond: see `backend.numba_helpers`)."""
    return _sin(F, x, True)


def cos_medium(F, x):
    return _cos(F, x, True)


# -- Numba intrinsics ----------------------------------------------------------------------
def _as_intrinsic(fn):
    def typer(typingctx, x):
        if not isinstance(x, types.Float):
            return None

        def codegen(context, builder, sig, args):
            v = args[0]
            if x == types.float32:
                v = builder.fpext(v, _F64)
            ops = _Ops(builder)
            _prefer_wide(builder.function)
            r = fn(ops, _Val(ops, v, "f")).v
            if x == types.float32:
                r = builder.fptrunc(r, ir.FloatType())
            return r
        return x(x), codegen
    typer.__name__ = f"v{fn.__name__}"
    return intrinsic(typer)


def _prefer_wide(function):
    """Let LLVM vectorise ``function``'s loops with the widest vectors the CPU has. On
    AVX-512 CPUs LLVM prefers 256-bit vectors unless told otherwise; 512-bit ones run these
    polynomials about 1.5 times as fast (an exp-and-sum loop: 1.55 -> 1.05 ns per element
    here). Elsewhere the attribute changes nothing. (llvmlite knows no string attributes:
    it is added to the set as LLVM writes it.)

    The frame is aligned to 64 bytes as well (``alignstack``). Such loops keep more
    constants than there are vector registers, and LLVM spills some to the stack and
    reloads them every iteration: at the stack's own 16-byte alignment those 64-byte slots
    straddled cache lines or not depending on where the thread's stack began, and the
    same kernel (logsumexp at n = 1e5) took 110 µs in one process, 166-220 µs in the next
    and about 170 µs on any other thread. Aligned, 108-117 µs in most processes and
    threads alike."""
    function.attributes.alignstack = 64
    set.add(function.attributes, '"prefer-vector-width"="512"')


@intrinsic
def wide_vectors(typingctx):
    """A call to put at the top of a generated kernel: its loops use the widest vectors."""
    def codegen(context, builder, sig, args):
        _prefer_wide(builder.function)
        return context.get_dummy_value()
    return types.none(), codegen


vexp = _as_intrinsic(exp)
vexpm1 = _as_intrinsic(expm1)
vlog = _as_intrinsic(log)
vlog1p = _as_intrinsic(log1p)
vtanh = _as_intrinsic(tanh)
vsin = _as_intrinsic(sin)
vcos = _as_intrinsic(cos)
vsin_medium = _as_intrinsic(sin_medium)
vcos_medium = _as_intrinsic(cos_medium)
# What generated kernels import (a primitive names its loop form in ``Primitive.loop``).
FUNCTIONS = ["vexp", "vexpm1", "vlog", "vlog1p", "vtanh", "vsin", "vcos", "wide_vectors"]
