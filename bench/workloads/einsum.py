"""Tensor contractions written with ``np.einsum``, each inside a scalar loss:

    ij,jk->ik     L(A, B) = sum((A B)**2) / 2,          A, B: 100 x 100
    bij,bjk->bik  L(A, B) = sum((A_b B_b)**2) / 2,      32 batches of 16 x 16
    ii->          L(A, B) = trace(A)**2 + trace(A B),   100 x 100 (the second einsum
                                                        is ij,ji->)

Both arguments are differentiated. The hand-written Numba versions use matmul loops (Numba
has no einsum).
"""
from __future__ import annotations

import numpy as np
from numba import njit

from ..common import Case

NAME = "einsum"
TITLE = "einsum contractions in a scalar loss"

VARIANTS = {
    "ij,jk->ik": ((100, 100), (100, 100)),
    "bij,bjk->bik": ((32, 16, 16), (32, 16, 16)),
    "ii->": ((100, 100), (100, 100)),
}


def sizes(mode):
    return [dict(subs=s, cls="medium") for s in VARIANTS]


def generic(xp, subs):
    if subs == "ii->":
        def loss(a, b):
            return xp.einsum("ii->", a) ** 2 + xp.einsum("ij,ji->", a, b)
        return loss

    def loss(a, b):
        c = xp.einsum(subs, a, b)
        return 0.5 * xp.sum(c * c)
    return loss


@njit(cache=True)
def _mm_primal(a, b):
    c = a @ b
    return 0.5 * np.sum(c * c)


@njit(cache=True)
def _mm_vg(a, b):
    c = a @ b
    return 0.5 * np.sum(c * c), c @ b.T, a.T @ c


@njit(cache=True)
def _bmm_primal(a, b):
    s = 0.0
    for i in range(a.shape[0]):
        c = a[i] @ b[i]
        s += np.sum(c * c)
    return 0.5 * s


@njit(cache=True)
def _bmm_vg(a, b):
    s = 0.0
    ga = np.empty_like(a)
    gb = np.empty_like(b)
    for i in range(a.shape[0]):
        c = a[i] @ b[i]
        s += np.sum(c * c)
        ga[i] = c @ b[i].T
        gb[i] = a[i].T @ c
    return 0.5 * s, ga, gb


@njit(cache=True)
def _trace_primal(a, b):
    return np.trace(a) ** 2 + np.sum(a * b.T)


@njit(cache=True)
def _trace_vg(a, b):
    t = np.trace(a)
    ga = b.T.copy()
    for i in range(a.shape[0]):
        ga[i, i] += 2.0 * t
    return t ** 2 + np.sum(a * b.T), ga, a.T.copy()


_NJIT = {"ij,jk->ik": (_mm_primal, _mm_vg), "bij,bjk->bik": (_bmm_primal, _bmm_vg),
         "ii->": (_trace_primal, _trace_vg)}


def _torch(subs):
    return lambda torch: generic(torch, subs)


def make(subs, cls):
    sa, sb = VARIANTS[subs]
    rng = np.random.default_rng(0)
    a, b = rng.normal(size=sa) * 0.1, rng.normal(size=sb) * 0.1
    primal, vg = _NJIT[subs]
    return Case(NAME, subs, float(a.size), cls, generic(np, subs), (a, b), (0, 1), primal, vg,
                peers={"jax": lambda jax: generic(jax.numpy, subs), "torch": _torch(subs),
                       "autograd": lambda ag: generic(ag.numpy, subs)},
                info=dict(subscripts=subs, shapes=[sa, sb]))
