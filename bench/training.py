"""Training steps: gradient and optimizer update as one call, against PyTorch and JAX.

    python bench/training.py [--repeat 7]

Three models, one Adam step (lr 1e-3) on one batch, float64, one thread for every tool:

* tanh: examples/tanh_regression_adam.py's 3-5-3 net, batch 1000, sum of half squared errors;
* mlp: 784-128-10, tanh hidden layer, softmax cross-entropy, batch 64;
* convnet: examples/convnet.py's Conv-ReLU-Pool x2 + Linear on 1x8x8 images, batch 64.

jvpvjp: ``optim.Adam(...).step(loss)``, compiled before timing. PyTorch eager:
``zero_grad(); loss.backward(); opt.step()`` with ``torch.optim.Adam``. JAX:
``jax.jit`` of ``value_and_grad`` and an Adam update written with ``jax.numpy``. Times are
medians in one process; ratios are against jvpvjp.
"""
from __future__ import annotations

import argparse
import os
import sys
import time

sys.path.insert(0, os.path.join(os.path.dirname(__file__), ".."))
sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", "src"))
sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", "examples"))
from bench import threads  # noqa: E402

threads.configure(1)

import numpy as np  # noqa: E402

import jvpvjp  # noqa: E402
from jvpvjp import nn, optim  # noqa: E402

jvpvjp.config.backend = "numba"      # compiled before the first call returns


def median_time(fn, repeat, number=None):
    fn()
    if number is None:
        t = time.perf_counter()
        fn()
        number = max(1, int(0.05 / max(time.perf_counter() - t, 1e-7)))
    samples = []
    for _ in range(repeat):
        t = time.perf_counter()
        for _ in range(number):
            fn()
        samples.append((time.perf_counter() - t) / number)
    return float(np.median(samples))


# -- the models, in NumPy (jvpvjp) -------------------------------------------------------------
def tanh_case(rng):
    import tanh_regression_adam as t
    X, T = t.make_data(1000)
    return t.loss, t.init_params(), (X, T)


def mlp_case(rng):
    params = {"W1": rng.normal(size=(784, 128)) * 0.05, "b1": np.zeros(128),
              "W2": rng.normal(size=(128, 10)) * 0.1, "b2": np.zeros(10)}
    X = rng.normal(size=(64, 784))
    labels = rng.integers(0, 10, 64)

    def loss(p, X, labels):
        h = np.tanh(X @ p["W1"] + p["b1"])
        return nn.cross_entropy(h @ p["W2"] + p["b2"], labels)
    return loss, params, (X, labels)


def conv_case(rng):
    import convnet
    net = convnet.model()
    params = net.init(0, (-1, 1, 8, 8))
    X = rng.normal(size=(64, 1, 8, 8))
    labels = rng.integers(0, 10, 64)

    def loss(p, X, labels):
        return nn.cross_entropy(net.apply(p, X), labels)
    return loss, params, (X, labels)


CASES = {"tanh 3-5-3, batch 1000": tanh_case, "mlp 784-128-10, batch 64": mlp_case,
         "convnet, batch 64": conv_case}


def jvpvjp_step(case):
    loss, params, batch = case
    opt = optim.Adam(lr=1e-3)
    step = opt.step(loss)
    holder = [params, opt.init(params)]

    def run():
        holder[0], holder[1], _ = step(holder[0], holder[1], *batch)
    return run


# -- PyTorch eager ----------------------------------------------------------------------------
def torch_step(name, case):
    import torch
    threads.configure_torch(torch, 1)
    loss_np, params, batch = case
    if name.startswith("tanh"):
        X, T = (torch.tensor(a) for a in batch)
        W1, W2, b2 = (torch.tensor(params[k], requires_grad=True) for k in ("W1", "W2", "b2"))
        ps = [W1, W2, b2]
        ones = torch.ones((X.shape[0], 1), dtype=torch.float64)

        def loss():
            H = torch.tanh(torch.cat([X, ones], dim=1) @ W1)
            return torch.sum(0.5 * (H @ W2 + b2 - T) ** 2)
    elif name.startswith("mlp"):
        X = torch.tensor(batch[0])
        y = torch.tensor(batch[1])
        ps = [torch.tensor(params[k], requires_grad=True) for k in ("W1", "b1", "W2", "b2")]

        def loss():
            h = torch.tanh(X @ ps[0] + ps[1])
            return torch.nn.functional.cross_entropy(h @ ps[2] + ps[3], y)
    else:
        net = torch.nn.Sequential(
            torch.nn.Conv2d(1, 8, 3, padding=1), torch.nn.ReLU(), torch.nn.MaxPool2d(2),
            torch.nn.Conv2d(8, 16, 3, padding=1), torch.nn.ReLU(), torch.nn.MaxPool2d(2),
            torch.nn.Flatten(), torch.nn.Linear(64, 10)).double()
        X = torch.tensor(batch[0])
        y = torch.tensor(batch[1])
        ps = list(net.parameters())

        def loss():
            return torch.nn.functional.cross_entropy(net(X), y)
    opt = torch.optim.Adam(ps, lr=1e-3)

    def run():
        opt.zero_grad()
        loss().backward()
        opt.step()
    return run


# -- JAX jit ------------------------------------------------------------------------------------
def jax_step(name, case):
    import jax
    jax.config.update("jax_enable_x64", True)
    import jax.numpy as jnp
    _, params, batch = case
    if name.startswith("tanh"):
        def loss(p, X, T):
            X1 = jnp.concatenate([X, jnp.ones((X.shape[0], 1))], axis=1)
            return jnp.sum(0.5 * (jnp.tanh(X1 @ p["W1"]) @ p["W2"] + p["b2"] - T) ** 2)
    elif name.startswith("mlp"):
        def loss(p, X, labels):
            z = jnp.tanh(X @ p["W1"] + p["b1"]) @ p["W2"] + p["b2"]
            logp = jax.nn.log_softmax(z, axis=-1)
            return -jnp.mean(jnp.take_along_axis(logp, labels[:, None], axis=1))
    else:
        def conv(x, w, b, pad):
            y = jax.lax.conv_general_dilated(x, w, (1, 1), [(pad, pad), (pad, pad)],
                                             dimension_numbers=("NCHW", "OIHW", "NCHW"))
            return y + b[None, :, None, None]

        def pool(x):
            return jax.lax.reduce_window(x, -jnp.inf, jax.lax.max, (1, 1, 2, 2),
                                         (1, 1, 2, 2), "VALID")

        def loss(p, X, labels):
            h = pool(jax.nn.relu(conv(X, p[0]["w"], p[0]["b"], 1)))
            h = pool(jax.nn.relu(conv(h, p[3]["w"], p[3]["b"], 1)))
            z = h.reshape(h.shape[0], -1) @ p[7]["w"] + p[7]["b"]
            logp = jax.nn.log_softmax(z, axis=-1)
            return -jnp.mean(jnp.take_along_axis(logp, labels[:, None], axis=1))

    def step(p, m, v, t, *batch):
        value, g = jax.value_and_grad(loss)(p, *batch)
        t = t + 1
        m = jax.tree_util.tree_map(lambda m, g: 0.9 * m + 0.1 * g, m, g)
        v = jax.tree_util.tree_map(lambda v, g: 0.999 * v + 0.001 * g * g, v, g)
        p = jax.tree_util.tree_map(
            lambda p, m, v: p - 1e-3 * (m / (1 - 0.9 ** t)) / (jnp.sqrt(v / (1 - 0.999 ** t))
                                                              + 1e-8), p, m, v)
        return p, m, v, t, value
    step = jax.jit(step)
    p = jax.tree_util.tree_map(jnp.asarray, params)
    zeros = jax.tree_util.tree_map(jnp.zeros_like, p)
    state = [p, zeros, zeros, jnp.zeros(())]
    b = [jnp.asarray(x) for x in batch]

    def run():
        out = step(*state, *b)
        jax.block_until_ready(out)
        state[:] = out[:4]
    return run


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--repeat", type=int, default=7)
    a = ap.parse_args(argv)
    print(f"{'one Adam step':28s} {'jvpvjp':>10s} {'torch eager':>12s} {'ratio':>7s} "
          f"{'jax jit':>10s} {'ratio':>7s}")
    for name, make in CASES.items():
        case = make(np.random.default_rng(0))
        ours = median_time(jvpvjp_step(case), a.repeat)
        cells = [f"{ours * 1e3:8.3f}ms"]
        for peer in (torch_step, jax_step):
            try:
                t = median_time(peer(name, case), a.repeat)
                cells += [f"{t * 1e3:10.3f}ms", f"{t / ours:7.2f}"]
            except ImportError:
                cells += [f"{'-':>12s}", f"{'':7s}"]
        print(f"{name:28s} " + " ".join(cells))
    print("ratio: the peer's time over jvpvjp's (above 1: jvpvjp is faster)")


if __name__ == "__main__":
    main()
