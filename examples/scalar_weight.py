"""PyTorch's first backprop lesson, y = x * w, on jvpvjp.

    python examples/scalar_weight.py

Data x = [1, 2, 3], y = [2, 4, 6]; the model x * w starts at w = 1. Per-sample SGD with
lr 0.01 for 100 epochs, printing each sample's gradient d loss / d w = 2 x (x w - y) as
the lesson does: w goes to 2 and the prediction at x = 4 to 8.
"""

from jvpvjp import grad

x_data = [1.0, 2.0, 3.0]
y_data = [2.0, 4.0, 6.0]


def forward(x, w):
    return x * w


def loss(w, x, y):
    y_pred = forward(x, w)
    return (y_pred - y) ** 2


dloss_dw = grad(loss)


def main(epochs=100, lr=0.01, verbose=True):
    w = 1.0
    if verbose:
        print("prediction (before training)", 4, forward(4.0, w))
    for epoch in range(epochs):
        for x, y in zip(x_data, y_data):
            g = float(dloss_dw(w, x, y))
            if verbose and (epoch < 2 or epoch == epochs - 1):
                print("\tgrad:", x, y, round(g, 6))
            w = w - lr * g
        if verbose and (epoch < 2 or epoch == epochs - 1):
            print(f"progress: epoch {epoch}, w = {w:.6f}, loss = {float(loss(w, x, y)):.8f}")
    if verbose:
        print("prediction (after training)", 4, forward(4.0, w))
    return w


if __name__ == "__main__":
    main()
