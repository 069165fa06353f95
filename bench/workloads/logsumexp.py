"""logsumexp of a vector: log(sum(exp(x))), shifted by max(x) for stability.

Each tool uses its own library's logsumexp (jvpvjp.nn.functional.logsumexp,
jax.scipy.special.logsumexp, torch.logsumexp, autograd.scipy.special.logsumexp); the
gradient is softmax(x).
"""
from __future__ import annotations

import math

import numpy as np
from numba import njit

from jvpvjp.nn.functional import logsumexp as lse_jvpvjp

from ..common import Case, fmt_num

NAME = "logsumexp"
TITLE = "logsumexp of a vector"


def sizes(mode):
    if mode == "quick":
        return [dict(n=1000, cls="small"), dict(n=100_000, cls="medium")]
    return [dict(n=1000, cls="small"), dict(n=10_000, cls="medium"),
            dict(n=100_000, cls="medium"), dict(n=1_000_000, cls="large")]


@njit(cache=True)
def njit_primal(x):
    m = x[0]
    for i in range(x.size):
        if x[i] > m:
            m = x[i]
    s = 0.0
    for i in range(x.size):
        s += math.exp(x[i] - m)
    return math.log(s) + m


@njit(cache=True)
def njit_vg(x):
    m = x[0]
    for i in range(x.size):
        if x[i] > m:
            m = x[i]
    g = np.empty_like(x)
    s = 0.0
    for i in range(x.size):
        e = math.exp(x[i] - m)
        g[i] = e
        s += e
    inv = 1.0 / s
    for i in range(x.size):
        g[i] *= inv
    return math.log(s) + m, g


def f(x):
    return lse_jvpvjp(x)


def _jax(jax):
    from jax.scipy.special import logsumexp
    return lambda x: logsumexp(x)


def _torch(torch):
    return lambda x: torch.logsumexp(x, 0)


def _autograd(autograd):
    from autograd.scipy.special import logsumexp
    return lambda x: logsumexp(x)


def make(n, cls):
    x = np.random.default_rng(0).normal(size=n) * 3.0
    return Case(NAME, f"n={fmt_num(n)}", n, cls, f, (x,), (0,), njit_primal, njit_vg,
                peers={"jax": _jax, "torch": _torch, "autograd": _autograd}, info=dict(n=n))
