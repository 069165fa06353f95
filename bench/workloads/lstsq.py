"""Least squares with polynomial features:

    L(x) = 0.5 * sum_i (sign(t_i) - sum_j x_j t_i**j)**2,   t_i evenly spaced in [-1, 1],

j = 0 … m-1 (m = 128 coefficients). The feature matrix V[i, j] = t_i**j does not depend on
x, so every tool gets it (and s = sign(t)) as a non-differentiated argument: the function
is a matrix-vector product, a residual and a sum of squares; the gradient is -V^T r.
"""
from __future__ import annotations

import numpy as np
from numba import njit

from ..common import Case, fmt_num

NAME = "lstsq"
TITLE = "least squares, polynomial features (m = 128)"
M = 128


def sizes(mode):
    if mode == "quick":
        return [dict(n=1000, cls="small"), dict(n=3000, cls="medium")]
    return [dict(n=1000, cls="small"), dict(n=3000, cls="medium"),
            dict(n=10_000, cls="large")]


def generic(xp):
    def lstsq(x, V, s):
        r = s - V @ x
        return 0.5 * xp.sum(r * r)
    return lstsq


f = generic(np)


@njit(cache=True)
def njit_primal(x, V, s):
    r = s - np.dot(V, x)
    return 0.5 * np.dot(r, r)


@njit(cache=True)
def njit_vg(x, V, s):
    r = s - np.dot(V, x)
    return 0.5 * np.dot(r, r), -np.dot(r, V)


def _torch(torch):
    def lstsq(x, V, s):
        r = s - V @ x
        return 0.5 * torch.sum(r * r)
    return lstsq


def make(n, cls):
    t = np.linspace(-1.0, 1.0, n)
    V = t[:, None] ** np.arange(M)
    s = np.sign(t)
    x = np.random.default_rng(0).normal(size=M) * 0.1
    return Case(NAME, f"n={fmt_num(n)}", n, cls, f, (x, V, s), (0,), njit_primal, njit_vg,
                peers={"jax": lambda jax: generic(jax.numpy), "torch": _torch,
                       "autograd": lambda ag: generic(ag.numpy)},
                info=dict(n=n, m=M))
