"""A small convolutional network (MatrixSlow's LeNet-style graph) trained on jvpvjp.

    python examples/convnet.py [--epochs 12]

Conv2d -> ReLU -> MaxPool -> Conv2d -> ReLU -> MaxPool -> Linear on the 8x8 digits that
ship with scikit-learn when it is installed, else on generated 8x8 images of five shapes
(no downloads). Adam on minibatches of 64; prints the held-out accuracy (above 95 % on the
digits, 90 % on the shapes) and the time per epoch, and the same model's epoch time in
PyTorch eager when PyTorch is installed.
"""
import argparse
import time

import numpy as np

from jvpvjp import nn, optim


def digits():
    try:
        from sklearn.datasets import load_digits
    except ImportError:
        return None
    d = load_digits()
    return d.images.reshape(-1, 1, 8, 8) / 16.0, d.target, "scikit-learn digits"


def shapes(n=2000, seed=0):
    """Noisy 8x8 images of a horizontal bar, a vertical bar, a square, a cross and a
    diagonal, at random positions."""
    rng = np.random.default_rng(seed)
    X = np.zeros((n, 1, 8, 8))
    y = rng.integers(0, 5, n)
    for k in range(n):
        i, j = rng.integers(1, 4, 2)
        img = X[k, 0]
        if y[k] == 0:
            img[i + 1, j:j + 4] = 1
        elif y[k] == 1:
            img[i:i + 4, j + 1] = 1
        elif y[k] == 2:
            img[i:i + 3, j:j + 3] = 1
            img[i + 1, j + 1] = 0
        elif y[k] == 3:
            img[i + 1, j:j + 3] = 1
            img[i:i + 3, j + 1] = 1
        else:
            img[np.arange(4) + i, np.arange(4) + j] = 1
    X += rng.normal(0, 0.15, X.shape)
    return X, y, "generated shapes"


def model():
    return nn.Sequential(
        nn.Conv2d(1, 8, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2),     # 8 x 4 x 4
        nn.Conv2d(8, 16, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2),    # 16 x 2 x 2
        nn.Flatten(), nn.Linear(64, 10))


def split(X, y, seed=0, test=0.25):
    order = np.random.default_rng(seed).permutation(len(y))
    cut = int(len(y) * (1 - test))
    return X[order[:cut]], y[order[:cut]], X[order[cut:]], y[order[cut:]]


def torch_epoch_time(X, y, epochs=2, batch_size=64):
    try:
        import torch
    except ImportError:
        return None
    torch.set_num_threads(1)
    net = torch.nn.Sequential(
        torch.nn.Conv2d(1, 8, 3, padding=1), torch.nn.ReLU(), torch.nn.MaxPool2d(2),
        torch.nn.Conv2d(8, 16, 3, padding=1), torch.nn.ReLU(), torch.nn.MaxPool2d(2),
        torch.nn.Flatten(), torch.nn.Linear(64, 10)).double()
    opt = torch.optim.Adam(net.parameters(), lr=1e-2)
    Xt, yt = torch.tensor(X), torch.tensor(y)
    times = []
    for _ in range(epochs):
        t = time.perf_counter()
        for start in range(0, len(y), batch_size):
            opt.zero_grad()
            loss = torch.nn.functional.cross_entropy(net(Xt[start:start + batch_size]),
                                                     yt[start:start + batch_size])
            loss.backward()
            opt.step()
        times.append(time.perf_counter() - t)
    return min(times)


def main(epochs=12, seed=0, verbose=True, data=None):
    X, y, name = data or digits() or shapes(seed=seed)
    X_train, y_train, X_test, y_test = split(X, y, seed)
    net = model()
    params = net.init(seed, (-1,) + X.shape[1:])

    def loss(params, X, y):
        return nn.cross_entropy(net.apply(params, X), y)

    stamps = [time.perf_counter()]
    params, history = optim.fit(loss, params, (X_train, y_train), epochs=epochs,
                                batch_size=64, optimizer=optim.Adam(lr=1e-2), seed=seed,
                                callback=lambda *_: stamps.append(time.perf_counter()))
    times = np.diff(stamps)
    predict = net.apply(params, X_test)
    accuracy = float(np.mean(np.argmax(predict, axis=1) == y_test))
    if verbose:
        print(f"{name}: {len(y_train)} training and {len(y_test)} held-out images")
        print(f"held-out accuracy after {epochs} epochs: {accuracy:.3f}")
        print(f"seconds per epoch: first {times[0]:.2f} (tracing, compiling), "
              f"then {np.median(times[1:]) if epochs > 1 else times[0]:.3f}")
        t_torch = torch_epoch_time(X_train, y_train)
        if t_torch is not None:
            print(f"PyTorch eager, the same model: {t_torch:.3f} s per epoch")
    return accuracy, times


if __name__ == "__main__":
    ap = argparse.ArgumentParser()
    ap.add_argument("--epochs", type=int, default=12)
    main(ap.parse_args().epochs)
