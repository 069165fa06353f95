"""A long chain of scalar operations, unrolled by tracing a Python loop:

    for i in range(N / 5):  x = x + h y;  y = y - h sin(x)        (h = 0.01)
    return y^2 / 2 - cos(x)

(symplectic Euler steps of a pendulum: the derivatives neither vanish nor explode over
10^6 steps). Five scalar operations per step; N is the number of unrolled operations.

The tools trace the same Python loop, so each records N operations: jvpvjp's op list,
PyTorch's and autograd's tapes, and JAX's jaxpr (then XLA). ``jax (fori_loop)`` writes
the loop with ``jax.lax.fori_loop`` instead, the way JAX code avoids unrolling. The
hand-written Numba version is a loop that stores x after every step and runs the adjoint
loop backwards.
"""
from __future__ import annotations

import math

import numpy as np
from numba import njit

from ..common import Case, fmt_num

NAME = "scalar_chain"
TITLE = "scalar chain (unrolled Python loop)"
H = 0.01
OPS_PER_STEP = 5
X0, Y0 = 0.3, 0.5


def sizes(mode):
    if mode == "quick":     # JAX's unrolled compile alone (18 s) would not fit
        return [dict(n_ops=1000, cls="small", jax_unrolled=False),
                dict(n_ops=10_000, cls="medium")]
    # 1e6 runs in a child process with a time limit: jvpvjp traces and transforms 10^6
    # operations in Python before the tape interpreter runs them
    return [dict(n_ops=1000, cls="small"), dict(n_ops=10_000, cls="medium"),
            dict(n_ops=100_000, cls="large"),
            dict(n_ops=1_000_000, cls="large", timeout=600)]


def generic(xp, steps):
    def chain(x, y):
        for _ in range(steps):
            x = x + H * y
            y = y - H * xp.sin(x)
        return 0.5 * y * y - xp.cos(x)
    return chain


def _jax_fori(jax, steps):
    jnp = jax.numpy

    def chain(x, y):
        def body(i, xy):
            x, y = xy
            x = x + H * y
            return x, y - H * jnp.sin(x)
        x, y = jax.lax.fori_loop(0, steps, body, (x, y))
        return 0.5 * y * y - jnp.cos(x)
    return chain


@njit(cache=True)
def njit_primal(x, y, steps):
    for _ in range(steps):
        x = x + H * y
        y = y - H * math.sin(x)
    return 0.5 * y * y - math.cos(x)


@njit(cache=True)
def njit_vg(x, y, steps):
    xs = np.empty(steps)
    for i in range(steps):
        x = x + H * y
        y = y - H * math.sin(x)
        xs[i] = x
    value = 0.5 * y * y - math.cos(x)
    bx, by = math.sin(x), y
    for i in range(steps - 1, -1, -1):
        bx -= H * math.cos(xs[i]) * by        # through y <- y - h sin(x)
        by += H * bx                          # through x <- x + h y
    return value, bx, by


def make(n_ops, cls, jax_unrolled=True):
    steps = n_ops // OPS_PER_STEP
    skip = {}
    if not jax_unrolled:
        skip["jax"] = ("XLA compile time of the unrolled program (11-18 s at 1e3 ops) does "
                       "not fit the quick run; --full measures it")
    elif n_ops > 1000:
        skip["jax"] = ("XLA compiles the unrolled program in 11-18 s at 1e3 ops and did "
                       "not finish within 8 min at 1e4 ops")
    case = Case(NAME, f"{fmt_num(n_ops)} ops", n_ops, cls, generic(np, steps), (X0, Y0),
                (0, 1), lambda x, y: njit_primal(x, y, steps),
                lambda x, y: njit_vg(x, y, steps),
                peers={"jax": lambda jax: generic(jax.numpy, steps),
                       "jax (fori_loop)": lambda jax: _jax_fori(jax, steps),
                       "torch": lambda torch: generic(torch, steps),
                       "autograd": lambda ag: generic(ag.numpy, steps)},
                skip=skip, rtol=1e-9, atol=1e-12, info=dict(n_ops=n_ops, steps=steps))
    return case
