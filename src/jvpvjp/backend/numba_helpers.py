"""Numba helpers called from generated kernels (compiled once, cached on disk by Numba)."""
import numpy as np
from numba import njit

from .numba_arrays import (_broadcast, _contiguous, _empty, _flat,  # noqa: F401 (kernels'
                           _full, _local, _permuted, _shaped)       # imports come from here)

_opts = dict(cache=True, error_model="numpy")


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
def _take(values, positions):
    """values[positions] for 1-D arrays (negative positions count from the end, as in
    NumPy). Numba's fancy indexing would inline a large generic routine into every kernel
    that gathers."""
    n = values.size
    out = np.empty(positions.size, values.dtype)
    for i in range(positions.size):
        p = positions[i]
        if p < 0:
            p += n
        if p < 0 or p >= n:
            raise IndexError("index out of bounds")
        out[i] = values[p]
    return out


@njit(**_opts)
def _at(values, p):
    """values[p] for a 1-D array (a negative p counts from the end, as in NumPy), with
    NumPy's IndexError out of range: a gather's element at positions computed at run time
    (Numba's own indexing checks no bounds)."""
    n = values.size
    if p < 0:
        p += n
    if p < 0 or p >= n:
        raise IndexError("index out of bounds")
    return values[p]


@njit(**_opts)
def _place(out, x, outer, width, offset):
    """Copy ``x``, seen as ``outer`` rows, into the rows of ``out`` (``width`` elements
    each) from column ``offset``, and return ``out``: one input of a concatenation, both
    arrays flat. Numba's ``np.concatenate`` assigns slices, whose shape-mismatch message
    alone compiles Numba's string formatting (seconds in a new process)."""
    n = x.size // outer if outer else 0
    for o in range(outer):
        for i in range(n):
            out[o * width + offset + i] = x[o * n + i]
    return out


@njit(**_opts)
def _scatter_add(values, positions, size):
    out = np.zeros(size, values.dtype)
    for i in range(values.size):
        out[positions[i]] += values[i]
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


# Large helpers (np.linalg, products of stacks, sorting) are called through a symbol, not
# linked into each kernel: see `opaque`.
from .opaque import (_argsort_rows, _batched_matmul_nn, _batched_matmul_nt,  # noqa: E402
                     _batched_matmul_tn, _batched_matmul_tt, _cholesky_batched, _det_batched,
                     _eigh_batched, _lu_batched, _lu_inverse_batched, _lu_solve_batched,
                     _qr_batched, _svd_batched)


@njit(**_opts)
def _lu_logdet_batched(lu):
    """(sign, log |det|) from `lu`'s packed factors, as NumPy's slogdet (0, -inf when singular)."""
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
    x = _flat(a)
    out = np.empty(x.size, a.dtype)
    for start in range(0, x.size, _SIN_BLOCK):
        stop = min(start + _SIN_BLOCK, x.size)
        xs, os = x[start:stop], out[start:stop]
        if _sincos_medium(xs, os, cosine):
            _sincos_full(xs, os, cosine)
    return out.reshape(a.shape)


HELPERS = ["_sincos_array", "_lu_batched", "_lu_solve_batched", "_lu_inverse_batched", "_lu_logdet_batched",
           "_det_batched", "_cholesky_batched",
           "_eigh_batched", "_svd_batched", "_qr_batched", "_argsort_rows", "_argmax_rows", "_argmin_rows", "_cumsum_rows", "_flat", "_shaped", "_permuted", "_broadcast", "_contiguous", "_empty", "_full", "_local", "_sum_rows", "_sum_cols", "_prod_rows", "_max_rows", "_min_rows", "_take", "_at", "_place", "_scatter_add",
           "_batched_matmul_nn", "_batched_matmul_tn", "_batched_matmul_nt",
           "_batched_matmul_tt"]
