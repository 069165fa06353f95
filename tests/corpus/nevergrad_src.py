"""Test functions from facebookresearch/nevergrad, taken unmodified.

Source: https://github.com/facebookresearch/nevergrad (MIT),
``nevergrad/functions/corefuncs.py``. The file imports ``from math import exp, sqrt,
tanh`` and ``import numpy as np``; so does this module. The ``@registry.register``
decorators are dropped. These functions convert traced values with ``float()`` and call
``math`` functions on them, as plain-Python optimisation code often does.
"""
from math import exp, sqrt, tanh  # noqa: F401  (as in the source file)

import numpy as np


# facebookresearch/nevergrad nevergrad/functions/corefuncs.py, function sphere
# https://github.com/facebookresearch/nevergrad/blob/dd91b154573462e2177559b2c15bec8d74543d1e/nevergrad/functions/corefuncs.py
def sphere(x: np.ndarray) -> float:
    """The most classical continuous optimization testbed.

    If you do not solve that one then you have a bug."""
    assert x.ndim == 1
    return float(x.dot(x))


# facebookresearch/nevergrad nevergrad/functions/corefuncs.py, function schwefel_1_2
# https://github.com/facebookresearch/nevergrad/blob/dd91b154573462e2177559b2c15bec8d74543d1e/nevergrad/functions/corefuncs.py
def schwefel_1_2(x: np.ndarray) -> float:
    cx = np.cumsum(x)
    return sphere(cx)


# facebookresearch/nevergrad nevergrad/functions/corefuncs.py, function ackley
# https://github.com/facebookresearch/nevergrad/blob/dd91b154573462e2177559b2c15bec8d74543d1e/nevergrad/functions/corefuncs.py
# (math.exp / math.sqrt of traced scalars)
def ackley(x: np.ndarray) -> float:
    dim = x.size
    sum_cos = np.sum(np.cos(2 * np.pi * x))
    return -20.0 * exp(-0.2 * sqrt(sphere(x) / dim)) - exp(sum_cos / dim) + 20 + exp(1)


# facebookresearch/nevergrad nevergrad/functions/corefuncs.py, function ellipsoid
# https://github.com/facebookresearch/nevergrad/blob/dd91b154573462e2177559b2c15bec8d74543d1e/nevergrad/functions/corefuncs.py
def ellipsoid(x: np.ndarray) -> float:
    """Classical example of ill conditioned function.

    The other classical example is cigar.
    """
    dim = x.size
    weights = 10 ** np.linspace(0, 6, dim)
    return float(weights.dot(x ** 2))


# facebookresearch/nevergrad nevergrad/functions/corefuncs.py, function lunacek
# https://github.com/facebookresearch/nevergrad/blob/dd91b154573462e2177559b2c15bec8d74543d1e/nevergrad/functions/corefuncs.py
# (scalar accumulation in a Python loop, builtin min of traced scalars)
def lunacek(x: np.ndarray) -> float:
    """Multimodal function.

    Based on https://www.cs.unm.edu/~neal.holts/dga/benchmarkFunction/lunacek.html."""
    problemDimensions = len(x)
    s = 1.0 - (1.0 / (2.0 * np.sqrt(problemDimensions + 20.0) - 8.2))
    mu1 = 2.5
    mu2 = -np.sqrt(abs((mu1 ** 2 - 1.0) / s))
    firstSum = 0.0
    secondSum = 0.0
    thirdSum = 0.0
    for i in range(problemDimensions):
        firstSum += (x[i] - mu1) ** 2
        secondSum += (x[i] - mu2) ** 2
        thirdSum += 1.0 - np.cos(2 * np.pi * (x[i] - mu1))
    return min(firstSum, 1.0 * problemDimensions + secondSum) + 10 * thirdSum
