"""logsumexp written the way users write it: ``m = np.max(x); m + log(sum(exp(x - m)))``.

The same plain code for every tool (jax.numpy, torch, autograd.numpy in place of NumPy).
Unlike the library version (`logsumexp`), the maximum is not a constant here, so the
gradient carries the term of ``m`` (zero in exact arithmetic, shared by the tied
maxima): what a tool's reverse mode makes of plain code.
"""
from __future__ import annotations

import numpy as np

from ..common import Case, fmt_num
from .logsumexp import njit_primal, njit_vg, sizes  # noqa: F401  (the same sizes)

NAME = "logsumexp_user"
TITLE = "logsumexp of a vector, written with max, exp, sum and log"


def generic(xp):
    def lse(x):
        m = xp.max(x)
        return m + xp.log(xp.sum(xp.exp(x - m)))
    return lse


f = generic(np)


def _torch(torch):
    return lambda x: (lambda m: m + torch.log(torch.sum(torch.exp(x - m))))(torch.max(x))


def make(n, cls):
    x = np.random.default_rng(0).normal(size=n) * 3.0
    return Case(NAME, f"n={fmt_num(n)}", n, cls, f, (x,), (0,), njit_primal, njit_vg,
                peers={"jax": lambda jax: generic(jax.numpy), "torch": _torch,
                       "autograd": lambda autograd: generic(autograd.numpy)},
                info=dict(n=n))
