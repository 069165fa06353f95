"""logsumexp of a vector: log(sum(exp(x))), shifted by the maximum for stability."""
import numpy as np
from numba import njit

from . import Problem

NAME = "logsumexp"
SIZES = {"small": {"n": 1_000}, "medium": {"n": 100_000}, "large": {"n": 1_000_000}}
QUICK = ("small", "medium")


def fn(xp, stop_gradient):
    def f(x):
        m = stop_gradient(xp.max(x))
        return xp.log(xp.sum(xp.exp(x - m))) + m
    return f


@njit(cache=True, fastmath=False)
def numba_vg(x):
    m = x[0]
    for v in x:
        m = max(m, v)
    e = np.exp(x - m)
    s = e.sum()
    return np.log(s) + m, (e / s,)


def torch_fn(torch):
    def f(x):
        m = x.max().detach()
        return torch.log(torch.exp(x - m).sum()) + m
    return f


def make(n):
    x = np.random.default_rng(0).normal(size=n)
    return Problem(f"n={n:.0e}", (x,), (), fn, numba_vg, torch_fn)
