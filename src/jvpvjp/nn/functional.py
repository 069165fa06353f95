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
    """1 / (1 + exp(-x)), computed as 0.5 * (tanh(x / 2) + 1): no overflow for any x."""
    return 0.5 * (np.tanh(0.5 * x) + 1.0)


def softplus(x):
    """log(1 + exp(x)), stable for large |x|."""
    return np.maximum(x, 0.0) + np.log1p(np.exp(-np.abs(x)))


def logsumexp(x, axis=None, keepdims=False):
    """log(sum(exp(x))) without overflow: the maximum is subtracted first. The shift is a
    constant for differentiation (it cancels exactly), so ties in the maximum do not matter.
    """
    m = stop_gradient(np.max(x, axis=axis, keepdims=True))
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
