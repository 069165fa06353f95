"""Jacobian of f: R^n -> R^m on a grid of (n, m): forward vs reverse mode, the crossover.

    f(x) = tanh(W x + b) * (V sin(x)),   W, V fixed m x n matrices, b fixed

(the function of bench/modes.py). Forward mode needs one JVP per input direction, reverse
mode one forward pass and one pullback per output, so reverse wins when m < n.

jvpvjp uses ``jacfwd(f)`` / ``jacrev(f)``: the seed-independent part once, then the linear
part over blocks of basis vectors in a compiled loop (``W @ e_j`` is a gather of W's
column j, not a product: docs/pipeline.md).
JAX uses ``jax.jit(jax.jacfwd(f))`` / ``jax.jit(jax.jacrev(f))`` (vectorised over the basis
with vmap), PyTorch ``torch.func.jacfwd`` / ``jacrev`` (eager, vmapped), autograd
``autograd.jacobian`` (reverse mode). The hand-written Numba row is the closed form
J = diag((1 - t^2) * (V sin x)) W + diag(t) V diag(cos x), t = tanh(W x + b).
"""
from __future__ import annotations

import numpy as np
from numba import njit


NAME = "jacobian"
TITLE = "Jacobian of f: R^n -> R^m, forward vs reverse"
KIND = "jacobian"


def grid(mode):
    return [1, 10, 100] if mode == "quick" else [1, 10, 100, 400]


def sizes(mode):
    g = grid(mode)
    return [dict(n=n, m=m, cls="small" if max(n, m) <= 10 else
                 ("medium" if max(n, m) <= 100 else "large")) for n in g for m in g]


def data(n, m, seed=0):
    rng = np.random.default_rng(seed)
    W = rng.normal(size=(m, n)) / np.sqrt(n)
    V = rng.normal(size=(m, n)) / np.sqrt(n)
    b = rng.normal(size=m)
    x = np.random.default_rng(1).normal(size=n)
    return W, V, b, x


def generic(xp, W, V, b):
    def f(x):
        return xp.tanh(W @ x + b) * (V @ xp.sin(x))
    return f


@njit(cache=True)
def njit_primal(x, W, V, b):
    return np.tanh(np.dot(W, x) + b) * np.dot(V, np.sin(x))


@njit(cache=True)
def njit_jac(x, W, V, b):
    m, n = W.shape
    t = np.tanh(np.dot(W, x) + b)
    u = np.dot(V, np.sin(x))
    c = np.cos(x)
    J = np.empty((m, n))
    for i in range(m):
        a = (1.0 - t[i] * t[i]) * u[i]
        for j in range(n):
            J[i, j] = a * W[i, j] + t[i] * V[i, j] * c[j]
    return J


def exact(x, W, V, b):
    t = np.tanh(W @ x + b)
    return ((1 - t ** 2) * (V @ np.sin(x)))[:, None] * W + t[:, None] * V * np.cos(x)
