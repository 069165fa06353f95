"""Frozen terms: stop_gradient (PyTorch's detach), and the target network it makes.

    python examples/detach.py

z = u * x with u = x * x passed through `stop_gradient`: dz/dx = u (not 3 x^2), while
y = x * x keeps its derivative 2 x. The same idiom gives a Q-learning target: the
bootstrapped target r + gamma max Q(s', .) is a constant for the update, so the gradient
flows only through Q(s, a).
"""
import numpy as np

from jvpvjp import grad, stop_gradient


def z_of(x):
    u = stop_gradient(x * x)
    return np.sum(u * x)


def q_values(theta, s):
    return np.tanh(s @ theta)                # (batch, actions)


def td_loss(theta, s, a, r, s_next, gamma=0.9):
    q = np.sum(q_values(theta, s) * a, axis=1)                 # Q(s, a), a one-hot
    target = r + gamma * np.max(stop_gradient(q_values(theta, s_next)), axis=1)
    return np.mean((q - target) ** 2)


def main(verbose=True):
    x = np.arange(4.0)
    dz = grad(z_of)(x)
    dy = grad(lambda x: np.sum(x * x))(x)
    rng = np.random.default_rng(0)
    theta = rng.normal(size=(3, 2))
    s, s_next = rng.normal(size=(5, 3)), rng.normal(size=(5, 3))
    a = np.eye(2)[rng.integers(0, 2, 5)]
    r = rng.normal(size=5)
    g = grad(td_loss)(theta, s, a, r, s_next)
    if verbose:
        print("x           =", x)
        print("dz/dx = u   =", dz, "(x * x, held constant)")
        print("dy/dx = 2x  =", dy)
        print("TD-loss gradient (target frozen):\n", g)
    return x, dz, dy, g


if __name__ == "__main__":
    main()
