"""A NumPy neural-network mini-framework, the jvpvjp way: layers, a loss, SGD, `fit`.

    python examples/numpy_framework.py

Hand-written frameworks pair every layer's forward with a hand-derived backward. Here a
layer is only its forward (`init` / `apply` over a parameter pytree) and the backward
comes from jvpvjp:

1. `Sequential(Linear(10, 1))` on X ~ N(0, 1) (100 x 10), y = X @ W + b: MSE and SGD (lr
   0.05, batches of 10, 10 epochs) bring the learned weights close to the true ones.
2. `Sequential(Linear, ReLU, Linear, Sigmoid)` on a two-class problem (two rings).
"""
import numpy as np

from jvpvjp import nn, optim


def regression(seed=0, verbose=True):
    rng = np.random.default_rng(seed)
    X = rng.normal(size=(100, 10))
    W, b = rng.normal(size=(10, 1)), rng.normal(size=1)
    y = X @ W + b
    model = nn.Sequential(nn.Linear(10, 1))
    params = model.init(seed, X.shape)

    def loss(params, X, y):
        return nn.mse(model.apply(params, X), y)

    params, history = optim.fit(loss, params, (X, y), epochs=10, batch_size=10,
                                optimizer=optim.SGD(lr=0.05), seed=seed)
    err = np.max(np.abs(params[0]["w"] - W))
    if verbose:
        print(f"regression: loss {history[0]:.4f} -> {history[-1]:.6f}, "
              f"largest weight error {err:.4f}, bias error {abs(params[0]['b'][0] - b[0]):.4f}")
    return params, (W, b), history


def rings(n, rng):
    """Class 0 inside radius 1, class 1 on a ring of radius 2, with noise."""
    label = rng.integers(0, 2, n)
    radius = np.where(label == 1, 2.0, 0.7) + rng.normal(0, 0.25, n)
    angle = rng.uniform(0, 2 * np.pi, n)
    X = np.stack([radius * np.cos(angle), radius * np.sin(angle)], axis=1)
    return X, label.reshape(-1, 1).astype(float)


def classification(seed=0, epochs=40, verbose=True):
    rng = np.random.default_rng(seed)
    X, y = rings(600, rng)
    X_test, y_test = rings(400, rng)
    model = nn.Sequential(nn.Linear(2, 16), nn.ReLU(), nn.Linear(16, 1), nn.Sigmoid())
    params = model.init(seed, X.shape)

    def loss(params, X, y):
        p = model.apply(params, X)
        p = np.clip(p, 1e-7, 1 - 1e-7)
        return -np.mean(y * np.log(p) + (1 - y) * np.log(1 - p))

    params, history = optim.fit(loss, params, (X, y), epochs=epochs, batch_size=20,
                                optimizer=optim.SGD(lr=0.2, momentum=0.9), seed=seed)
    accuracy = float(np.mean((model.apply(params, X_test) > 0.5) == (y_test > 0.5)))
    if verbose:
        print(f"classification: loss {history[0]:.4f} -> {history[-1]:.4f}, "
              f"held-out accuracy {accuracy:.3f}")
    return params, history, accuracy


def main():
    regression()
    classification()


if __name__ == "__main__":
    main()
