"""Seeded initialisers: ``init(rng, shape) -> array``.

``rng`` is a ``numpy.random.Generator`` or an int seed. Fan-in and fan-out follow PyTorch:
for a weight of shape (out, in, *kernel) or (in, out) (a `Linear` weight, stored for
``x @ w``) they count the receptive field too.
"""
from __future__ import annotations

import math

import numpy as np

__all__ = ["generator", "fans", "normal", "uniform", "zeros", "xavier_uniform",
           "xavier_normal", "glorot_uniform", "glorot_normal", "he_uniform", "he_normal",
           "kaiming_uniform", "kaiming_normal"]


def generator(rng):
    """A ``numpy.random.Generator`` from a Generator or an int seed."""
    if isinstance(rng, np.random.Generator):
        return rng
    if isinstance(rng, (int, np.integer)):
        return np.random.default_rng(int(rng))
    raise TypeError(f"rng must be a numpy.random.Generator or an int seed, got "
                    f"{type(rng).__name__}")


def fans(shape, layout="oi"):
    """(fan_in, fan_out) of a weight: ``layout`` "oi" for (out, in, *kernel) (convolution),
    "io" for (in, out) (`Linear`, used as ``x @ w``)."""
    shape = tuple(shape)
    if len(shape) < 2:
        raise ValueError(f"fan-in and fan-out need a weight of 2 or more dimensions, got "
                         f"shape {shape}")
    field = math.prod(shape[2:])
    a, b = shape[0], shape[1]
    if layout == "io":
        return a * field, b * field
    return b * field, a * field


def normal(rng, shape, std=1.0, dtype=np.float64):
    return (generator(rng).standard_normal(shape) * std).astype(dtype)


def uniform(rng, shape, low=-1.0, high=1.0, dtype=np.float64):
    return generator(rng).uniform(low, high, shape).astype(dtype)


def zeros(rng, shape, dtype=np.float64):
    return np.zeros(shape, dtype)


def xavier_uniform(rng, shape, gain=1.0, layout="oi", dtype=np.float64):
    """Glorot & Bengio: U(-a, a) with a = gain sqrt(6 / (fan_in + fan_out))."""
    fi, fo = fans(shape, layout)
    a = gain * math.sqrt(6.0 / (fi + fo))
    return uniform(rng, shape, -a, a, dtype)


def xavier_normal(rng, shape, gain=1.0, layout="oi", dtype=np.float64):
    fi, fo = fans(shape, layout)
    return normal(rng, shape, gain * math.sqrt(2.0 / (fi + fo)), dtype)


def he_uniform(rng, shape, gain=math.sqrt(2.0), layout="oi", dtype=np.float64):
    """He et al. (ReLU): U(-a, a) with a = gain sqrt(3 / fan_in)."""
    fi, _ = fans(shape, layout)
    a = gain * math.sqrt(3.0 / fi)
    return uniform(rng, shape, -a, a, dtype)


def he_normal(rng, shape, gain=math.sqrt(2.0), layout="oi", dtype=np.float64):
    fi, _ = fans(shape, layout)
    return normal(rng, shape, gain / math.sqrt(fi), dtype)


glorot_uniform, glorot_normal = xavier_uniform, xavier_normal
kaiming_uniform, kaiming_normal = he_uniform, he_normal
