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


HELPERS = ["_argsort_rows", "_argmax_rows", "_argmin_rows", "_cumsum_rows", "_flat", "_sum_rows", "_sum_cols", "_prod_rows", "_max_rows", "_min_rows", "_scatter_add",
           "_batched_matmul_nn", "_batched_matmul_tn", "_batched_matmul_nt",
           "_batched_matmul_tt"]
