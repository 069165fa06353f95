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
from numba.np.linalg import F_INT_nptype as _F_INT, _LAPACK
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
def _finite(a):
    for x in a.ravel():
        if not np.isfinite(x):
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
# Numba's own LAPACK bindings (those its np.linalg uses); the first argument picks the
# routine's precision ("s": float32, "d": float64)
_getrf = _LAPACK().numba_xxgetrf(types.float64)
_getrf32 = _LAPACK().numba_xxgetrf(types.float32)
_getri = _LAPACK().numba_ez_xxgetri(types.float64)


def _factor(f, ipiv):
    """getrf on a square Fortran-ordered float32 or float64 matrix, in place."""


@overload(_factor)
def _factor_ol(f, ipiv):
    single = f.dtype == types.float32
    getrf, kind = (_getrf32, ord("s")) if single else (_getrf, ord("d"))

    def impl(f, ipiv):
        n = f.shape[0]
        if n:
            getrf(kind, n, n, f.ctypes, n, ipiv.ctypes)
    return impl

# A factorisation's results are packed along the last axis as the primitives in
# primitives/linalg.py define them.
@njit
def _det_loop(a, out):
    """As NumPy computes it: LU factors (getrf), then sign * exp(sum of log |diagonal|); so
    infinities and NaNs give what NumPy gives, not an error."""
    nb, n = a.shape[0], a.shape[1]
    ipiv = np.empty(n, dtype=_F_INT)
    for t in range(nb):
        f = np.empty((n, n), a.dtype).T
        f[:, :] = a[t]
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
    for i in range(a.shape[0]):
        out[i] = np.linalg.cholesky(a[i])


@njit
def _eigh_loop(a, out):
    n = a.shape[1]
    for i in range(a.shape[0]):
        w, v = np.linalg.eigh(a[i])
        out[i, :, :n] = v
        out[i, :, n] = w


@njit
def _svd_loop(a, out):
    m, n = a.shape[1], a.shape[2]
    k = min(m, n)
    for i in range(a.shape[0]):
        u, s, vt = np.linalg.svd(a[i], full_matrices=False)
        out[i, :m * k] = np.ascontiguousarray(u).reshape(m * k)
        out[i, m * k:m * k + k] = s
        out[i, m * k + k:] = np.ascontiguousarray(vt).reshape(k * n)


@njit
def _qr_loop(a, out):
    m, n = a.shape[1], a.shape[2]
    k = min(m, n)
    for i in range(a.shape[0]):
        q, r = np.linalg.qr(a[i])
        out[i, :m * k] = np.ascontiguousarray(q).reshape(m * k)
        out[i, m * k:] = np.ascontiguousarray(r).reshape(k * n)


def _checked(routine, x, out):
    """Status of ``routine``'s loop on ``x`` into ``out``: 2 if ``x`` is not finite, 1 if the
    routine raised (NumPy's LinAlgError, raised by the stub), else 0."""


@overload(_checked, prefer_literal=True)
def _checked_ol(routine, x, out):
    loop = {"cholesky": _cholesky_loop, "eigh": _eigh_loop, "svd": _svd_loop,
            "qr": _qr_loop}[routine.literal_value]

    def impl(routine, x, out):
        if not _finite(x):
            return 2
        try:
            loop(x, out)
        except Exception:
            return 1
        return 0
    return _own_name(impl, f"_{routine.literal_value}_checked")


# The entries (Numba compiles each as a C callback; an exception cannot leave one). The
# dtypes come from the pointers' types.
def _det_entry(sizes, out, a, b):
    nb, n = carray(sizes, (2,))
    _det_loop(carray(a, (nb, n, n)), carray(out, (nb,)))
    return 0


def _cholesky_entry(sizes, out, a, b):
    nb, n = carray(sizes, (2,))
    return _checked("cholesky", carray(a, (nb, n, n)), carray(out, (nb, n, n)))


def _eigh_entry(sizes, out, a, b):
    nb, n = carray(sizes, (2,))
    return _checked("eigh", carray(a, (nb, n, n)), carray(out, (nb, n, n + 1)))


def _svd_entry(sizes, out, a, b):
    nb, m, n = carray(sizes, (3,))
    k = min(m, n)
    return _checked("svd", carray(a, (nb, m, n)), carray(out, (nb, m * k + k + k * n)))


def _qr_entry(sizes, out, a, b):
    nb, m, n = carray(sizes, (3,))
    k = min(m, n)
    return _checked("qr", carray(a, (nb, m, n)), carray(out, (nb, m * k + k * n)))


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
    for t in range(nb):
        f = np.empty((n, n)).T            # Fortran order, as LAPACK reads it
        f[:, :] = a[t]
        _factor(f, ipiv)
        out[t, :, :n] = f
        for i in range(n):
            out[t, i, n] = ipiv[i] - 1


@njit
def _lu_solve_loop(lu, b, trans, out):
    """op(A) x = b for each A of the stack from its packed factors (P A = L U); False if a
    factor is singular."""
    nb, n, k = b.shape[0], b.shape[1], b.shape[2]
    for t in range(nb):
        x = b[t].copy()
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
        out[t] = x
    return True


@njit
def _lu_inverse_loop(lu, out):
    nb, n = lu.shape[0], lu.shape[1]
    ipiv = np.empty(n, dtype=_F_INT)
    for t in range(nb):
        f = np.empty((n, n)).T
        f[:, :] = lu[t, :, :n]
        for i in range(n):
            if f[i, i] == 0.0:
                return False
            ipiv[i] = int(lu[t, i, n]) + 1
        if n:
            _getri(ord("d"), n, f.ctypes, n, ipiv.ctypes)
        out[t] = f
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
@njit
def _matmul_loop(a, b, out, ta, tb):
    for i in range(a.shape[0]):
        if ta and tb:
            np.dot(a[i].T, b[i].T, out[i])
        elif ta:
            np.dot(a[i].T, b[i], out[i])
        elif tb:
            np.dot(a[i], b[i].T, out[i])
        else:
            np.dot(a[i], b[i], out[i])


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
def _argsort_loop(a, out):
    for i in range(a.shape[0]):
        out[i] = np.argsort(a[i], kind="mergesort")


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
