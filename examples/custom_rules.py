"""Custom derivative rules: where the derivative you want is not the derivative of the code.

    python examples/custom_rules.py

* `log1pexp`: log(1 + e^x) has the derivative sigmoid(x); the derivative of the code,
  e^x / (1 + e^x), is inf / inf = nan for large x. A JVP rule gives the stable form.
* `safe_norm`: |x| has no derivative at 0 and the code's is 0 / 0; the rule picks 0.
* `clip_gradient`: the identity on the way forward, a clipped cotangent on the way back.
* `equilibrium`: z = tanh(W z + x) solved by iterating to convergence (any number of
  steps). Its gradient comes from the implicit function theorem, one linear solve, not
  from differentiating the iterations: compare `through_the_loop`, which unrolls a fixed
  number of steps into the trace.
"""
import functools
import time

import numpy as np

from jvpvjp import custom_jvp, custom_vjp, grad


@custom_jvp
def log1pexp(x):
    return np.log1p(np.exp(x))


@log1pexp.defjvp
def log1pexp_jvp(primals, tangents):
    (x,), (t,) = primals, tangents
    return log1pexp(x), t / (1.0 + np.exp(-x))


@custom_jvp
def safe_norm(x):
    return np.sqrt(np.sum(x ** 2))


@safe_norm.defjvp
def safe_norm_jvp(primals, tangents):
    (x,), (t,) = primals, tangents
    n = safe_norm(x)
    scale = np.where(n > 0.0, 1.0 / np.where(n > 0.0, n, 1.0), 0.0)
    return n, np.sum(x * t) * scale


@functools.partial(custom_vjp, nondiff_argnums=(1,))
def clip_gradient(x, bound):
    return x


clip_gradient.defvjp(lambda x, bound: (x, None),
                     lambda bound, res, ct: (np.clip(ct, -bound, bound),))


def _iterate(W, x, tol=1e-13, max_steps=500):
    z = np.zeros_like(x)
    for _ in range(max_steps):
        z_new = np.tanh(W @ z + x)
        if np.max(np.abs(z_new - z)) < tol:     # a data-dependent number of steps
            return z_new
        z = z_new
    raise RuntimeError("the fixed-point iteration did not converge")


@custom_vjp
def equilibrium(W, x):
    """The fixed point z = tanh(W z + x)."""
    return _iterate(W, x)


def _equilibrium_fwd(W, x):
    z = _iterate(W, x)
    return z, (W, z)


def _equilibrium_bwd(res, ct):
    # F(z, W, x) = z - tanh(W z + x) = 0. With D = diag(1 - z^2), dz = (I - D W)^-1 D
    # (dW z + dx), so the cotangent u = (I - D W)^-T ct is one linear solve, and then
    # x's cotangent is D u and W's is (D u) z^T.
    W, z = res
    d = 1.0 - z ** 2
    u = np.linalg.solve(np.eye(len(z)) - (d[:, None] * W).T, ct)
    du = d * u
    return np.outer(du, z), du


equilibrium.defvjp(_equilibrium_fwd, _equilibrium_bwd)


def implicit_loss(W, x):
    return np.sum(equilibrium(W, x) ** 2)


def through_the_loop(W, x, steps=60):
    z = np.zeros_like(x)
    for _ in range(steps):
        z = np.tanh(W @ z + x)
    return np.sum(z ** 2)


def problem(n=20, seed=0):
    rng = np.random.default_rng(seed)
    W = 0.4 * rng.normal(size=(n, n)) / np.sqrt(n)      # a contraction: it converges
    return W, rng.normal(size=n)


def main():
    x = np.array([-800.0, 0.0, 800.0])
    print("log1pexp'(x) at", x, "=", grad(lambda x: np.sum(log1pexp(x)))(x))
    print("safe_norm' at 0 =", grad(safe_norm)(np.zeros(3)),
          " at (3, 4) =", grad(safe_norm)(np.array([3.0, 4.0])))
    print("clipped gradient of 5 * sum(x):",
          grad(lambda x: np.sum(5.0 * clip_gradient(x, 1.0)))(np.ones(3)))
    W, x = problem()
    for name, fn in (("implicit rule", implicit_loss), ("through 60 steps", through_the_loop)):
        g = grad(fn, argnums=(0, 1))
        g(W, x)
        t = time.perf_counter()
        gW, gx = g(W, x)
        dt = time.perf_counter() - t
        print(f"equilibrium gradient, {name:17s}: |dW| = {np.linalg.norm(gW):.12f}, "
              f"|dx| = {np.linalg.norm(gx):.12f} ({dt * 1e3:.2f} ms per call)")


if __name__ == "__main__":
    main()
