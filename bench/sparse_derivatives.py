"""Sparse Jacobians and Hessians against the dense ones.

    python bench/sparse_derivatives.py [--n 10000] [--quick]

* banded: f: R^n -> R^n, y_i = 2 x_i^2 - x_{i-1} + sin(x_{i+1}) (bandwidth 3), by
  `sparse_jacobian` and by `jacfwd`;
* chain: the Hessian of sum_i (x_{i+1} - x_i^2)^2 + cos(x_i), n pairwise terms, by
  `sparse_hessian` and by `hessian`.

"sweeps" is the number of colours (one JVP or VJP sweep each); "first" is the first call
in this process (trace, pattern, colouring, compile); "call" the median of later calls.
"""
from __future__ import annotations

import argparse
import os
import sys
import time

import numpy as np

sys.path.insert(0, os.path.dirname(__file__))
sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", "src"))
from modes import median_time  # noqa: E402

from jvpvjp import hessian, jacfwd, sparse_hessian, sparse_jacobian  # noqa: E402


def banded(x):
    return 2.0 * x ** 2 - np.concatenate([[0.0], x[:-1]]) + np.concatenate([np.sin(x[1:]),
                                                                          [0.0]])


def chain(x):
    return np.sum((x[1:] - x[:-1] ** 2) ** 2) + np.sum(np.cos(x))


def _first(fn, x):
    t = time.perf_counter()
    out = fn(x)
    return out, time.perf_counter() - t


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--n", type=int, default=10_000)
    ap.add_argument("--quick", action="store_true", help="n = 2000")
    a = ap.parse_args(argv)
    n = 2000 if a.quick else a.n
    x = np.linspace(-1.0, 1.0, n)
    print(f"n = {n:,}")
    print(f"{'':28s} {'sweeps':>7s} {'first':>9s} {'call':>10s} {'vs dense':>9s} {'max err':>9s}")
    for name, sparse_fn, dense_fn, fun in (
            ("banded Jacobian", sparse_jacobian, jacfwd, banded),
            ("chain Hessian", sparse_hessian, hessian, chain)):
        s = sparse_fn(fun, compile="eager")
        S, t_first = _first(s, x)
        sweeps, how = s.sweeps(x)
        t_call = median_time(lambda: s(x), repeat=7)
        dense = dense_fn(fun, compile="eager")
        D, d_first = _first(dense, x)
        d_call = median_time(lambda: dense(x), repeat=3)
        err = float(np.abs(S.toarray() - D).max())
        del D
        print(f"{name + ', sparse (' + how + ')':28s} {sweeps:7d} {t_first:8.3f}s "
              f"{t_call * 1e3:8.3f}ms {t_call / d_call:9.5f} {err:9.1e}")
        print(f"{name + ', dense':28s} {n:7d} {d_first:8.3f}s {d_call * 1e3:8.1f}ms")


if __name__ == "__main__":
    main()
