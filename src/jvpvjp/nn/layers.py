"""Layers in the functional style of stax and Flax: ``params = layer.init(rng, input_shape)``
and ``y = layer.apply(params, x)``. Parameters are pytrees (dicts of arrays), so
``grad(loss)(params, ...)`` is plain jvpvjp and the optimizers of `jvpvjp.optim` update
them. ``input_shape`` includes the batch axis (any size, or -1); layers with parameters
check it against their sizes. ``layer(params, x)`` is ``layer.apply(params, x)``.
"""
from __future__ import annotations

import math

import numpy as np

from . import functional as F
from . import init as initializers
from ..tracing import Tracer

__all__ = ["Layer", "Linear", "Conv2d", "MaxPool2d", "AvgPool2d", "Flatten", "Dropout",
           "ReLU", "Sigmoid", "Tanh", "Softmax", "Sequential", "uniforms"]


class Layer:
    """A layer: ``init(rng, input_shape) -> params``, ``apply(params, x, rng=None) -> y``,
    ``output_shape(input_shape)``. Layers without parameters have ``{}``."""

    def init(self, rng, input_shape):
        self.output_shape(input_shape)          # checks the shape
        return {}

    def output_shape(self, input_shape):
        return tuple(input_shape)

    def apply(self, params, x, rng=None):
        raise NotImplementedError

    def __call__(self, params, x, rng=None):
        return self.apply(params, x, rng)

    def __repr__(self):
        fields = ", ".join(f"{k}={v!r}" for k, v in vars(self).items())
        return f"{type(self).__name__}({fields})"


def _check(layer, input_shape, axis, expected, what):
    got = tuple(input_shape)
    if not -len(got) <= axis < len(got):
        raise ValueError(f"{layer!r}: input shape {got} has no axis {axis}")
    if got[axis] not in (expected, -1, None):
        raise ValueError(f"{layer!r}: expects {expected} {what}, the input shape {got} has "
                         f"{got[axis]}")


class Linear(Layer):
    """``x @ w + b`` with ``w`` of shape (in_features, out_features). PyTorch's default
    initialisation: U(-1/sqrt(in), 1/sqrt(in)) for both; ``init`` may be any initialiser
    of `jvpvjp.nn.init` for the weight (the bias then starts at zero)."""

    def __init__(self, in_features, out_features, bias=True, init=None):
        self.in_features, self.out_features = int(in_features), int(out_features)
        self.bias, self.initializer = bias, init

    def output_shape(self, input_shape):
        _check(self, input_shape, -1, self.in_features, "input features")
        return tuple(input_shape[:-1]) + (self.out_features,)

    def init(self, rng, input_shape):
        self.output_shape(input_shape)
        g = initializers.generator(rng)
        shape = (self.in_features, self.out_features)
        if self.initializer is None:
            bound = 1.0 / math.sqrt(self.in_features)
            params = {"w": initializers.uniform(g, shape, -bound, bound)}
            if self.bias:
                params["b"] = initializers.uniform(g, (self.out_features,), -bound, bound)
        else:
            params = {"w": self.initializer(g, shape, layout="io")}
            if self.bias:
                params["b"] = np.zeros(self.out_features)
        return params

    def apply(self, params, x, rng=None):
        y = x @ params["w"]
        return y + params["b"] if "b" in params else y


class Conv2d(Layer):
    """2-D cross-correlation of NCHW inputs with an OIHW weight (`functional.conv2d`);
    PyTorch's default initialisation, U(-1/sqrt(fan_in), 1/sqrt(fan_in))."""

    def __init__(self, in_channels, out_channels, kernel_size, stride=1, padding=0,
                 bias=True, init=None):
        self.in_channels, self.out_channels = int(in_channels), int(out_channels)
        self.kernel_size = F._pair(kernel_size, "kernel_size")
        self.stride, self.padding = F._pair(stride, "stride"), F._pair(padding, "padding")
        self.bias, self.initializer = bias, init

    def output_shape(self, input_shape):
        if len(input_shape) != 4:
            raise ValueError(f"{self!r}: expects NCHW inputs, got shape {tuple(input_shape)}")
        _check(self, input_shape, 1, self.in_channels, "channels")
        n, _, h, w = input_shape
        (kh, kw), (sh, sw), (ph, pw) = self.kernel_size, self.stride, self.padding
        oh, ow = (h + 2 * ph - kh) // sh + 1, (w + 2 * pw - kw) // sw + 1
        if oh < 1 or ow < 1:
            raise ValueError(f"{self!r}: a {kh}x{kw} window does not fit a {h}x{w} input")
        return (n, self.out_channels, oh, ow)

    def init(self, rng, input_shape):
        self.output_shape(input_shape)
        g = initializers.generator(rng)
        shape = (self.out_channels, self.in_channels) + self.kernel_size
        if self.initializer is None:
            bound = 1.0 / math.sqrt(self.in_channels * math.prod(self.kernel_size))
            params = {"w": initializers.uniform(g, shape, -bound, bound)}
            if self.bias:
                params["b"] = initializers.uniform(g, (self.out_channels,), -bound, bound)
        else:
            params = {"w": self.initializer(g, shape)}
            if self.bias:
                params["b"] = np.zeros(self.out_channels)
        return params

    def apply(self, params, x, rng=None):
        return F.conv2d(x, params["w"], params.get("b"), self.stride, self.padding)


class _Pool(Layer):
    def __init__(self, kernel_size, stride=None):
        self.kernel_size = F._pair(kernel_size, "kernel_size")
        self.stride = self.kernel_size if stride is None else F._pair(stride, "stride")

    def output_shape(self, input_shape):
        if len(input_shape) != 4:
            raise ValueError(f"{self!r}: expects NCHW inputs, got shape {tuple(input_shape)}")
        n, c, h, w = input_shape
        (kh, kw), (sh, sw) = self.kernel_size, self.stride
        oh, ow = (h - kh) // sh + 1, (w - kw) // sw + 1
        if oh < 1 or ow < 1:
            raise ValueError(f"{self!r}: a {kh}x{kw} window does not fit a {h}x{w} input")
        return (n, c, oh, ow)


class MaxPool2d(_Pool):
    """Max over windows (`functional.max_pool2d`); ``stride`` defaults to the window."""

    def apply(self, params, x, rng=None):
        return F.max_pool2d(x, self.kernel_size, self.stride)


class AvgPool2d(_Pool):
    """Mean over windows (`functional.avg_pool2d`); ``stride`` defaults to the window."""

    def apply(self, params, x, rng=None):
        return F.avg_pool2d(x, self.kernel_size, self.stride)


class Flatten(Layer):
    """(N, ...) -> (N, prod(...))."""

    def output_shape(self, input_shape):
        return (input_shape[0], math.prod(input_shape[1:]))

    def apply(self, params, x, rng=None):
        return np.reshape(x, (np.shape(x)[0], -1))


class Dropout(Layer):
    """Zero elements with probability ``rate`` while training, scaling the rest by
    1 / (1 - rate). ``rng``: None (evaluation: the identity), uniforms in [0, 1) shaped like
    the input (what traced code must pass, drawn outside it: `uniforms`), or for plain
    NumPy inputs a ``numpy.random.Generator`` or a seed."""

    def __init__(self, rate=0.5):
        if not 0 <= rate < 1:
            raise ValueError(f"Dropout rate must be in [0, 1), got {rate}")
        self.rate = float(rate)

    def apply(self, params, x, rng=None):
        if rng is None:
            return x
        if isinstance(rng, (np.random.Generator, int, np.integer)):
            if isinstance(x, Tracer):
                raise TypeError(
                    "Dropout inside a traced function needs its random numbers as an "
                    "argument (a compiled step would otherwise reuse one mask): draw them "
                    "with jvpvjp.nn.uniforms(rng, x.shape) outside and pass them as rng")
            rng = initializers.generator(rng).random(np.shape(x))
        return F.dropout(x, self.rate, rng)


class _Activation(Layer):
    fn = None

    def apply(self, params, x, rng=None):
        return type(self).fn(x)


class ReLU(_Activation):
    fn = staticmethod(F.relu)


class Sigmoid(_Activation):
    fn = staticmethod(F.sigmoid)


class Tanh(_Activation):
    fn = staticmethod(np.tanh)


class Softmax(Layer):
    def __init__(self, axis=-1):
        self.axis = axis

    def apply(self, params, x, rng=None):
        return F.softmax(x, axis=self.axis)


def uniforms(rng, shape):
    """Uniform numbers in [0, 1) for `Dropout` (from a Generator or a seed)."""
    return initializers.generator(rng).random(shape)


class Sequential(Layer):
    """Layers applied in order; ``params`` is a list with one entry per layer. ``rng`` for
    `apply`: None, or one entry per `Dropout` layer (see `Sequential.uniforms`)."""

    def __init__(self, *layers):
        for layer in layers:
            if not isinstance(layer, Layer):
                raise TypeError(f"Sequential takes layers, got {type(layer).__name__}")
        self.layers = list(layers)

    def __repr__(self):
        return f"Sequential({', '.join(map(repr, self.layers))})"

    def output_shape(self, input_shape):
        for layer in self.layers:
            input_shape = layer.output_shape(input_shape)
        return input_shape

    def init(self, rng, input_shape):
        g = initializers.generator(rng)
        params = []
        for layer in self.layers:
            params.append(layer.init(g, input_shape))
            input_shape = layer.output_shape(input_shape)
        return params

    def _dropouts(self):
        return [i for i, layer in enumerate(self.layers) if isinstance(layer, Dropout)]

    def uniforms(self, rng, input_shape):
        """The uniforms `apply` needs for a batch of ``input_shape``: one array per
        `Dropout` layer."""
        g = initializers.generator(rng)
        out = []
        for layer in self.layers:
            if isinstance(layer, Dropout):
                out.append(g.random(input_shape))
            input_shape = layer.output_shape(input_shape)
        return out

    def apply(self, params, x, rng=None):
        if len(params) != len(self.layers):
            raise ValueError(f"Sequential of {len(self.layers)} layers got {len(params)} "
                             f"parameter entries")
        drops = iter(rng) if isinstance(rng, (list, tuple)) else None
        for layer, p in zip(self.layers, params):
            r = None
            if isinstance(layer, Dropout) and rng is not None:
                r = next(drops) if drops is not None else rng
            x = layer.apply(p, x, r)
        return x
