"""Per-example gradients with vmap, and gradient descent with per-example clipping.

    python examples/per_example.py

Clipping each example's gradient before averaging (as differentially private SGD does)
needs one gradient per example, not just their mean. ``vmap(grad(loss_one))`` traces the
gradient of one example's loss and compiles it once for the whole batch.
"""
import time

import numpy as np

from jvpvjp import grad, value_and_grad, vmap


def loss_one(params, x, y):
    """Logistic loss of one example: x of shape (d,), y in {0, 1}."""
    w, b = params
    z = x @ w + b
    return np.logaddexp(0.0, z) - y * z


def mean_loss(params, X, Y):
    return np.mean(vmap(loss_one, in_axes=(None, 0, 0))(params, X, Y))


per_example_grads = vmap(grad(loss_one), in_axes=(None, 0, 0))


def clipped_step(params, X, Y, clip=1.0, lr=0.5):
    gw, gb = per_example_grads(params, X, Y)               # (n, d) and (n,)
    norms = np.sqrt(np.sum(gw ** 2, axis=1) + gb ** 2)
    scale = np.minimum(1.0, clip / np.maximum(norms, 1e-12))
    w, b = params
    return (w - lr * np.mean(gw * scale[:, None], axis=0), b - lr * np.mean(gb * scale))


def make_data(rng, n=256, d=5):
    w_true = rng.normal(size=d)
    X = rng.normal(size=(n, d))
    Y = (X @ w_true + 0.3 * rng.normal(size=n) > 0).astype(float)
    return X, Y


def main(steps=200):
    rng = np.random.default_rng(0)
    X, Y = make_data(rng)
    params = (np.zeros(X.shape[1]), 0.0)
    value = value_and_grad(mean_loss)
    start = value(params, X, Y)[0]
    params = clipped_step(params, X, Y)     # the first step traces and compiles
    t0 = time.perf_counter()
    for _ in range(steps - 1):
        params = clipped_step(params, X, Y)
    seconds = time.perf_counter() - t0
    end = value(params, X, Y)[0]
    accuracy = np.mean(((X @ params[0] + params[1]) > 0) == (Y > 0.5))
    print(f"mean loss {start:.4f} -> {end:.4f} after {steps} clipped steps "
          f"({seconds / (steps - 1) * 1e6:.0f} us per step), accuracy {accuracy:.3f}")
    return start, end, accuracy


if __name__ == "__main__":
    main()
