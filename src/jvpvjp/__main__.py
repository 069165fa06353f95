"""Demo: ``python -m jvpvjp``.

Prints the gradient of a small classifier's loss (checked against finite differences), the
op list of a small function, and the cost of a full gradient in reverse mode (one sweep)
against forward mode (one sweep per input, as separate jvp calls and batched by jacfwd).
"""
import time

import numpy as np

from . import config, grad, jacfwd, jvp, make_oplist, value_and_grad, wait_for_compiles
from .nn.functional import cross_entropy


def loss(params, X, labels):
    W1, b1, W2, b2 = params
    h = np.tanh(X @ W1 + b1)
    return cross_entropy(h @ W2 + b2, labels)


def _median(fn, repeat=7):
    times = []
    for _ in range(repeat):
        t = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t)
    return float(np.median(times))


def main(file=None):
    """Run the demo, printing to ``file`` (default: sys.stdout when called)."""
    import builtins
    import functools
    import sys
    print = functools.partial(builtins.print, file=file or sys.stdout)   # noqa: A001
    rng = np.random.default_rng(0)
    params = (rng.normal(size=(20, 32)) * 0.3, np.zeros(32),
              rng.normal(size=(32, 10)) * 0.3, np.zeros(10))
    X, labels = rng.normal(size=(64, 20)), rng.integers(0, 10, 64)
    print(f"jvpvjp demo (backend: {config.backend}, kernel cache: {config.cache_dir})\n")

    t = time.perf_counter()
    value, g = value_and_grad(loss)(params, X, labels)
    first = time.perf_counter() - t
    print(f"MLP 20-32-10, batch 64: loss = {value:.6f}")
    print(f"  first call (trace, then run on an interpreter; compiled later if hot): "
          f"{first:.3f} s")
    print(f"  dW2[0, :4] = {np.array2string(g[2][0, :4], precision=6)}")

    # central finite differences on a few entries of W2
    eps, worst = 1e-6, 0.0
    for (i, j) in [(0, 0), (3, 7), (31, 9)]:
        plus = [p.copy() for p in params]
        minus = [p.copy() for p in params]
        plus[2][i, j] += eps
        minus[2][i, j] -= eps
        fd = (loss(plus, X, labels) - loss(minus, X, labels)) / (2 * eps)
        worst = max(worst, abs(fd - g[2][i, j]))
    print(f"  max |gradient - finite difference| over 3 entries: {worst:.2e}\n")

    print("op list of f(x) = sum(sin(x) * x):")
    print(make_oplist(lambda x: np.sum(np.sin(x) * x))(np.ones(3)))
    print()

    n = 200
    A = rng.normal(size=(n, n)) / np.sqrt(n)

    def f(x):
        return np.sum(np.tanh(A @ x) ** 2)

    x = rng.normal(size=n)
    df = grad(f)
    df(x)
    eye = np.eye(n)
    jvp(f, (x,), (eye[0],))

    def forward_gradient():
        return np.array([jvp(f, (x,), (eye[i],))[1] for i in range(n)])

    forward_batched = jacfwd(f)         # the same sweeps, batched into blocks
    t = time.perf_counter()
    assert np.allclose(forward_gradient(), df(x), rtol=1e-10, atol=1e-12)
    assert np.allclose(forward_batched(x), df(x), rtol=1e-10, atol=1e-12)
    print(f"first calls of grad, {n} jvp and jacfwd: {time.perf_counter() - t:.3f} s")
    # steady state: the same transforms compiled before their first call returns
    t = time.perf_counter()
    df, forward_batched = grad(f, compile="eager"), jacfwd(f, compile="eager")
    df(x), forward_batched(x), jvp(f, (x,), (eye[0],), compile="eager")
    wait_for_compiles()
    print(f"compiling them for the timings below: {time.perf_counter() - t:.2f} s\n")

    def forward_gradient():
        return np.array([jvp(f, (x,), (eye[i],), compile="eager")[1] for i in range(n)])

    t_rev = _median(lambda: df(x))
    t_fwd = _median(forward_gradient, repeat=3)
    t_batched = _median(lambda: forward_batched(x))
    print(f"gradient of f: R^{n} -> R, f(x) = sum(tanh(A x)^2):")
    print(f"  reverse mode (1 sweep):                {t_rev * 1e6:9.1f} us")
    print(f"  forward mode ({n} jvp calls):          {t_fwd * 1e6:9.1f} us  "
          f"({t_fwd / t_rev:.0f}x slower)")
    print(f"  forward mode (jacfwd, sweeps batched): {t_batched * 1e6:9.1f} us  "
          f"({t_batched / t_rev:.0f}x slower)")


if __name__ == "__main__":
    main()
