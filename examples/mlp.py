"""Train a small MLP classifier with plain gradient descent.

    python examples/mlp.py

The loss is ordinary NumPy code; value_and_grad compiles its gradient once and every
later step replays the cached kernel.
"""
import time

import numpy as np

from jvpvjp import value_and_grad
from jvpvjp.nn.functional import cross_entropy


def loss(params, X, labels):
    W1, b1, W2, b2 = params["W1"], params["b1"], params["W2"], params["b2"]
    h = np.tanh(X @ W1 + b1)
    return cross_entropy(h @ W2 + b2, labels)


def make_data(rng, n=512, d=2, k=3):
    """Three noisy spirals."""
    labels = np.repeat(np.arange(k), n // k)
    r = np.tile(np.linspace(0.1, 1.0, n // k), k)
    theta = labels * 2 * np.pi / k + 3.0 * r + rng.normal(scale=0.15, size=r.size)
    return np.stack([r * np.cos(theta), r * np.sin(theta)], axis=1), labels


def main(steps=300, lr=1.0):
    rng = np.random.default_rng(0)
    X, labels = make_data(rng)
    params = {"W1": rng.normal(size=(2, 32)), "b1": np.zeros(32),
              "W2": rng.normal(size=(32, 3)) * 0.1, "b2": np.zeros(3)}
    step = value_and_grad(loss)
    t0 = time.perf_counter()
    for i in range(steps + 1):
        value, grads = step(params, X, labels)
        params = {k: params[k] - lr * grads[k] for k in params}
        if i % 50 == 0:
            print(f"step {i:4d}  loss {value:.4f}")
    h = np.tanh(X @ params["W1"] + params["b1"])
    accuracy = np.mean(np.argmax(h @ params["W2"] + params["b2"], axis=1) == labels)
    print(f"accuracy {accuracy:.3f}; {steps + 1} steps in {time.perf_counter() - t0:.2f} s "
          f"(first step includes tracing and compiling)")
    return value, accuracy


if __name__ == "__main__":
    main()
