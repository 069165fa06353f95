"""Newton's method for a root of f(x) = x^3 - 2x - 5, with f' from jvpvjp.

    python examples/newton.py

The iteration count depends on the input; the loop runs in ordinary Python around a
compiled derivative. The second half differentiates *through* the whole solver: the
sensitivity of the root to the coefficient c in f(x) = x^3 - 2x - c, by tracing the loop
(each comparison is a guard, so the cached derivative is only reused on the same path).
"""
import numpy as np

from jvpvjp import grad


def f(x, c=5.0):
    return x ** 3 - 2.0 * x - c


df = grad(f)


def newton(x, c=5.0, tol=1e-12, max_steps=50):
    for step in range(max_steps):
        fx = f(x, c)
        if abs(fx) < tol:
            return x, step
        x = x - fx / df(x, c)
    raise RuntimeError("Newton's method did not converge")


def root_of(c):
    x = 2.0 * (c / 5.0) ** (1 / 3)
    for _ in range(6):                  # fixed steps: a smooth function of c
        x = x - (x ** 3 - 2.0 * x - c) / (3.0 * x ** 2 - 2.0)
    return x


if __name__ == "__main__":
    x, steps = newton(2.0)
    print(f"root {x:.15f} after {steps} steps, f(root) = {f(x):.1e}")
    d = grad(root_of)(5.0)
    print(f"d root / d c = {d:.12f}; implicit function theorem: {1 / (3 * x ** 2 - 2):.12f}")
