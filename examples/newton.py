"""Newton's method for a root of f(x) = x^3 - 2x - 5, with f' from jvpvjp.

    python examples/newton.py

The iteration count depends on the input; the loop runs in ordinary Python around a
compiled derivative. The second half asks for the sensitivity of the root to the
coefficient c in f(x) = x^3 - 2x - c, two ways:

* `root_of` differentiates *through* a fixed number of Newton steps (the tracer records
  every step, and the derivative is only as converged as the iterations);
* `root` solves to convergence with any number of steps, and its derivative comes from
  the implicit function theorem instead (`custom_jvp`): F(x(c), c) = 0 gives
  dx/dc = -F_c / F_x = 1 / (3 x^2 - 2), one formula, whatever the solver did.
"""
from jvpvjp import custom_jvp, grad, hessian


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


@custom_jvp
def root(c):
    """The root of x^3 - 2x - c by Newton's method, run until it converges."""
    x, _ = newton(2.0 * (c / 5.0) ** (1 / 3), c)
    return x


@root.defjvp
def root_jvp(primals, tangents):
    (c,), (t,) = primals, tangents
    x = root(c)                 # the root computed by the call (not solved again)
    return x, t / (3.0 * x ** 2 - 2.0)


if __name__ == "__main__":
    x, steps = newton(2.0)
    print(f"root {x:.15f} after {steps} steps, f(root) = {f(x):.1e}")
    exact = 1 / (3 * x ** 2 - 2)
    print(f"d root / d c through 6 steps:      {grad(root_of)(5.0):.15f}")
    print(f"d root / d c, implicit rule:       {grad(root)(5.0):.15f}")
    print(f"implicit function theorem:         {exact:.15f}")
    print(f"d2 root / d c2, implicit rule:     {hessian(root)(5.0):.15f} "
          f"(exact {-6 * x * exact ** 3:.15f})")
