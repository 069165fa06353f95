"""Least squares with polynomial features: 0.5 * sum_i (sign(t_i) - sum_j x_j t_i**j)**2,
t_i evenly spaced in [-1, 1]. The features t_i**j are data, computed once."""
import numpy as np
from numba import njit

from . import Problem

NAME = "lstsq_poly"
SIZES = {"small": {"n": 1_000}, "medium": {"n": 3_000}, "large": {"n": 10_000}}
QUICK = ("small", "medium")
M = 128


def fn(xp, stop_gradient):
    def f(x, V, s):
        r = s - V @ x
        return 0.5 * xp.sum(r * r)
    return f


@njit(cache=True)
def numba_vg(x, V, s):
    r = s - V @ x
    return 0.5 * (r @ r), (-(V.T @ r),)


def torch_fn(torch):
    def f(x, V, s):
        r = s - V @ x
        return 0.5 * (r * r).sum()
    return f


def make(n):
    t = np.linspace(-1.0, 1.0, n)
    V = t[:, None] ** np.arange(M)
    x = np.random.default_rng(0).normal(size=M) * 0.1
    return Problem(f"n={n}, m={M}", (x,), (V, np.sign(t)), fn, numba_vg, torch_fn)
