"""A scalar chain: y <- sin(y) * 1.0001 + 0.1, three scalar ops a step, unrolled by tracing.

jvpvjp, PyTorch and autograd run the Python loop; JAX gets the idiomatic rolled
``lax.fori_loop`` (an unrolled 1e6-op JAX program does not compile in reasonable time)."""
import numpy as np
from numba import njit

from . import Problem

NAME = "scalar_chain"
SIZES = {"small": {"ops": 10_000}, "medium": {"ops": 100_000}, "large": {"ops": 1_000_000}}
QUICK = ("small",)


def fn_for(steps):
    def fn(xp, stop_gradient):
        def f(y):
            for _ in range(steps):
                y = xp.sin(y) * 1.0001 + 0.1
            return y
        return f
    return fn


def jax_fn_for(steps):
    def make(jax):
        def f(y):
            return jax.lax.fori_loop(0, steps, lambda i, y: jax.numpy.sin(y) * 1.0001 + 0.1, y)
        return f
    return make


@njit(cache=True)
def _chain_vg(y, steps):
    ys = np.empty(steps)
    for i in range(steps):
        ys[i] = y
        y = np.sin(y) * 1.0001 + 0.1
    g = 1.0
    for i in range(steps - 1, -1, -1):
        g *= np.cos(ys[i]) * 1.0001
    return y, g


def torch_fn_for(steps):
    def make(torch):
        def f(y):
            for _ in range(steps):
                y = torch.sin(y) * 1.0001 + 0.1
            return y
        return f
    return make


def make(ops):
    steps = ops // 3

    def numba_vg(y):
        v, g = _chain_vg(float(y), steps)
        return v, (np.float64(g),)

    return Problem(f"{ops:.0e} ops", (np.float64(0.5),), (), fn_for(steps), numba_vg,
                   torch_fn_for(steps), jax_fn_for(steps))
