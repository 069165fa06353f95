"""Gaussian mixture model objective, as in ADBench (Srajer et al. 2018).

Parameters: log-weights ``alphas`` (k), ``means`` (k, d) and ``icf`` (k, d + d(d-1)/2):
per component the log-diagonal of the lower-triangular precision factor Q, then its
strictly lower entries (row-major). With a Wishart prior (gamma = 1, m = 0):

    f = -n d/2 log(2 pi) + sum_i logsumexp_k(alpha_k + sum(log diag Q_k)
        - 1/2 ||Q_k (x_i - mu_k)||^2) - n logsumexp(alpha)
        + sum_k (gamma^2/2 (||diag Q_k||^2 + ||lower Q_k||^2) - m sum(log diag Q_k)) - k C
"""
from math import lgamma, log, pi

import numpy as np
from numba import njit

from . import Problem

NAME = "gmm"
SIZES = {"small": {"d": 2, "k": 5}, "medium": {"d": 10, "k": 25}, "large": {"d": 32, "k": 100}}
QUICK = ("small", "medium")
N = 1000
GAMMA, WISHART_M = 1.0, 0


def constant(n, d, k):
    deg = d + WISHART_M + 1
    lmg = 0.25 * d * (d - 1) * log(pi) + sum(lgamma(0.5 * deg + 0.5 * (1 - j))
                                              for j in range(1, d + 1))
    C = deg * d * (log(GAMMA) - 0.5 * log(2)) - lmg
    return -n * d * 0.5 * log(2 * pi) - k * C


def expand_matrix(d):
    """E with lower @ E = the strictly lower triangle, flattened row-major."""
    rows, cols = np.tril_indices(d, -1)
    E = np.zeros((len(rows), d * d))
    E[np.arange(len(rows)), rows * d + cols] = 1.0
    return E


def fn(xp, stop_gradient):
    def f(alphas, means, icf, x, E, const):
        k, d = means.shape
        logdiag = icf[:, :d]
        Qd = xp.exp(logdiag)
        sum_qs = xp.sum(logdiag, axis=1)
        lower = icf[:, d:]
        L = xp.reshape(lower @ E, (k, d, d))
        xc = x[None, :, :] - means[:, None, :]                        # (k, n, d)
        Lx = Qd[:, None, :] * xc + xp.matmul(xc, xp.swapaxes(L, 1, 2))
        inner = (alphas + sum_qs)[:, None] - 0.5 * xp.sum(Lx * Lx, axis=2)   # (k, n)
        mx = stop_gradient(xp.max(inner, axis=0))
        slse = xp.sum(xp.log(xp.sum(xp.exp(inner - mx), axis=0)) + mx)
        ma = stop_gradient(xp.max(alphas))
        lse_alphas = xp.log(xp.sum(xp.exp(alphas - ma))) + ma
        frob = xp.sum(Qd * Qd, axis=1) + xp.sum(lower * lower, axis=1)
        prior = xp.sum(0.5 * GAMMA * GAMMA * frob - WISHART_M * sum_qs)
        return const + slse - x.shape[0] * lse_alphas + prior
    return f


@njit(cache=True)
def numba_vg(alphas, means, icf, x, E, const):
    n, d = x.shape
    k = alphas.shape[0]
    Qd = np.exp(icf[:, :d])
    L = np.zeros((k, d, d))
    sum_qs = np.zeros(k)
    for kk in range(k):
        idx = d
        for r in range(d):
            sum_qs[kk] += icf[kk, r]
            for c in range(r):
                L[kk, r, c] = icf[kk, idx]
                idx += 1
    g_alpha, g_means, g_icf = np.zeros(k), np.zeros((k, d)), np.zeros(icf.shape)
    xc, Lx, beta = np.empty((k, d)), np.empty((k, d)), np.empty(k)
    value = const
    for i in range(n):
        for kk in range(k):
            sq = 0.0
            for j in range(d):
                xc[kk, j] = x[i, j] - means[kk, j]
            for r in range(d):
                s = Qd[kk, r] * xc[kk, r]
                for c in range(r):
                    s += L[kk, r, c] * xc[kk, c]
                Lx[kk, r] = s
                sq += s * s
            beta[kk] = alphas[kk] + sum_qs[kk] - 0.5 * sq
        mx = beta.max()
        se = 0.0
        for kk in range(k):
            se += np.exp(beta[kk] - mx)
        value += np.log(se) + mx
        for kk in range(k):
            w = np.exp(beta[kk] - mx) / se
            g_alpha[kk] += w
            idx = d
            for r in range(d):
                g_icf[kk, r] += w * (1.0 - Lx[kk, r] * Qd[kk, r] * xc[kk, r])
                for c in range(r):
                    g_icf[kk, idx] -= w * Lx[kk, r] * xc[kk, c]
                    idx += 1
            for c in range(d):
                s = Qd[kk, c] * Lx[kk, c]
                for r in range(c + 1, d):
                    s += L[kk, r, c] * Lx[kk, r]
                g_means[kk, c] += w * s
    ma = alphas.max()
    ea = np.exp(alphas - ma)
    sa = ea.sum()
    value -= n * (np.log(sa) + ma)
    g_alpha -= n * ea / sa
    for kk in range(k):
        for j in range(d):
            value += 0.5 * GAMMA * GAMMA * Qd[kk, j] ** 2 - WISHART_M * icf[kk, j]
            g_icf[kk, j] += GAMMA * GAMMA * Qd[kk, j] ** 2 - WISHART_M
        for j in range(d, icf.shape[1]):
            value += 0.5 * GAMMA * GAMMA * icf[kk, j] ** 2
            g_icf[kk, j] += GAMMA * GAMMA * icf[kk, j]
    return value, (g_alpha, g_means, g_icf)


def torch_fn(torch):
    def f(alphas, means, icf, x, E, const):
        k, d = means.shape
        logdiag = icf[:, :d]
        Qd = torch.exp(logdiag)
        sum_qs = logdiag.sum(1)
        lower = icf[:, d:]
        L = (lower @ E).reshape(k, d, d)
        xc = x[None, :, :] - means[:, None, :]
        Lx = Qd[:, None, :] * xc + torch.matmul(xc, L.transpose(1, 2))
        inner = (alphas + sum_qs)[:, None] - 0.5 * (Lx * Lx).sum(2)
        slse = torch.logsumexp(inner, 0).sum()
        frob = (Qd * Qd).sum(1) + (lower * lower).sum(1)
        prior = (0.5 * GAMMA * GAMMA * frob - WISHART_M * sum_qs).sum()
        return const + slse - x.shape[0] * torch.logsumexp(alphas, 0) + prior
    return f


def make(d, k):
    rng = np.random.default_rng(0)
    alphas = rng.normal(size=k)
    means = rng.uniform(size=(k, d))
    icf = rng.normal(size=(k, d + d * (d - 1) // 2)) * 0.3
    x = rng.normal(size=(N, d))
    return Problem(f"d={d}, k={k}, n={N}", (alphas, means, icf),
                   (x, expand_matrix(d), constant(N, d, k)), fn, numba_vg, torch_fn)
