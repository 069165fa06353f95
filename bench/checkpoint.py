"""Checkpointing: residual memory and time of reverse mode with and without `checkpoint`.

    python bench/checkpoint.py [--steps 100] [--quick]

Two unrolled loops of n steps:

* rnn: h <- tanh(W h + x_t) + 0.5 h, state 256, W shared by every step;
* heat: a nonlinear heat equation, u <- u + dt (laplacian(u) - u^3), state 100,000.

For each: the plain program, and the same loop checkpointed in segments of sqrt(n) steps
(`checkpoint` on each segment). "stored" is what the forward pass of ``vjp`` keeps for the
backward pass (`pullback.residual_bytes`); times are medians of ``vjp`` + one pullback and
of ``grad``, compiled before timing; "equal" says whether the gradients agree to the bit.
"""
from __future__ import annotations

import argparse
import math
import os
import sys

import numpy as np

sys.path.insert(0, os.path.dirname(__file__))
sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", "src"))
from modes import median_time  # noqa: E402

from jvpvjp import checkpoint, grad, vjp  # noqa: E402


def rnn(steps, n=256):
    rng = np.random.default_rng(0)
    W = rng.normal(size=(n, n)) / np.sqrt(n)
    xs = rng.normal(size=(steps, n)) * 0.1

    def step(h, W, t):
        return np.tanh(W @ h + xs[t]) + 0.5 * h
    return step, (rng.normal(size=n), W)


def heat(steps, n=100_000):
    dt = 0.1

    def step(u, k, t):
        lap = np.roll(u, 1) - 2.0 * u + np.roll(u, -1)
        return u + dt * (k * lap - u ** 3)
    u0 = np.sin(np.linspace(0, 8 * np.pi, n)) * 0.5
    return step, (u0, np.array(0.3))


def programs(step, steps):
    seg = max(1, math.isqrt(steps))

    def plain(h, p):
        for t in range(steps):
            h = step(h, p, t)
        return np.sum(h ** 2)

    def segment_fn(t0):
        @checkpoint
        def segment(h, p):
            for t in range(t0, min(t0 + seg, steps)):
                h = step(h, p, t)
            return h
        return segment

    segments = [segment_fn(t0) for t0 in range(0, steps, seg)]

    def checkpointed(h, p):
        for s in segments:
            h = s(h, p)
        return np.sum(h ** 2)
    return plain, checkpointed, seg


def run(name, make, steps):
    step, args = make(steps)
    plain, ckpt, seg = programs(step, steps)
    rows, grads = [], {}
    for label, f in (("plain", plain), (f"checkpoint every {seg}", ckpt)):
        _, pb = vjp(f, *args, compile="eager")
        g = grad(f, argnums=(0, 1), compile="eager")
        grads[label] = g(*args)

        def vjp_call():
            return vjp(f, *args)[1](1.0)
        rows.append((label, pb.residual_bytes, median_time(vjp_call, repeat=5),
                     median_time(lambda: g(*args), repeat=5)))
    (a, b) = grads.values()
    equal = all(np.array_equal(p, q) for p, q in zip(a, b))
    base = rows[0]
    print(f"\n{name}: {steps} steps, state {args[0].size:,}")
    print(f"  {'':22s} {'stored':>12s} {'vs plain':>9s} {'vjp+pullback':>13s} {'vs plain':>9s}"
          f" {'grad':>10s} {'vs plain':>9s}")
    for label, nbytes, t_vjp, t_grad in rows:
        print(f"  {label:22s} {nbytes / 1e6:10.2f}MB {nbytes / base[1]:9.3f} "
              f"{t_vjp * 1e3:11.2f}ms {t_vjp / base[2]:9.2f} {t_grad * 1e3:8.2f}ms "
              f"{t_grad / base[3]:9.2f}")
    print(f"  gradients equal to the bit: {equal}")
    return rows, equal


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--steps", type=int, default=100)
    ap.add_argument("--quick", action="store_true", help="25 steps")
    a = ap.parse_args(argv)
    steps = 25 if a.quick else a.steps
    for name, make in (("rnn", rnn), ("heat", heat)):
        run(name, make, steps)


if __name__ == "__main__":
    main()
