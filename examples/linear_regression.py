"""Linear regression from scratch (d2l's chapter 3.2), trained on jvpvjp.

    python examples/linear_regression.py

Data: y = X @ [2, -3.4] + 4.2 + N(0, 0.01^2), 1000 samples. Model: X @ w + b from
w ~ N(0, 0.01^2), b = 0. Minibatch SGD, lr 0.03, batches of 10, 3 epochs: the recovered
w and b are within 0.01 of the true ones.
"""
import numpy as np

from jvpvjp import optim

TRUE_W, TRUE_B = np.array([2.0, -3.4]), 4.2


def synthetic_data(w, b, n, rng):
    X = rng.normal(0.0, 1.0, (n, len(w)))
    y = X @ w + b + rng.normal(0.0, 0.01, n)
    return X, y.reshape(-1, 1)


def linreg(params, X):
    return X @ params["w"] + params["b"]


def squared_loss(params, X, y):
    """Half the squared error, averaged over the batch (d2l sums and divides the step by
    the batch size: the same update)."""
    return np.mean((linreg(params, X) - y) ** 2 / 2)


def main(epochs=3, seed=0, verbose=True):
    rng = np.random.default_rng(seed)
    X, y = synthetic_data(TRUE_W, TRUE_B, 1000, rng)
    params = {"w": rng.normal(0.0, 0.01, (2, 1)), "b": np.zeros(1)}
    params, history = optim.fit(squared_loss, params, (X, y), epochs=epochs, batch_size=10,
                                optimizer=optim.SGD(lr=0.03), seed=seed)
    if verbose:
        for epoch, loss in enumerate(history, 1):
            print(f"epoch {epoch}, mean loss over its batches {loss:f}")
        print(f"loss on all the data after training: {float(squared_loss(params, X, y)):f}")
        print(f"error in estimating w: {TRUE_W - params['w'].reshape(-1)}")
        print(f"error in estimating b: {TRUE_B - params['b'][0]}")
    return params, history


if __name__ == "__main__":
    main()
