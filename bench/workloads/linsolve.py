"""A linear solve and a log-determinant, 100 x 100:

    L(A, b) = sum(solve(A, b)**2) + slogdet(A).logabsdet,

A well conditioned (the identity times 10 plus noise). Both arguments are differentiated:
with x = A^-1 b, dL/db = A^-T 2x and dL/dA = -(dL/db) x^T + A^-T.
"""
from __future__ import annotations

import numpy as np
from numba import njit

from ..common import Case, fmt_num

NAME = "linsolve"
TITLE = "solve and slogdet"


def sizes(mode):
    return [dict(n=100, cls="medium")] if mode == "quick" else \
        [dict(n=30, cls="small"), dict(n=100, cls="medium")]


def generic(xp):
    def loss(a, b):
        x = xp.linalg.solve(a, b)
        return xp.sum(x * x) + xp.linalg.slogdet(a)[1]
    return loss


@njit(cache=True)
def njit_primal(a, b):
    x = np.linalg.solve(a, b)
    return np.sum(x * x) + np.linalg.slogdet(a)[1]


@njit(cache=True)
def njit_vg(a, b):
    x = np.linalg.solve(a, b)
    inv_t = np.linalg.inv(a).T
    gb = inv_t @ (2.0 * x)
    ga = -np.outer(gb, x) + inv_t
    return np.sum(x * x) + np.linalg.slogdet(a)[1], ga, gb


def make(n, cls):
    rng = np.random.default_rng(0)
    a = 10.0 * np.eye(n) + rng.normal(size=(n, n))
    b = rng.normal(size=n)
    return Case(NAME, f"n={fmt_num(n)}", n, cls, generic(np), (a, b), (0, 1), njit_primal,
                njit_vg, peers={"jax": lambda jax: generic(jax.numpy),
                                "torch": lambda torch: generic(torch),
                                "autograd": lambda ag: generic(ag.numpy)},
                rtol=1e-7, atol=1e-9, info=dict(n=n))
