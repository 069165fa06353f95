"""Activation and loss functions as composites of primitives.

They work on NumPy arrays and on traced values alike, and need no derivative rules: their
derivatives follow from the primitives they are made of.
"""
from __future__ import annotations

import numpy as np

from ..api import stop_gradient


def relu(x):
    """max(x, 0), with derivative 0 at 0 (as JAX and PyTorch)."""
    return np.where(x > 0, x, 0.0)


def sigmoid(x):
    """1 / (1 + exp(-x)), within a few ulp for every x: with e = exp(-x) for x >= 0 and
    exp(x) below (never above 1, so nothing overflows), it is 1 / (1 + e), or e / (1 + e),
    which keeps the relative accuracy of the tiny values far left (a formula through tanh
    rounds them to 0 below x = -37, and log(sigmoid(x)) to -inf)."""
    e = np.exp(np.where(x >= 0, -x, x))
    return np.where(x >= 0, 1.0, e) / (1.0 + e)


def softplus(x):
    """log(1 + exp(x)), stable for large |x|."""
    return np.maximum(x, 0.0) + np.log1p(np.exp(-np.abs(x)))


def logsumexp(x, axis=None, keepdims=False):
    """log(sum(exp(x))) without overflow: the maximum is subtracted first. The shift is a
    constant for differentiation (it cancels exactly), so ties in the maximum do not matter.
    An infinite maximum shifts by 0: all -inf gives -inf (an empty sum), any +inf gives
    +inf, as in SciPy and JAX.
    """
    m = np.max(x, axis=axis, keepdims=True)
    m = stop_gradient(np.where(np.isfinite(m), m, 0.0))
    out = np.log(np.sum(np.exp(x - m), axis=axis, keepdims=True)) + m
    if keepdims:
        return out
    return np.squeeze(out, axis=axis) if axis is not None else np.reshape(out, ())


def log_softmax(x, axis=-1):
    return x - logsumexp(x, axis=axis, keepdims=True)


def softmax(x, axis=-1):
    """exp(x) / sum(exp(x)) along ``axis``, shifted by the maximum for stability."""
    e = np.exp(x - stop_gradient(np.max(x, axis=axis, keepdims=True)))
    return e / np.sum(e, axis=axis, keepdims=True)


def cross_entropy(logits, labels, axis=-1):
    """Mean softmax cross entropy. ``labels``: one-hot (or probability) rows shaped like
    ``logits``, or integer class indices of shape ``logits.shape[:-1]``."""
    logp = log_softmax(logits, axis=axis)
    if np.ndim(labels) == np.ndim(logits):
        return -np.mean(np.sum(labels * logp, axis=axis))
    if axis not in (-1, np.ndim(logits) - 1):
        raise ValueError("integer labels need the class axis last")
    labels = labels if hasattr(labels, "shape") else np.asarray(labels)
    # a comparison, not an index: new labels reuse the compiled kernel
    onehot = labels[..., None] == np.arange(np.shape(logits)[-1])
    return -np.mean(np.sum(np.where(onehot, logp, 0.0), axis=-1))


def mse(pred, target):
    d = pred - target
    return np.mean(d * d)


def binary_cross_entropy_with_logits(logits, targets):
    """Mean binary cross entropy of ``sigmoid(logits)`` against ``targets`` in [0, 1],
    computed from the logits (stable for any magnitude): max(z, 0) - z t + log(1 + e^-|z|)."""
    return np.mean(np.maximum(logits, 0.0) - logits * targets
                   + np.log1p(np.exp(-np.abs(logits))))


softmax_cross_entropy = cross_entropy


# -- convolution and pooling: im2col (a gather at constant positions) and a product -------
def _pair(v, name):
    if isinstance(v, (tuple, list)):
        if len(v) != 2:
            raise ValueError(f"{name} must be an int or a pair, got {v!r}")
        return int(v[0]), int(v[1])
    return int(v), int(v)


def _window_positions(c, h, w, kh, kw, sh, sw):
    """Flat positions into one (c, h, w) image of every window: shape
    (c * kh * kw, oh * ow), rows ordered (channel, window row, window column) like a
    flattened OIHW weight's columns."""
    oh, ow = (h - kh) // sh + 1, (w - kw) // sw + 1
    if oh < 1 or ow < 1:
        raise ValueError(f"a {kh}x{kw} window does not fit a {h}x{w} input")
    ci, i, j = np.meshgrid(np.arange(c), np.arange(kh), np.arange(kw), indexing="ij")
    oi, oj = np.meshgrid(np.arange(oh) * sh, np.arange(ow) * sw, indexing="ij")
    rows = (ci.reshape(-1, 1) * h + i.reshape(-1, 1) + oi.reshape(1, -1)) * w
    return rows + j.reshape(-1, 1) + oj.reshape(1, -1), oh, ow


def _check_nchw(x, what):
    if np.ndim(x) != 4:
        raise ValueError(f"{what} expects an NCHW input of 4 dimensions, got shape "
                         f"{np.shape(x)}")


def conv2d(x, w, b=None, stride=1, padding=0):
    """2-D cross-correlation as in PyTorch: ``x`` (N, C, H, W), ``w`` (O, C, kh, kw), ``b``
    (O,) or None; ``stride`` and ``padding`` an int or a pair. Returns (N, O, oh, ow).

    Computed as im2col (one gather of every window at constant positions) and one matrix
    product, so its derivatives are a product and a scatter-add.
    """
    _check_nchw(x, "conv2d")
    n, c, h, wd = np.shape(x)
    o, cw, kh, kw = np.shape(w)
    if cw != c:
        raise ValueError(f"conv2d: the input has {c} channels, the weight expects {cw}")
    sh, sw = _pair(stride, "stride")
    ph, pw = _pair(padding, "padding")
    if ph or pw:
        x = np.pad(x, ((0, 0), (0, 0), (ph, ph), (pw, pw)))
        h, wd = h + 2 * ph, wd + 2 * pw
    pos, oh, ow = _window_positions(c, h, wd, kh, kw, sh, sw)
    cols = np.reshape(x, (n, c * h * wd))[:, pos]                # (n, c kh kw, oh ow)
    out = np.reshape(w, (o, c * kh * kw)) @ cols                  # (n, o, oh ow)
    out = np.reshape(out, (n, o, oh, ow))
    if b is not None:
        out = out + np.reshape(b, (1, o, 1, 1))
    return out


def _pool(x, kernel_size, stride, reduce, what):
    _check_nchw(x, what)
    n, c, h, w = np.shape(x)
    kh, kw = _pair(kernel_size, "kernel_size")
    sh, sw = _pair(kernel_size if stride is None else stride, "stride")
    pos, oh, ow = _window_positions(1, h, w, kh, kw, sh, sw)      # (kh kw, oh ow)
    windows = np.reshape(x, (n, c, h * w))[:, :, pos]             # (n, c, kh kw, oh ow)
    return np.reshape(reduce(windows, axis=2), (n, c, oh, ow))


def max_pool2d(x, kernel_size, stride=None):
    """Max over ``kernel_size`` windows of an NCHW input, ``stride`` defaulting to the
    window (PyTorch's). Ties share the derivative, as in NumPy's max."""
    return _pool(x, kernel_size, stride, np.max, "max_pool2d")


def avg_pool2d(x, kernel_size, stride=None):
    """Mean over ``kernel_size`` windows of an NCHW input (no padding)."""
    return _pool(x, kernel_size, stride, np.mean, "avg_pool2d")


def dropout(x, rate, uniforms=None):
    """Zero each element with probability ``rate`` and scale the rest by 1 / (1 - rate);
    ``uniforms`` (numbers in [0, 1) shaped like ``x``) decide which. With ``uniforms=None``
    it is the identity (evaluation). Draw the uniforms outside traced code
    (`jvpvjp.nn.uniforms`) and pass them in, so that a compiled step gets new ones each
    call."""
    if uniforms is None or rate == 0:
        return x
    if not 0 <= rate < 1:
        raise ValueError(f"dropout rate must be in [0, 1), got {rate}")
    if np.shape(uniforms) != np.shape(x):
        raise ValueError(f"dropout: uniforms of shape {np.shape(uniforms)} for an input of "
                         f"shape {np.shape(x)}")
    return np.where(uniforms >= rate, x * (1.0 / (1.0 - rate)), 0.0)
