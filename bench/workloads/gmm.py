"""Gaussian mixture model objective of ADBench (Srajer, Schkufza, Fitzgibbon 2018).

Parameters: log-weights ``alphas`` (k), ``means`` (k, d) and ``icf`` (k, d(d+1)/2), the
inverse covariance factors: for component c, ``icf[c, :d]`` is the log of the diagonal of
the lower-triangular Q_c, ``icf[c, d:]`` its strictly lower entries in column-major order
(column 0 rows 1..d-1, column 1 rows 2..d-1, ...). With data x (n, d):

    E = -n d/2 log(2 pi)
        + sum_i logsumexp_c(alpha_c + sum(icf[c, :d]) - 1/2 |Q_c (x_i - mu_c)|^2)
        - n logsumexp(alpha)
        + sum_c [gamma^2/2 (|diag Q_c|^2 + |icf[c, d:]|^2) - m sum(icf[c, :d])] - k C(d)

    C(d) = n_w d (log gamma - log(2)/2) - log Gamma_d(n_w / 2),   n_w = d + m + 1,

with the multivariate log-gamma log Gamma_d(a) = d(d-1)/4 log(pi) + sum_j lgamma(a + (1-j)/2).
The Wishart prior uses gamma = 1, m = 0 as ADBench's data sets do. The gradient is taken with
respect to alphas, means and icf.

Q_c is built from a constant index table (``icf[:, IDX]``) times a constant 0/1 mask plus
``exp`` of the diagonal times the identity: only indexing, broadcasting and elementwise ops.
"""
from __future__ import annotations

import math

import numpy as np
from numba import njit

import jvpvjp

from ..common import Case

NAME = "gmm"
TITLE = "GMM objective (ADBench), n = 1000"
WISHART_GAMMA = 1.0
WISHART_M = 0


def sizes(mode):
    if mode == "quick":
        return [dict(d=2, k=5, cls="small"), dict(d=10, k=25, cls="medium")]
    return [dict(d=d, k=k, cls={2: "small", 10: "medium", 32: "large"}[d])
            for d in (2, 10, 32) for k in (5, 25, 100)]


def tri_tables(d):
    """idx[j, i] = column of icf holding Q[j, i] (j > i), mask = 1 there, 0 elsewhere."""
    idx = np.zeros((d, d), np.int64)
    mask = np.zeros((d, d))
    p = d
    for i in range(d):
        for j in range(i + 1, d):
            idx[j, i] = p
            mask[j, i] = 1.0
            p += 1
    return idx, mask


def log_gamma_distrib(a, p):
    return 0.25 * p * (p - 1) * math.log(math.pi) + \
        sum(math.lgamma(a + 0.5 * (1 - j)) for j in range(1, p + 1))


def constants(n, d, k, gamma, m):
    n_w = d + m + 1
    c = n_w * d * (math.log(gamma) - 0.5 * math.log(2)) - log_gamma_distrib(0.5 * n_w, d)
    return -n * d * 0.5 * math.log(2 * math.pi) - k * c


def generic(xp, stop, n, d, k, gamma=WISHART_GAMMA, m=WISHART_M):
    """The objective written with NumPy-style calls on the module ``xp``."""
    idx, mask = tri_tables(d)
    eye = np.eye(d)
    const = constants(n, d, k, gamma, m)

    def lse(a, axis):
        mx = stop(xp.max(a, axis=axis, keepdims=True))
        return xp.log(xp.sum(xp.exp(a - mx), axis=axis)) + xp.squeeze(mx, axis=axis)

    def gmm(alphas, means, icf, x):
        logdiag = icf[:, :d]
        qdiag = xp.exp(logdiag)                                  # (k, d)
        sum_qs = xp.sum(logdiag, axis=1)                         # (k,)
        Q = qdiag[:, :, None] * eye + icf[:, idx] * mask         # (k, d, d)
        xc = x.T[None, :, :] - means[:, :, None]                 # (k, d, n)
        Qx = Q @ xc                                              # (k, d, n)
        main = (alphas + sum_qs)[:, None] - 0.5 * xp.sum(Qx * Qx, axis=1)   # (k, n)
        slse = xp.sum(lse(main, 0))
        frob = xp.sum(qdiag * qdiag, axis=1) + xp.sum(icf[:, d:] ** 2, axis=1)
        prior = xp.sum(0.5 * gamma * gamma * frob - m * sum_qs)
        return const + slse - n * lse(alphas, 0) + prior
    return gmm


def _build_q(icf, d, k):
    Q = np.zeros((k, d, d))
    for c in range(k):
        for j in range(d):
            Q[c, j, j] = math.exp(icf[c, j])
        p = d
        for i in range(d):
            for j in range(i + 1, d):
                Q[c, j, i] = icf[c, p]
                p += 1
    return Q


_build_q_nb = njit(cache=True)(_build_q)


@njit(cache=True)
def _main_terms(alphas, means, icf, x, Q, keep):
    """main[c, i] and, when ``keep``, Ys[c] = (x - mu_c) Q_c^T."""
    n, d = x.shape
    k = alphas.size
    main = np.empty((k, n))
    Ys = np.empty((k if keep else 1, n, d))
    for c in range(k):
        s = alphas[c]
        for j in range(d):
            s += icf[c, j]
        Z = x - means[c]
        Y = np.dot(Z, Q[c].T)
        for i in range(n):
            sq = 0.0
            for j in range(d):
                sq += Y[i, j] * Y[i, j]
            main[c, i] = s - 0.5 * sq
        if keep:
            Ys[c] = Y
    return main, Ys


@njit(cache=True)
def _lse_cols(main):
    k, n = main.shape
    out = np.empty(n)
    for i in range(n):
        m = main[0, i]
        for c in range(1, k):
            m = max(m, main[c, i])
        s = 0.0
        for c in range(k):
            s += math.exp(main[c, i] - m)
        out[i] = math.log(s) + m
    return out


@njit(cache=True)
def _lse(a):
    m = a.max()
    return math.log(np.exp(a - m).sum()) + m


@njit(cache=True)
def _prior(icf, d, gamma, m):
    k = icf.shape[0]
    out = 0.0
    for c in range(k):
        for j in range(d):
            q = math.exp(icf[c, j])
            out += 0.5 * gamma * gamma * q * q - m * icf[c, j]
        for p in range(d, icf.shape[1]):
            out += 0.5 * gamma * gamma * icf[c, p] * icf[c, p]
    return out


def make_njit(n, d, k, gamma=WISHART_GAMMA, m=WISHART_M):
    const = constants(n, d, k, gamma, m)
    return _njit_primal, _njit_vg, (const, float(gamma), float(m))


@njit(cache=True)
def _njit_primal(alphas, means, icf, x, const, gamma, m_w):
    k, d = means.shape
    n = x.shape[0]
    Q = _build_q_nb(icf, d, k)
    main, _ = _main_terms(alphas, means, icf, x, Q, False)
    return const + _lse_cols(main).sum() - n * _lse(alphas) + _prior(icf, d, gamma, m_w)


@njit(cache=True)
def _njit_vg(alphas, means, icf, x, const, gamma, m_w):
    k, d = means.shape
    n = x.shape[0]
    Q = _build_q_nb(icf, d, k)
    main, Ys = _main_terms(alphas, means, icf, x, Q, True)
    lse = _lse_cols(main)
    la = _lse(alphas)
    value = const + lse.sum() - n * la + _prior(icf, d, gamma, m_w)
    g_alpha = np.empty(k)
    g_means = np.empty((k, d))
    g_icf = np.empty_like(icf)
    WY = np.empty((n, d))
    for c in range(k):
        wsum = 0.0
        Y = Ys[c]
        for i in range(n):
            w = math.exp(main[c, i] - lse[i])     # posterior weight of component c
            wsum += w
            for j in range(d):
                WY[i, j] = w * Y[i, j]
        g_alpha[c] = wsum - n * math.exp(alphas[c] - la)
        # d/dmu_c = Q_c^T sum_i w_i y_i ; d/dQ_c = -sum_i w_i y_i (x_i - mu_c)^T
        g_means[c] = np.dot(WY.sum(axis=0), Q[c])
        Z = x - means[c]
        gQ = -np.dot(WY.T, Z)
        for j in range(d):
            q = Q[c, j, j]
            g_icf[c, j] = gQ[j, j] * q + wsum + gamma * gamma * q * q - m_w
        p = d
        for i in range(d):
            for j in range(i + 1, d):
                g_icf[c, p] = gQ[j, i] + gamma * gamma * icf[c, p]
                p += 1
    return value, g_alpha, g_means, g_icf


def _torch(torch, n, d, k, gamma=WISHART_GAMMA, m=WISHART_M):
    idx_np, mask_np = tri_tables(d)
    idx, mask = torch.from_numpy(idx_np), torch.from_numpy(mask_np)
    eye = torch.eye(d, dtype=torch.float64)
    const = constants(n, d, k, gamma, m)

    def gmm(alphas, means, icf, x):
        logdiag = icf[:, :d]
        qdiag = torch.exp(logdiag)
        sum_qs = torch.sum(logdiag, 1)
        Q = qdiag[:, :, None] * eye + icf[:, idx] * mask
        Qx = Q @ (x.T[None, :, :] - means[:, :, None])
        main = (alphas + sum_qs)[:, None] - 0.5 * torch.sum(Qx * Qx, 1)
        slse = torch.sum(torch.logsumexp(main, 0))
        frob = torch.sum(qdiag * qdiag, 1) + torch.sum(icf[:, d:] ** 2, 1)
        prior = torch.sum(0.5 * gamma * gamma * frob - m * sum_qs)
        return const + slse - n * torch.logsumexp(alphas, 0) + prior
    return gmm


def data(n, d, k, seed=0):
    """Random parameters and data in the ranges of ADBench's generated GMM inputs."""
    rng = np.random.default_rng(seed)
    alphas = rng.normal(size=k)
    means = rng.uniform(size=(k, d))
    icf = rng.normal(size=(k, d * (d + 1) // 2)) * 0.5
    x = rng.uniform(size=(n, d))
    return alphas, means, icf, x


def make(d, k, cls, n=1000):
    args = data(n, d, k)
    primal, vg, extra = make_njit(n, d, k)
    return Case(NAME, f"d={d} k={k}", d * d * k, cls,
                generic(np, jvpvjp.stop_gradient, n, d, k), args, (0, 1, 2),
                lambda *a: primal(*a, *extra), lambda *a: vg(*a, *extra),
                peers={"jax": lambda jax: generic(jax.numpy, jax.lax.stop_gradient, n, d, k),
                       "torch": lambda torch: _torch(torch, n, d, k),
                       "autograd": lambda ag: generic(ag.numpy, lambda v: v, n, d, k)},
                rtol=1e-8, atol=1e-8, info=dict(d=d, k=k, n=n))


def self_check(tol=1e-6):
    """On a tiny problem with a nonzero Wishart m: the njit gradient against jvpvjp's and
    against central differences of the NumPy objective. Returns the largest relative
    errors (jvpvjp, finite differences) and raises AssertionError when one is too big."""
    n, d, k, gamma, m = 7, 3, 2, 1.3, 2
    args = data(n, d, k, seed=3)
    f = generic(np, jvpvjp.stop_gradient, n, d, k, gamma, m)
    const = constants(n, d, k, gamma, m)
    v_nb, *g_nb = _njit_vg(*args, const, gamma, float(m))
    assert abs(_njit_primal(*args, const, gamma, float(m)) - v_nb) <= 1e-10 * abs(v_nb)
    old = jvpvjp.config.backend
    jvpvjp.config.backend = "numpy"        # the op-list interpreter: nothing to compile
    try:
        v_j, g_j = jvpvjp.value_and_grad(f, argnums=(0, 1, 2))(*args)
    finally:
        jvpvjp.config.backend = old
    err_j = max(np.max(np.abs(a - b)) / max(1.0, np.max(np.abs(b))) for a, b in zip(g_nb, g_j))
    err_j = max(err_j, abs(v_j - v_nb) / abs(v_nb))
    err_fd, h = 0.0, 1e-6
    for p in range(3):
        for i in np.ndindex(args[p].shape):
            up = [a.copy() for a in args]
            dn = [a.copy() for a in args]
            up[p][i] += h
            dn[p][i] -= h
            fd = (f(*up) - f(*dn)) / (2 * h)
            err_fd = max(err_fd, abs(fd - g_nb[p][i]) / max(1.0, abs(fd)))
    assert err_j < 1e-10 and err_fd < tol, (err_j, err_fd)
    return err_j, err_fd
