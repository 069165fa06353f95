"""Numba helpers called from generated kernels (compiled once, cached on disk by Numba)."""
import numpy as np
from numba import njit

_opts = dict(cache=True, error_model="numpy")


@njit(**_opts)
def _flat(x):
    return np.ascontiguousarray(x).reshape(x.size)


@njit(**_opts)
def _sum_rows(a):
    out = np.zeros(a.shape[0], a.dtype)
    for i in range(a.shape[0]):
        s = a.dtype.type(0)
        for j in range(a.shape[1]):
            s += a[i, j]
        out[i] = s
    return out


@njit(**_opts)
def _sum_cols(a):
    out = np.zeros(a.shape[1], a.dtype)
    for i in range(a.shape[0]):
        for j in range(a.shape[1]):
            out[j] += a[i, j]
    return out


@njit(**_opts)
def _prod_rows(a):
    out = np.ones(a.shape[0], a.dtype)
    for i in range(a.shape[0]):
        s = a.dtype.type(1)
        for j in range(a.shape[1]):
            s *= a[i, j]
        out[i] = s
    return out


@njit(**_opts)
def _max_rows(a):
    out = np.empty(a.shape[0], a.dtype)
    for i in range(a.shape[0]):
        s = a[i, 0]
        for j in range(1, a.shape[1]):
            v = a[i, j]
            if v > s or v != v:
                s = v
            if s != s:
                break
        out[i] = s
    return out


@njit(**_opts)
def _min_rows(a):
    out = np.empty(a.shape[0], a.dtype)
    for i in range(a.shape[0]):
        s = a[i, 0]
        for j in range(1, a.shape[1]):
            v = a[i, j]
            if v < s or v != v:
                s = v
            if s != s:
                break
        out[i] = s
    return out


@njit(**_opts)
def _scatter_add(values, positions, size):
    out = np.zeros(size, values.dtype)
    for i in range(values.size):
        out[positions[i]] += values[i]
    return out


@njit(**_opts)
def _batched_matmul_nn(a, b):
    out = np.empty((a.shape[0], a.shape[1], b.shape[2]), a.dtype)
    for i in range(a.shape[0]):
        out[i] = a[i] @ b[i]
    return out


@njit(**_opts)
def _batched_matmul_tn(a, b):
    out = np.empty((a.shape[0], a.shape[2], b.shape[2]), a.dtype)
    for i in range(a.shape[0]):
        out[i] = a[i].T @ b[i]
    return out


@njit(**_opts)
def _batched_matmul_nt(a, b):
    out = np.empty((a.shape[0], a.shape[1], b.shape[1]), a.dtype)
    for i in range(a.shape[0]):
        out[i] = a[i] @ b[i].T
    return out


@njit(**_opts)
def _batched_matmul_tt(a, b):
    out = np.empty((a.shape[0], a.shape[2], b.shape[1]), a.dtype)
    for i in range(a.shape[0]):
        out[i] = a[i].T @ b[i].T
    return out


@njit(**_opts)
def _cumsum_rows(a):
    """Running sums along each row, in order (as NumPy's add.accumulate)."""
    out = np.empty_like(a)
    for i in range(a.shape[0]):
        if a.shape[1] == 0:
            continue
        s = a[i, 0]
        out[i, 0] = s
        for j in range(1, a.shape[1]):
            s = s + a[i, j]
            out[i, j] = s
    return out


@njit(**_opts)
def _argsort_rows(a):
    """Stable argsort of each row (NaNs last, as NumPy's)."""
    out = np.empty(a.shape, np.int64)
    for i in range(a.shape[0]):
        out[i] = np.argsort(a[i], kind="mergesort")
    return out


@njit(**_opts)
def _argmax_rows(a):
    """Position of each row's first maximum (of its first NaN, as NumPy's)."""
    out = np.empty(a.shape[0], np.int64)
    for i in range(a.shape[0]):
        out[i] = np.argmax(a[i])
    return out


@njit(**_opts)
def _argmin_rows(a):
    out = np.empty(a.shape[0], np.int64)
    for i in range(a.shape[0]):
        out[i] = np.argmin(a[i])
    return out


# np.linalg over a (batch, ...) stack of matrices; a factorisation's results packed along
# the last axis as the primitives in primitives/linalg.py define them
@njit(**_opts)
def _det_batched(a):
    out = np.empty(a.shape[0], a.dtype)
    for i in range(a.shape[0]):
        out[i] = np.linalg.det(np.ascontiguousarray(a[i]))
    return out


@njit(**_opts)
def _cholesky_batched(a):
    out = np.empty(a.shape, a.dtype)
    for i in range(a.shape[0]):
        out[i] = np.linalg.cholesky(np.ascontiguousarray(a[i]))
    return out


@njit(**_opts)
def _eigh_batched(a):
    n = a.shape[1]
    out = np.empty((a.shape[0], n, n + 1), a.dtype)
    for i in range(a.shape[0]):
        w, v = np.linalg.eigh(np.ascontiguousarray(a[i]))
        out[i, :, :n] = v
        out[i, :, n] = w
    return out


@njit(**_opts)
def _svd_batched(a):
    m, n = a.shape[1], a.shape[2]
    k = min(m, n)
    out = np.empty((a.shape[0], m * k + k + k * n), a.dtype)
    for i in range(a.shape[0]):
        u, s, vt = np.linalg.svd(np.ascontiguousarray(a[i]), full_matrices=False)
        out[i, :m * k] = np.ascontiguousarray(u).reshape(m * k)
        out[i, m * k:m * k + k] = s
        out[i, m * k + k:] = np.ascontiguousarray(vt).reshape(k * n)
    return out


@njit(**_opts)
def _qr_batched(a):
    m, n = a.shape[1], a.shape[2]
    k = min(m, n)
    out = np.empty((a.shape[0], m * k + k * n), a.dtype)
    for i in range(a.shape[0]):
        q, r = np.linalg.qr(np.ascontiguousarray(a[i]))
        out[i, :m * k] = np.ascontiguousarray(q).reshape(m * k)
        out[i, m * k:] = np.ascontiguousarray(r).reshape(k * n)
    return out


# LU factors through Numba's own LAPACK bindings (getrf, getri: those its np.linalg uses)
from numba import types as _types  # noqa: E402
from numba.np.linalg import F_INT_nptype as _F_INT, _LAPACK  # noqa: E402

_getrf = _LAPACK().numba_xxgetrf(_types.float64)
_getri = _LAPACK().numba_ez_xxgetri(_types.float64)


@njit(**_opts)
def _lu_batched(a):
    """(batch, n, n) -> (batch, n, n + 1): getrf's factors, then its row interchanges."""
    nb, n = a.shape[0], a.shape[1]
    out = np.empty((nb, n, n + 1))
    ipiv = np.empty(n, dtype=_F_INT)
    for t in range(nb):
        f = np.empty((n, n)).T            # Fortran order, as LAPACK reads it
        f[:, :] = a[t]
        if n:
            _getrf(ord("d"), n, n, f.ctypes, n, ipiv.ctypes)
        out[t, :, :n] = f
        for i in range(n):
            out[t, i, n] = ipiv[i] - 1
    return out


@njit(**_opts)
def _lu_solve_batched(lu, b, trans):
    """op(A) x = b for each A of the stack from its packed factors (P A = L U)."""
    nb, n, k = b.shape[0], b.shape[1], b.shape[2]
    out = np.empty((nb, n, k))
    for t in range(nb):
        x = b[t].copy()
        f = lu[t]
        for i in range(n):
            if f[i, i] == 0.0:
                raise np.linalg.LinAlgError("Singular matrix")
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
    return out


@njit(**_opts)
def _lu_inverse_batched(lu):
    nb, n = lu.shape[0], lu.shape[1]
    out = np.empty((nb, n, n))
    ipiv = np.empty(n, dtype=_F_INT)
    for t in range(nb):
        f = np.empty((n, n)).T
        f[:, :] = lu[t, :, :n]
        for i in range(n):
            if f[i, i] == 0.0:
                raise np.linalg.LinAlgError("Singular matrix")
            ipiv[i] = int(lu[t, i, n]) + 1
        if n:
            _getri(ord("d"), n, f.ctypes, n, ipiv.ctypes)
        out[t] = f
    return out


@njit(**_opts)
def _lu_logdet_batched(lu):
    """(sign, log |det|) from the factors, as NumPy's slogdet (0, -inf when singular)."""
    nb, n = lu.shape[0], lu.shape[1]
    out = np.empty((nb, 2))
    for t in range(nb):
        sign = 1.0
        logabs = 0.0
        for i in range(n):
            if int(lu[t, i, n]) != i:
                sign = -sign
            d = lu[t, i, i]
            if d == 0.0:
                sign = 0.0
                logabs = -np.inf
                break
            if d < 0.0:
                sign = -sign
            logabs += np.log(abs(d))
        out[t, 0] = sign
        out[t, 1] = logabs
    return out


# sin and cos of whole arrays, out of loop nests (large arrays): in blocks, each by the
# medium-range functions (a sixth of the work), and again by the full ones when an element
# of the block is beyond their range or not finite
from .vmath import SIN_MEDIUM, vcos, vcos_medium, vsin, vsin_medium, wide_vectors  # noqa: E402

_SIN_BLOCK = 4096


@njit(**_opts)
def _sincos_medium(x, out, cosine):
    """out = sin(x) (cos(x)) where |x| < SIN_MEDIUM; whether some element is beyond (or not
    finite). (The test of ``cosine`` is moved out of the loop by LLVM.)"""
    wide_vectors()
    beyond = False
    for i in range(x.size):
        out[i] = vcos_medium(x[i]) if cosine else vsin_medium(x[i])
        beyond |= not abs(x[i]) < SIN_MEDIUM
    return beyond


@njit(**_opts)
def _sincos_full(x, out, cosine):
    wide_vectors()
    for i in range(x.size):
        out[i] = vcos(x[i]) if cosine else vsin(x[i])


@njit(**_opts)
def _sincos_array(a, cosine):
    """np.sin(a), or np.cos(a) if ``cosine``, for a float array of any layout. (The inner
    loops are functions of their own: inlined into the block loop, they vectorise worse.)"""
    x = np.ascontiguousarray(a).reshape(-1)
    out = np.empty(x.size, a.dtype)
    for start in range(0, x.size, _SIN_BLOCK):
        stop = min(start + _SIN_BLOCK, x.size)
        xs, os = x[start:stop], out[start:stop]
        if _sincos_medium(xs, os, cosine):
            _sincos_full(xs, os, cosine)
    return out.reshape(a.shape)


HELPERS = ["_sincos_array", "_lu_batched", "_lu_solve_batched", "_lu_inverse_batched", "_lu_logdet_batched",
           "_det_batched", "_cholesky_batched",
           "_eigh_batched", "_svd_batched", "_qr_batched", "_argsort_rows", "_argmax_rows", "_argmin_rows", "_cumsum_rows", "_flat", "_sum_rows", "_sum_cols", "_prod_rows", "_max_rows", "_min_rows", "_scatter_add",
           "_batched_matmul_nn", "_batched_matmul_tn", "_batched_matmul_nt",
           "_batched_matmul_tt"]
