"""Large helpers that kernels call through a symbol instead of linking their code.

Numba links the code of every function a kernel calls into the kernel's own LLVM module,
where it is optimised and compiled to machine code again, kernel after kernel. For small
helpers that is what we want (they inline and vectorise). For large ones it is the bulk of
a compile: Numba's SVD added about 2 s to every kernel that used it, its LU solve 1-1.5 s,
its batched matrix product 1 s; in a test run with an empty cache most of the compile time
went there.

So a large helper here is compiled once per input dtype, as a C callback that Numba's disk
cache keeps. It receives a vector of sizes and raw pointers, and returns a status instead
of raising (0: done, 1: the routine failed, 2: an input was not finite). It is registered
with LLVM under a fixed symbol, ``jvpvjp_<name>_<dtype>``. A kernel calls the helper's
stub (``_svd_batched(a)`` and so on): a few lines that allocate the result, call the symbol
and turn a nonzero status into NumPy's exception. Only these lines are compiled into the
kernel; the call through the symbol costs nanoseconds.

Registration happens when a stub is typed (a kernel being compiled) and, for a kernel whose
machine code comes from the disk cache, before it is loaded: `register_for` reads the
helper names in a kernel's text. The callbacks' own cache entries are guarded like the
kernels' (a damaged entry is compiled again).
"""
import re
import threading

import numpy as np
from numba import carray, njit, types
from numba.core.errors import TypingError
from numba.extending import overload
from numba.np.linalg import F_INT_nptype as _F_INT, _BLAS, _LAPACK
from numba.np.numpy_support import as_dtype

from ..primitives import OPAQUE
from .numba_arrays import _contiguous, _empty

# sizes, output, first input, second input -> status, for the kernels that call it (the
# callbacks take typed pointers: the same machine interface)
_CALL_SIGNATURE = types.int32(types.voidptr, types.voidptr, types.voidptr, types.voidptr)
_lock = threading.Lock()
HELPERS = {}        # the name kernels call -> its Opaque
_callbacks = {}     # symbol -> its compiled callback (kept alive: LLVM holds its address)


class Opaque:
    """One helper behind symbols: its ``entry`` (a plain function, compiled as a C callback
    per input dtype the first time it is needed), the input ``dtypes`` it takes and the
    dtype of its result (``result``; default the input's)."""

    def __init__(self, name, entry, dtypes, result=None):
        self.name = name
        self.entry = entry
        self.dtypes = tuple(np.dtype(d) for d in dtypes)
        self.result = None if result is None else np.dtype(result)

    def symbol(self, dtype):
        return f"jvpvjp_{self.name}_{dtype.name}"

    def external(self, array, what):
        """The symbol to call for a Numba array type, registered; a typing error for an
        array of another dtype."""
        dtype = as_dtype(array.dtype) if isinstance(array, types.Array) else None
        if dtype not in self.dtypes:
            raise TypingError(f"{what} takes arrays of {', '.join(map(str, self.dtypes))}, "
                              f"not {array}")
        try:
            self.register(dtype)
        except Exception as e:
            raise TypingError(f"{what}: its compiled routine is not available "
                              f"({type(e).__name__}: {e})") from e
        return types.ExternalFunction(self.symbol(dtype), _CALL_SIGNATURE)

    def register(self, dtype):
        """Compile (or load from Numba's cache) the callback for ``dtype`` and register its
        symbol."""
        symbol = self.symbol(dtype)
        if symbol not in _callbacks:
            with _lock:
                if symbol not in _callbacks:
                    _callbacks[symbol] = self._compile(dtype, symbol)

    def _compile(self, dtype, symbol):
        import llvmlite.binding as llvm
        from numba.core.ccallback import CFunc
        from numba.np.numpy_support import from_dtype
        from .numba_backend import _guard_dispatcher
        pointer = types.CPointer(from_dtype(dtype))
        result = pointer if self.result is None else types.CPointer(from_dtype(self.result))
        fn = CFunc(self.entry, ((types.CPointer(types.int64), result, pointer, pointer),
                                types.int32), locals={}, options={"error_model": "numpy"})
        try:
            fn.enable_caching()
        except Exception:       # Numba finds no writable place for a cache: compile each time
            pass
        else:
            fn.py_func = self.entry          # what the cache guard checks entries against
            _guard_dispatcher(fn, None)
        fn.compile()
        llvm.add_symbol(symbol, fn.address)
        return fn


def register_for(source):
    """Register the symbols the generated ``source`` calls (before its module is loaded:
    machine code from the disk cache refers to them). Calls name the dtype they run on as
    their first argument, a string the stubs check against their array's."""
    for name, dtype in set(_CALL.findall(source)):
        opaque = HELPERS[name]
        if np.dtype(dtype) in opaque.dtypes:
            opaque.register(np.dtype(dtype))


def _same_dtype(dtype, array, name):
    """A stub's first argument is the literal name of its first array's dtype (it tells
    `register_for` which symbol a kernel calls): check that it is."""
    if not (isinstance(dtype, types.StringLiteral) and isinstance(array, types.Array)
            and dtype.literal_value == str(as_dtype(array.dtype))):
        raise TypingError(f"{name} takes the dtype of its first array as a string literal, "
                          f"then the array; got {dtype} and {array}")


@njit(cache=True)
def _sizes(a, b=0, c=0, d=0, e=0, f=0, g=0, h=0):
    out = np.empty(8, np.int64)
    out[0], out[1], out[2], out[3] = a, b, c, d
    out[4], out[5], out[6], out[7] = e, f, g, h
    return out


@njit(cache=True)
def _finite(flat):
    """Whether every element of the vector ``flat`` is finite."""
    for i in range(flat.shape[0]):
        if not np.isfinite(flat[i]):
            return False
    return True


def _own_name(impl, name):
    """Give an implementation made by a factory a name of its own. Numba names a compiled function by
    its qualified name, its argument types and a counter local to the process, and marks
    the functions linked into a kernel as interchangeable with any of the same name: the
    implementations made by one factory share a qualified name (and, at one dtype, their
    argument types), so a kernel loaded from the disk cache could be linked to another
    stub's code compiled in this process under its name."""
    impl.__name__ = impl.__qualname__ = f"{name}_impl"
    return impl


def _only_in_kernels(*args):
    raise RuntimeError("this helper is called from compiled kernels only")


# -- np.linalg over a (batch, ...) stack of matrices ------------------------------------------
# Numba's own LAPACK bindings (those its np.linalg uses), called directly: Numba's np.linalg
# wraps them in checks, copies and error messages that cost seconds of compile and that the
# stubs do already. The first argument picks the routine's precision ("s": float32, "d":
# float64); every routine reads and writes Fortran-ordered matrices in place.
_LAPACK_ROUTINES = {name: {dtype: getattr(_LAPACK(), name)(dtype)
                           for dtype in (types.float32, types.float64)}
                    for name in ("numba_xxgetrf", "numba_xxpotrf", "numba_ez_xxxevd",
                                 "numba_ez_gesdd", "numba_ez_geqrf", "numba_ez_xxgqr")}
_getri = _LAPACK().numba_ez_xxgetri(types.float64)
_DOUBLE = ord("d")


def _lapack(name, dtype):
    """The binding ``name`` for a float32 or float64 array type's dtype, and its kind."""
    if dtype == types.float32:
        return _LAPACK_ROUTINES[name][types.float32], ord("s")
    return _LAPACK_ROUTINES[name][types.float64], ord("d")


def _factor(f, ipiv):
    """getrf on a square Fortran-ordered float32 or float64 matrix, in place."""


@overload(_factor)
def _factor_ol(f, ipiv):
    getrf, kind = _lapack("numba_xxgetrf", f.dtype)

    def impl(f, ipiv):
        n = f.shape[0]
        if n:
            getrf(kind, n, n, f.ctypes, n, ipiv.ctypes)
    return impl


def _potrf(c):
    """Cholesky factor of a C-ordered n x n matrix in place (its lower triangle, as NumPy
    reads it; the upper one is left as it was); LAPACK's status."""


@overload(_potrf)
def _potrf_ol(c):
    potrf, kind = _lapack("numba_xxpotrf", c.dtype)
    upper = ord("U")

    def impl(c):
        n = c.shape[0]
        # Fortran's view of a C-ordered matrix is its transpose: its upper triangle
        return potrf(kind, upper, n, c.ctypes, n) if n else 0
    return impl


def _evd(f, w):
    """Eigenvalues into ``w``, eigenvectors over the Fortran-ordered ``f`` (read: its lower
    triangle); LAPACK's status."""


@overload(_evd)
def _evd_ol(f, w):
    evd, kind = _lapack("numba_ez_xxxevd", f.dtype)
    vectors, lower = ord("V"), ord("L")

    def impl(f, w):
        n = f.shape[0]
        return evd(kind, vectors, lower, n, f.ctypes, n, w.ctypes) if n else 0
    return impl


def _gesdd(f, s, u, vt):
    """Thin SVD of the Fortran-ordered m x n ``f`` (destroyed): singular values into ``s``,
    U into the Fortran-ordered m x k ``u``, Vt into the k x n ``vt``; LAPACK's status."""


@overload(_gesdd)
def _gesdd_ol(f, s, u, vt):
    gesdd, kind = _lapack("numba_ez_gesdd", f.dtype)
    thin = ord("S")

    def impl(f, s, u, vt):
        m, n = f.shape
        if m == 0 or n == 0:            # nothing to compute (LAPACK takes no empty matrix)
            return 0
        return gesdd(kind, thin, m, n, f.ctypes, m, s.ctypes, u.ctypes, m, vt.ctypes,
                     s.shape[0])
    return impl


def _geqrf(f, tau):
    """Householder QR of the Fortran-ordered m x n ``f`` in place; LAPACK's status."""


@overload(_geqrf)
def _geqrf_ol(f, tau):
    geqrf, kind = _lapack("numba_ez_geqrf", f.dtype)

    def impl(f, tau):
        m, n = f.shape
        return geqrf(kind, m, n, f.ctypes, m, tau.ctypes) if m and n else 0
    return impl


def _orgqr(f, tau):
    """The first k = len(tau) columns of Q over those of ``f`` (geqrf's reflectors), in
    place; LAPACK's status."""


@overload(_orgqr)
def _orgqr_ol(f, tau):
    orgqr, kind = _lapack("numba_ez_xxgqr", f.dtype)

    def impl(f, tau):
        m, k = f.shape[0], tau.shape[0]
        return orgqr(kind, m, k, k, f.ctypes, m, tau.ctypes) if k else 0
    return impl


@njit
def _copy(src, dst):
    """dst[...] = src for matrices, element by element (Numba's slice assignment compiles
    its error formatting into the callback). The loops copy each matrix of a stack into one
    Fortran-ordered array, LAPACK's layout, made once per stack."""
    for j in range(src.shape[1]):
        for i in range(src.shape[0]):
            dst[i, j] = src[i, j]


# A factorisation's results are packed along the last axis as the primitives in
# primitives/linalg.py define them. Each loop returns False when LAPACK reports a failure
# (the stub raises NumPy's LinAlgError); none raises.
@njit
def _det_loop(a, out):
    """As NumPy computes it: LU factors (getrf), then sign * exp(sum of log |diagonal|); so
    infinities and NaNs give what NumPy gives, not an error."""
    nb, n = a.shape[0], a.shape[1]
    ipiv = np.empty(n, dtype=_F_INT)
    f = np.empty((n, n), a.dtype).T
    for t in range(nb):
        _copy(a[t], f)
        _factor(f, ipiv)
        sign = 1.0
        logdet = 0.0
        for i in range(n):
            d = f[i, i]
            if ipiv[i] != i + 1:
                sign = -sign
            if d < 0.0:
                sign = -sign
            elif d == 0.0:
                sign = 0.0
            logdet += np.log(abs(d))
        out[t] = sign * np.exp(logdet) if sign != 0.0 else 0.0


@njit
def _cholesky_loop(a, out):
    n = a.shape[1]
    for t in range(a.shape[0]):
        c = out[t]
        for i in range(n):
            for j in range(n):
                c[i, j] = a[t, i, j]
        if _potrf(c) != 0:
            return False
        for i in range(n):
            for j in range(i + 1, n):
                c[i, j] = 0.0
    return True


@njit
def _eigh_loop(a, out):
    n = a.shape[1]
    w = np.empty(n, a.dtype)
    f = np.empty((n, n), a.dtype).T
    for t in range(a.shape[0]):
        _copy(a[t], f)
        if _evd(f, w) != 0:
            return False
        for i in range(n):
            for j in range(n):
                out[t, i, j] = f[i, j]
            out[t, i, n] = w[i]
    return True


@njit
def _svd_loop(a, out):
    m, n = a.shape[1], a.shape[2]
    k = m if m < n else n
    s = np.empty(k, a.dtype)
    u = np.empty((k, m), a.dtype).T
    vt = np.empty((n, k), a.dtype).T
    f = np.empty((n, m), a.dtype).T
    for t in range(a.shape[0]):
        _copy(a[t], f)
        if _gesdd(f, s, u, vt) != 0:
            return False
        o = out[t]
        for i in range(m):
            for j in range(k):
                o[i * k + j] = u[i, j]
        for j in range(k):
            o[m * k + j] = s[j]
        for i in range(k):
            for j in range(n):
                o[m * k + k + i * n + j] = vt[i, j]
    return True


@njit
def _qr_loop(a, out):
    m, n = a.shape[1], a.shape[2]
    k = m if m < n else n
    tau = np.empty(k, a.dtype)
    f = np.empty((n, m), a.dtype).T
    for t in range(a.shape[0]):
        _copy(a[t], f)
        if _geqrf(f, tau) != 0:
            return False
        o = out[t]
        for i in range(k):                  # R: the upper trapezoid, before orgqr
            for j in range(n):
                o[m * k + i * n + j] = f[i, j] if j >= i else 0.0
        if _orgqr(f, tau) != 0:
            return False
        for i in range(m):
            for j in range(k):
                o[i * k + j] = f[i, j]
    return True


# The entries (Numba compiles each as a C callback; an exception cannot leave one). The
# dtypes come from the pointers' types. The status: 2 if the input is not finite, 1 if LAPACK
# reported a failure (NumPy's LinAlgError, raised by the stub), else 0.
def _det_entry(sizes, out, a, b):
    nb, n = carray(sizes, (2,))
    _det_loop(carray(a, (nb, n, n)), carray(out, (nb,)))
    return 0


def _cholesky_entry(sizes, out, a, b):
    nb, n = carray(sizes, (2,))
    if not _finite(carray(a, (nb * n * n,))):
        return 2
    return 0 if _cholesky_loop(carray(a, (nb, n, n)), carray(out, (nb, n, n))) else 1


def _eigh_entry(sizes, out, a, b):
    nb, n = carray(sizes, (2,))
    if not _finite(carray(a, (nb * n * n,))):
        return 2
    return 0 if _eigh_loop(carray(a, (nb, n, n)), carray(out, (nb, n, n + 1))) else 1


def _svd_entry(sizes, out, a, b):
    nb, m, n = carray(sizes, (3,))
    k = m if m < n else n
    if not _finite(carray(a, (nb * m * n,))):
        return 2
    return 0 if _svd_loop(carray(a, (nb, m, n)), carray(out, (nb, m * k + k + k * n))) else 1


def _qr_entry(sizes, out, a, b):
    nb, m, n = carray(sizes, (3,))
    k = m if m < n else n
    if not _finite(carray(a, (nb * m * n,))):
        return 2
    return 0 if _qr_loop(carray(a, (nb, m, n)), carray(out, (nb, m * k + k * n))) else 1


_FLOATS = ("float32", "float64")


def _stub(name, opaque, result_shape, message, doc):
    """The function kernels call for a helper of one (batch, m, n) array: ``result_shape``
    (a jitted function of the input's shape) sizes its result; ``message`` is the
    LinAlgError's when the routine fails."""
    def stub(dtype, a):
        _only_in_kernels()
    stub.__name__ = stub.__qualname__ = name
    stub.__doc__ = doc
    HELPERS[name] = opaque

    @overload(stub, prefer_literal=True)
    def stub_ol(dtype, a):
        _same_dtype(dtype, a, name)
        call = opaque.external(a, name)

        def impl(dtype, a):
            x = _contiguous(a)
            out = _empty(result_shape(x.shape), x.dtype)
            sizes = _sizes(*x.shape)
            status = call(sizes.ctypes, out.ctypes, x.ctypes, x.ctypes)
            if status == 2:
                raise np.linalg.LinAlgError("Array must not contain infs or NaNs")
            if status != 0:
                raise np.linalg.LinAlgError(message)
            return out
        return _own_name(impl, name)
    return stub


@njit
def _svd_shape(shape):
    nb, m, n = shape
    k = min(m, n)
    return (nb, m * k + k + k * n)


@njit
def _qr_shape(shape):
    nb, m, n = shape
    k = min(m, n)
    return (nb, m * k + k * n)


@njit
def _det_shape(shape):
    return (shape[0],)


@njit
def _cholesky_shape(shape):
    return shape


@njit
def _eigh_shape(shape):
    return (shape[0], shape[1], shape[2] + 1)


@njit
def _lu_inverse_shape(shape):
    return (shape[0], shape[1], shape[1])


_det_batched = _stub("_det_batched", Opaque("det", _det_entry, _FLOATS), _det_shape,
                     "det failed",
                     "(batch, n, n) -> (batch,): each matrix's determinant.")
_cholesky_batched = _stub("_cholesky_batched", Opaque("cholesky", _cholesky_entry, _FLOATS),
                          _cholesky_shape, "Matrix is not positive definite",
                          "(batch, n, n) -> (batch, n, n): lower Cholesky factors.")
_eigh_batched = _stub("_eigh_batched", Opaque("eigh", _eigh_entry, _FLOATS), _eigh_shape,
                      "Eigenvalues did not converge",
                      "(batch, n, n) -> (batch, n, n + 1): eigenvectors, then eigenvalues.")
_svd_batched = _stub("_svd_batched", Opaque("svd", _svd_entry, _FLOATS), _svd_shape,
                     "SVD did not converge",
                     "(batch, m, n) -> (batch, m k + k + k n), k = min(m, n): U, s, Vt of each.")
_qr_batched = _stub("_qr_batched", Opaque("qr", _qr_entry, _FLOATS), _qr_shape,
                    "QR factorization failed",
                    "(batch, m, n) -> (batch, m k + k n), k = min(m, n): Q, then R, of each.")


# -- LU: float64. `lu` packs getrf's result as (batch, n, n + 1): the factors, then the row
# interchanges (0-based).


@njit
def _lu_loop(a, out):
    nb, n = a.shape[0], a.shape[1]
    ipiv = np.empty(n, dtype=_F_INT)
    f = np.empty((n, n)).T
    for t in range(nb):
        _copy(a[t], f)
        _factor(f, ipiv)
        for i in range(n):
            for j in range(n):
                out[t, i, j] = f[i, j]
            out[t, i, n] = ipiv[i] - 1


@njit
def _lu_solve_loop(lu, b, trans, out):
    """op(A) x = b for each A of the stack from its packed factors (P A = L U); False if a
    factor is singular."""
    nb, n, k = b.shape[0], b.shape[1], b.shape[2]
    x = np.empty((n, k), b.dtype)
    for t in range(nb):
        for i in range(n):
            for j in range(k):
                x[i, j] = b[t, i, j]
        f = lu[t]
        for i in range(n):
            if f[i, i] == 0.0:
                return False
        if not trans:
            for i in range(n):                      # P b
                p = int(f[i, n])
                if p != i:
                    for j in range(k):
                        x[i, j], x[p, j] = x[p, j], x[i, j]
            for i in range(n):                      # L y = P b (unit diagonal)
                for m in range(i):
                    c = f[i, m]
                    if c != 0.0:
                        for j in range(k):
                            x[i, j] -= c * x[m, j]
            for i in range(n - 1, -1, -1):          # U x = y
                for m in range(i + 1, n):
                    c = f[i, m]
                    if c != 0.0:
                        for j in range(k):
                            x[i, j] -= c * x[m, j]
                d = f[i, i]
                for j in range(k):
                    x[i, j] /= d
        else:                                       # A^T = U^T L^T P
            for i in range(n):                      # U^T y = b
                for m in range(i):
                    c = f[m, i]
                    if c != 0.0:
                        for j in range(k):
                            x[i, j] -= c * x[m, j]
                d = f[i, i]
                for j in range(k):
                    x[i, j] /= d
            for i in range(n - 1, -1, -1):          # L^T w = y
                for m in range(i + 1, n):
                    c = f[m, i]
                    if c != 0.0:
                        for j in range(k):
                            x[i, j] -= c * x[m, j]
            for i in range(n - 1, -1, -1):          # x = P^T w
                p = int(f[i, n])
                if p != i:
                    for j in range(k):
                        x[i, j], x[p, j] = x[p, j], x[i, j]
        for i in range(n):
            for j in range(k):
                out[t, i, j] = x[i, j]
    return True


@njit
def _lu_inverse_loop(lu, out):
    nb, n = lu.shape[0], lu.shape[1]
    ipiv = np.empty(n, dtype=_F_INT)
    f = np.empty((n, n)).T
    for t in range(nb):
        _copy(lu[t, :, :n], f)
        for i in range(n):
            if f[i, i] == 0.0:
                return False
            ipiv[i] = int(lu[t, i, n]) + 1
        if n:
            _getri(_DOUBLE, n, f.ctypes, n, ipiv.ctypes)
        for i in range(n):
            for j in range(n):
                out[t, i, j] = f[i, j]
    return True


def _lu_entry(sizes, out, a, b):
    nb, n = carray(sizes, (2,))
    _lu_loop(carray(a, (nb, n, n)), carray(out, (nb, n, n + 1)))
    return 0


def _lu_solve_entry(sizes, out, a, b):
    nb, n, k, trans = carray(sizes, (4,))
    ok = _lu_solve_loop(carray(a, (nb, n, n + 1)), carray(b, (nb, n, k)), trans != 0,
                        carray(out, (nb, n, k)))
    return 0 if ok else 1


def _lu_inverse_entry(sizes, out, a, b):
    nb, n = carray(sizes, (2,))
    return 0 if _lu_inverse_loop(carray(a, (nb, n, n + 1)), carray(out, (nb, n, n))) else 1


_lu_batched = _stub("_lu_batched", Opaque("lu", _lu_entry, ("float64",)), _eigh_shape,
                    "lu failed",
                    "(batch, n, n) -> (batch, n, n + 1): getrf's factors, then its row "
                    "interchanges.")
_lu_inverse_batched = _stub("_lu_inverse_batched",
                            Opaque("lu_inverse", _lu_inverse_entry, ("float64",)),
                            _lu_inverse_shape, "Singular matrix",
                            "(batch, n, n + 1) packed factors -> (batch, n, n) inverses.")
_LU_SOLVE = Opaque("lu_solve", _lu_solve_entry, ("float64",))


def _lu_solve_batched(dtype, lu, b, trans):
    """op(A) x = b for each A of the stack, from its packed factors."""
    _only_in_kernels()


@overload(_lu_solve_batched, prefer_literal=True)
def _lu_solve_batched_ol(dtype, lu, b, trans):
    _same_dtype(dtype, lu, "lu_solve")
    call = _LU_SOLVE.external(lu, "lu_solve")
    _LU_SOLVE.external(b, "lu_solve")

    def impl(dtype, lu, b, trans):
        nb, n, k = b.shape[0], b.shape[1], b.shape[2]
        f, y = _contiguous(lu), _contiguous(b)
        out = _empty((nb, n, k), np.float64)
        sizes = _sizes(nb, n, k, 1 if trans else 0)
        if call(sizes.ctypes, out.ctypes, f.ctypes, y.ctypes) != 0:
            raise np.linalg.LinAlgError("Singular matrix")
        return out
    return impl


HELPERS["_lu_solve_batched"] = _LU_SOLVE


# -- products of stacks of matrices, and sorting -----------------------------------------------
_BLAS_KINDS = ((types.float32, "s"), (types.float64, "d"), (types.complex64, "c"),
               (types.complex128, "z"))
_GEMM = {dtype: (_BLAS().numba_xxgemm(dtype), ord(kind)) for dtype, kind in _BLAS_KINDS}
# Numba's bindings of the vector products its np.dot uses for a product with one row or
# one column (its _BLAS class declares only gemm): kind, trans, m, n, alpha, a, lda, x,
# beta, y; and kind, conjugate, n, a, b, out
_GEMV = {dtype: types.ExternalFunction("numba_xxgemv", types.int32(
    types.char, types.char, types.intp, types.intp, types.CPointer(dtype),
    types.CPointer(dtype), types.intp, types.CPointer(dtype), types.CPointer(dtype),
    types.CPointer(dtype))) for dtype, _ in _BLAS_KINDS}
_DOT = {dtype: types.ExternalFunction("numba_xxdot", types.int32(
    types.char, types.char, types.intp, types.CPointer(dtype), types.CPointer(dtype),
    types.CPointer(dtype))) for dtype, _ in _BLAS_KINDS}


def _gemm(a, b, out, ta, tb, one, zero):
    """out = op(a) @ op(b) for C-ordered matrices, op a transpose when ``ta`` / ``tb``: the
    BLAS calls Numba's np.dot(op(a), op(b), out) makes (the same bits: gemm, or gemv / dot
    when op(a) has one row or op(b) one column), without its checks. ``one`` and ``zero``:
    arrays holding the scalars 1 and 0 of the dtype (BLAS takes them by pointer)."""


@overload(_gemm)
def _gemm_ol(a, b, out, ta, tb, one, zero):
    gemm, kind = _GEMM[a.dtype]
    gemv, dot = _GEMV[a.dtype], _DOT[a.dtype]
    trans, plain, no = ord("t"), ord("n"), 0

    def impl(a, b, out, ta, tb, one, zero):
        m, n = out.shape
        k = a.shape[0] if ta else a.shape[1]
        if m == 0 or n == 0 or k == 0:
            for i in range(m):
                for j in range(n):
                    out[i, j] = 0
        elif m == 1 and n == 1:           # both operands are contiguous vectors
            dot(kind, no, k, a.ctypes, b.ctypes, out.ctypes)
        elif n == 1:                      # matrix @ vector: op(a) is k x m in BLAS's order
            if ta:
                gemv(kind, plain, m, k, one.ctypes, a.ctypes, a.shape[1], b.ctypes,
                     zero.ctypes, out.ctypes)
            else:
                gemv(kind, trans, k, m, one.ctypes, a.ctypes, a.shape[1], b.ctypes,
                     zero.ctypes, out.ctypes)
        elif m == 1:                      # vector @ matrix
            if tb:
                gemv(kind, trans, k, n, one.ctypes, b.ctypes, b.shape[1], a.ctypes,
                     zero.ctypes, out.ctypes)
            else:
                gemv(kind, plain, n, k, one.ctypes, b.ctypes, b.shape[1], a.ctypes,
                     zero.ctypes, out.ctypes)
        else:
            # BLAS is column-major: it computes out.T = op(b).T @ op(a).T
            gemm(kind, trans if tb else plain, trans if ta else plain, n, m, k,
                 one.ctypes, b.ctypes, b.shape[1], a.ctypes, a.shape[1], zero.ctypes,
                 out.ctypes, n)
    return impl


@njit
def _matmul_loop(a, b, out, ta, tb):
    one, zero = np.ones(1, a.dtype), np.zeros(1, a.dtype)
    for i in range(a.shape[0]):
        _gemm(a[i], b[i], out[i], ta, tb, one, zero)


def _matmul_entry(sizes, out, a, b):
    nb, a1, a2, b1, b2, o1, o2, flags = carray(sizes, (8,))
    _matmul_loop(carray(a, (nb, a1, a2)), carray(b, (nb, b1, b2)), carray(out, (nb, o1, o2)),
                 flags & 1 != 0, flags & 2 != 0)
    return 0


_MATMUL = Opaque("matmul", _matmul_entry, ("float32", "float64", "complex64", "complex128"))


def _matmul_stub(ta, tb):
    def stub(dtype, a, b):
        _only_in_kernels()
    stub.__name__ = stub.__qualname__ = f"_batched_matmul_{'t' if ta else 'n'}{'t' if tb else 'n'}"
    stub.__doc__ = "op(a[i]) @ op(b[i]) for each i of a stack, op a transpose or not."
    HELPERS[stub.__name__] = _MATMUL

    @overload(stub, prefer_literal=True)
    def stub_ol(dtype, a, b):
        _same_dtype(dtype, a, "a product of stacks")
        call = _MATMUL.external(a, "a product of stacks")
        if a.dtype != b.dtype:
            raise TypingError(f"a product of stacks takes one dtype, not {a} and {b}")
        flags = (1 if ta else 0) | (2 if tb else 0)

        def impl(dtype, a, b):
            nb = a.shape[0]
            o1 = a.shape[2] if ta else a.shape[1]
            o2 = b.shape[1] if tb else b.shape[2]
            x, y = _contiguous(a), _contiguous(b)
            out = _empty((nb, o1, o2), a.dtype)
            sizes = _sizes(nb, a.shape[1], a.shape[2], b.shape[1], b.shape[2], o1, o2, flags)
            call(sizes.ctypes, out.ctypes, x.ctypes, y.ctypes)
            return out
        return _own_name(impl, stub.__name__)
    return stub


_batched_matmul_nn = _matmul_stub(False, False)
_batched_matmul_tn = _matmul_stub(True, False)
_batched_matmul_nt = _matmul_stub(False, True)
_batched_matmul_tt = _matmul_stub(True, True)


@njit
def _before(x, y):
    """The order of NumPy's sorts: NaNs last."""
    return x < y or (y != y and x == x)


@njit
def _argsort_loop(a, out):
    """Stable argsort of each row: insertion sort of runs of 16, then merges (the stable
    order is unique, so this is NumPy's result; Numba's np.argsort costs seconds of compile
    per dtype)."""
    rows, n = a.shape
    spare = np.empty(n, np.int64)
    for r in range(rows):
        x = a[r]
        idx = out[r]
        for lo in range(0, n, 16):
            hi = min(lo + 16, n)
            for i in range(lo, hi):
                j = i
                while j > lo and _before(x[i], x[idx[j - 1]]):
                    idx[j] = idx[j - 1]
                    j -= 1
                idx[j] = i
        src, dst = idx, spare
        width, passes = 16, 0
        while width < n:
            for lo in range(0, n, 2 * width):
                mid, hi = min(lo + width, n), min(lo + 2 * width, n)
                i, j = lo, mid
                for k in range(lo, hi):
                    if j < hi and (i >= mid or _before(x[src[j]], x[src[i]])):
                        dst[k] = src[j]
                        j += 1
                    else:
                        dst[k] = src[i]
                        i += 1
            src, dst = dst, src
            width *= 2
            passes += 1
        if passes % 2:                      # the result is in spare
            for k in range(n):
                idx[k] = spare[k]


def _argsort_entry(sizes, out, a, b):
    rows, n = carray(sizes, (2,))
    _argsort_loop(carray(a, (rows, n)), carray(out, (rows, n)))
    return 0


_ARGSORT = Opaque("argsort", _argsort_entry, ("float32", "float64", "int32", "int64"),
                 result="int64")


@njit(cache=True)
def _argsort_rows_linked(a):
    out = np.empty(a.shape, np.int64)
    _argsort_loop(a, out)
    return out


def _argsort_rows(dtype, a):
    """Stable argsort of each row (NaNs last, as NumPy's)."""
    _only_in_kernels()


@overload(_argsort_rows, prefer_literal=True)
def _argsort_rows_ol(dtype, a):
    _same_dtype(dtype, a, "argsort")
    if as_dtype(a.dtype) not in _ARGSORT.dtypes:
        return lambda dtype, a: _argsort_rows_linked(a)   # bools, small ints: linked
    call = _ARGSORT.external(a, "argsort")

    def impl(dtype, a):
        x = _contiguous(a)
        out = _empty(a.shape, np.int64)
        sizes = _sizes(a.shape[0], a.shape[1])
        call(sizes.ctypes, out.ctypes, x.ctypes, x.ctypes)
        return out
    return impl


HELPERS["_argsort_rows"] = _ARGSORT
assert set(HELPERS) == OPAQUE, "primitives.OPAQUE must name exactly the helpers defined here"
_CALL = re.compile(r"\b(" + "|".join(HELPERS) + r")\('(\w+)'")
