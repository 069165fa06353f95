"""MLP loss: tanh hidden layer, softmax cross entropy against one-hot labels.

small: the 3-5-3 network of the examples (batch 4); medium: 784-128-10, batch 64;
large: 784-512-10, batch 256."""
import numpy as np
from numba import njit

from . import Problem

NAME = "mlp"
SIZES = {"small": {"sizes": (3, 5, 3), "batch": 4},
         "medium": {"sizes": (784, 128, 10), "batch": 64},
         "large": {"sizes": (784, 512, 10), "batch": 256}}
QUICK = ("small", "medium")


def fn(xp, stop_gradient):
    def f(W1, b1, W2, b2, X, Y):
        h = xp.tanh(X @ W1 + b1)
        z = h @ W2 + b2
        m = stop_gradient(xp.max(z, axis=1, keepdims=True))
        logp = z - (xp.log(xp.sum(xp.exp(z - m), axis=1, keepdims=True)) + m)
        return -xp.sum(Y * logp) / X.shape[0]
    return f


@njit(cache=True)
def numba_vg(W1, b1, W2, b2, X, Y):
    n = X.shape[0]
    h = np.tanh(X @ W1 + b1)
    z = h @ W2 + b2
    p = np.empty_like(z)
    value = 0.0
    for i in range(n):
        m = z[i].max()
        e = np.exp(z[i] - m)
        s = e.sum()
        p[i] = e / s
        for j in range(z.shape[1]):
            value -= Y[i, j] * (z[i, j] - m - np.log(s))
    value /= n
    dz = (p - Y) / n
    dW2 = h.T @ dz
    db2 = dz.sum(axis=0)
    dh = (dz @ W2.T) * (1.0 - h * h)
    dW1 = X.T @ dh
    db1 = dh.sum(axis=0)
    return value, (dW1, db1, dW2, db2)


def torch_fn(torch):
    def f(W1, b1, W2, b2, X, Y):
        z = torch.tanh(X @ W1 + b1) @ W2 + b2
        return -(Y * torch.log_softmax(z, 1)).sum() / X.shape[0]
    return f


def make(sizes, batch):
    rng = np.random.default_rng(0)
    d, h, c = sizes
    params = (rng.normal(size=(d, h)) / np.sqrt(d), np.zeros(h),
              rng.normal(size=(h, c)) / np.sqrt(h), np.zeros(c))
    X = rng.normal(size=(batch, d))
    Y = np.eye(c)[rng.integers(0, c, batch)]
    return Problem(f"{d}-{h}-{c}, batch {batch}", params, (X, Y), fn, numba_vg, torch_fn)
