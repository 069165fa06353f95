"""MLP loss: tanh hidden layer, softmax cross-entropy on one-hot labels, mean over the batch.

    L(W1, b1, W2, b2) = -mean_b sum_c Y[b, c] * log_softmax(tanh(X W1 + b1) W2 + b2)[b, c]

Sizes: the small 3-5-3 network (batch 1), 784-128-10 with batch 64, and with batch 1024.
The gradient is taken with respect to the four parameter arrays.
"""
from __future__ import annotations

import math

import numpy as np
from numba import njit

import jvpvjp

from ..common import Case

NAME = "mlp"
TITLE = "MLP loss, tanh + softmax cross-entropy"


def sizes(mode):
    s = [dict(layers=(3, 5, 3), batch=1, cls="small"),
         dict(layers=(784, 128, 10), batch=64, cls="medium")]
    if mode != "quick":
        s.append(dict(layers=(784, 128, 10), batch=1024, cls="large"))
    return s


def generic(xp, stop):
    def mlp(W1, b1, W2, b2, X, Y):
        h = xp.tanh(X @ W1 + b1)
        z = h @ W2 + b2
        zs = z - stop(xp.max(z, axis=1, keepdims=True))
        logp = zs - xp.log(xp.sum(xp.exp(zs), axis=1, keepdims=True))
        return -xp.mean(xp.sum(Y * logp, axis=1))
    return mlp


f = generic(np, jvpvjp.stop_gradient)


@njit(cache=True)
def njit_primal(W1, b1, W2, b2, X, Y):
    A = np.dot(X, W1)
    B, H = A.shape
    for i in range(B):
        for j in range(H):
            A[i, j] = math.tanh(A[i, j] + b1[j])
    Z = np.dot(A, W2)
    C = Z.shape[1]
    loss = 0.0
    for i in range(B):
        m = -math.inf
        for c in range(C):
            Z[i, c] += b2[c]
            m = max(m, Z[i, c])
        s = 0.0
        for c in range(C):
            s += math.exp(Z[i, c] - m)
        lse = math.log(s) + m
        for c in range(C):
            loss -= Y[i, c] * (Z[i, c] - lse)
    return loss / B


@njit(cache=True)
def njit_vg(W1, b1, W2, b2, X, Y):
    A = np.dot(X, W1)
    B, H = A.shape
    for i in range(B):
        for j in range(H):
            A[i, j] = math.tanh(A[i, j] + b1[j])
    Z = np.dot(A, W2)
    C = Z.shape[1]
    loss = 0.0
    inv_b = 1.0 / B
    for i in range(B):                     # Z becomes dL/dZ
        m = -math.inf
        for c in range(C):
            Z[i, c] += b2[c]
            m = max(m, Z[i, c])
        s = 0.0
        ysum = 0.0
        for c in range(C):
            s += math.exp(Z[i, c] - m)
            ysum += Y[i, c]
        lse = math.log(s) + m
        for c in range(C):
            loss -= Y[i, c] * (Z[i, c] - lse)
            Z[i, c] = (math.exp(Z[i, c] - lse) * ysum - Y[i, c]) * inv_b
    gW2 = np.dot(A.T, Z)
    gb2 = Z.sum(axis=0)
    D = np.dot(Z, W2.T)
    for i in range(B):
        for j in range(H):
            D[i, j] *= 1.0 - A[i, j] * A[i, j]
    gW1 = np.dot(X.T, D)
    gb1 = D.sum(axis=0)
    return loss * inv_b, gW1, gb1, gW2, gb2


def _torch(torch):
    def mlp(W1, b1, W2, b2, X, Y):
        z = torch.tanh(X @ W1 + b1) @ W2 + b2
        return torch.nn.functional.cross_entropy(z, Y)    # Y: class probabilities
    return mlp


def make(layers, batch, cls):
    n_in, n_h, n_out = layers
    rng = np.random.default_rng(0)
    args = (rng.normal(size=(n_in, n_h)) / math.sqrt(n_in), rng.normal(size=n_h) * 0.1,
            rng.normal(size=(n_h, n_out)) / math.sqrt(n_h), rng.normal(size=n_out) * 0.1,
            rng.normal(size=(batch, n_in)), np.eye(n_out)[rng.integers(0, n_out, batch)])
    label = f"{n_in}-{n_h}-{n_out}, batch {batch}"
    n_params = n_in * n_h + n_h + n_h * n_out + n_out
    return Case(NAME, label, batch * n_params, cls, f, args, (0, 1, 2, 3), njit_primal,
                njit_vg,
                peers={"jax": lambda jax: generic(jax.numpy, jax.lax.stop_gradient),
                       "torch": _torch,
                       "autograd": lambda ag: generic(ag.numpy, lambda v: v)},
                info=dict(layers=list(layers), batch=batch))
