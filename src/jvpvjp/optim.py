"""Optimizers over pytrees of parameters (optax's shape) and a training loop.

Each optimizer has ``state = opt.init(params)`` and
``params, state = opt.update(grads, state, params)``. The update is compiled like any
jvpvjp function (`jit`); hyperparameters are passed to it as values, so changing
``opt.lr`` between steps takes effect without a new trace. ``opt.step(loss)`` gives one
compiled call for a whole training step (gradient and update), and `fit` runs epochs of
minibatches with it.

>>> import numpy as np
>>> from jvpvjp import optim
>>> opt = optim.SGD(lr=0.1)
>>> params = {"w": np.array([1.0, 2.0])}
>>> state = opt.init(params)
>>> params, state = opt.update({"w": np.array([1.0, -1.0])}, state, params)
>>> params["w"]
array([0.9, 2.1])
"""
from __future__ import annotations

import sys

import numpy as np

from .api import jit, value_and_grad
from .pytree import tree_flatten, tree_unflatten

__all__ = ["Optimizer", "SGD", "Adam", "AdamW", "RMSProp", "Adagrad", "fit"]


def _map(fn, *trees):
    leaves, tree = tree_flatten(trees[0])
    others = [tree_flatten(t)[0] for t in trees[1:]]
    return tree_unflatten(tree, [fn(*xs) for xs in zip(leaves, *others)])


def _zeros_like(params):
    return _map(lambda p: np.zeros(np.shape(p), np.result_type(p, np.float64)), params)


class Optimizer:
    """Base class: subclasses give ``hyper`` (names of float hyperparameters),
    ``_init_state(params)`` and ``_update(grads, state, params, h)`` with ``h`` a dict of
    the hyperparameters (traced values inside the compiled update) and of `_structure`'s
    flags (Python values: part of the compiled update's cache key, so changing one gives
    another program, never a stale one)."""

    hyper = ()

    def _structure(self):
        return {}

    def __init__(self):
        self._compiled = jit(self._compiled_update)
        self._steps = {}

    def __repr__(self):
        return f"{type(self).__name__}({', '.join(f'{k}={getattr(self, k)!r}' for k in self.hyper)})"

    def _hyper_values(self):
        return tuple(np.float64(getattr(self, k)) for k in self.hyper)

    def init(self, params):
        """The optimizer's state for ``params`` (a pytree of arrays)."""
        return self._init_state(params)

    def _h(self, hyper, flags):
        h = dict(zip(self.hyper, hyper))
        h.update(flags)
        return h

    def _compiled_update(self, grads, state, params, hyper, flags):
        return self._update(grads, state, params, self._h(hyper, flags))

    def update(self, grads, state, params):
        """One step: ``(new params, new state)``."""
        return self._compiled(grads, state, params, self._hyper_values(), self._structure())

    def step(self, loss, compile="auto"):
        """A compiled training step for ``loss(params, *batch) -> scalar``:
        ``step(params, state, *batch) -> (params, state, loss value)``, the gradient and
        the update in one program. ``compile`` as for `jvpvjp.jit`."""
        fn = self._steps.get((loss, compile))
        if fn is None:
            vg = value_and_grad(loss)

            def train_step(params, state, hyper, flags, *batch):
                value, grads = vg(params, *batch)
                params, state = self._update(grads, state, params, self._h(hyper, flags))
                return params, state, value
            compiled = jit(train_step, compile=compile)

            def fn(params, state, *batch):
                return compiled(params, state, self._hyper_values(), self._structure(),
                                *batch)
            self._steps[loss, compile] = fn
        return fn


class SGD(Optimizer):
    """Stochastic gradient descent, PyTorch's semantics: with ``weight_decay`` the gradient
    gets ``weight_decay * p``; with ``momentum`` a buffer ``v = momentum v + g`` is the step
    (``g + momentum v`` with ``nesterov=True``)."""

    hyper = ("lr", "momentum", "weight_decay")

    def __init__(self, lr, momentum=0.0, nesterov=False, weight_decay=0.0):
        if nesterov and momentum <= 0:
            raise ValueError("SGD: nesterov=True needs momentum > 0")
        self.lr, self.momentum, self.weight_decay = lr, momentum, weight_decay
        self.nesterov = nesterov
        super().__init__()

    def _structure(self):
        return {"with_momentum": bool(self.momentum), "with_decay": bool(self.weight_decay),
                "nesterov": bool(self.nesterov)}

    def _init_state(self, params):
        return {"v": _zeros_like(params)} if self.momentum else {}

    def _update(self, grads, state, params, h):
        if h["with_decay"]:
            grads = _map(lambda g, p: g + h["weight_decay"] * p, grads, params)
        if not h["with_momentum"]:
            return _map(lambda p, g: p - h["lr"] * g, params, grads), state
        if "v" not in state:
            raise ValueError("SGD: the state has no momentum buffer; call init again after "
                             "setting momentum")
        v = _map(lambda v, g: h["momentum"] * v + g, state["v"], grads)
        if h["nesterov"]:
            d = _map(lambda g, v: g + h["momentum"] * v, grads, v)
        else:
            d = v
        return _map(lambda p, d: p - h["lr"] * d, params, d), {"v": v}


class Adam(Optimizer):
    """Adam (Kingma & Ba), bias-corrected: ``m`` and ``v`` are running means of the gradient
    and its square; the step is ``lr * m_hat / (sqrt(v_hat) + eps)``."""

    hyper = ("lr", "b1", "b2", "eps")

    def __init__(self, lr=1e-3, b1=0.9, b2=0.999, eps=1e-8):
        self.lr, self.b1, self.b2, self.eps = lr, b1, b2, eps
        super().__init__()

    def _init_state(self, params):
        return {"t": np.zeros(()), "m": _zeros_like(params), "v": _zeros_like(params)}

    def _moments(self, grads, state, h):
        t = state["t"] + 1.0
        m = _map(lambda m, g: h["b1"] * m + (1.0 - h["b1"]) * g, state["m"], grads)
        v = _map(lambda v, g: h["b2"] * v + (1.0 - h["b2"]) * g * g, state["v"], grads)
        c1, c2 = 1.0 - h["b1"] ** t, 1.0 - h["b2"] ** t
        steps = _map(lambda m, v: (m / c1) / (np.sqrt(v / c2) + h["eps"]), m, v)
        return steps, {"t": t, "m": m, "v": v}

    def _update(self, grads, state, params, h):
        steps, state = self._moments(grads, state, h)
        return _map(lambda p, s: p - h["lr"] * s, params, steps), state


class AdamW(Adam):
    """Adam with decoupled weight decay (Loshchilov & Hutter): each step also shrinks the
    parameters by ``lr * weight_decay * p``."""

    hyper = ("lr", "b1", "b2", "eps", "weight_decay")

    def __init__(self, lr=1e-3, b1=0.9, b2=0.999, eps=1e-8, weight_decay=0.01):
        self.weight_decay = weight_decay
        super().__init__(lr, b1, b2, eps)

    def _update(self, grads, state, params, h):
        steps, state = self._moments(grads, state, h)
        return _map(lambda p, s: p - h["lr"] * (s + h["weight_decay"] * p), params,
                    steps), state


class RMSProp(Optimizer):
    """RMSProp, PyTorch's form: ``v = alpha v + (1 - alpha) g^2``, step
    ``lr g / (sqrt(v) + eps)`` (through a momentum buffer when ``momentum`` > 0)."""

    hyper = ("lr", "alpha", "eps", "momentum")

    def __init__(self, lr=1e-2, alpha=0.99, eps=1e-8, momentum=0.0):
        self.lr, self.alpha, self.eps, self.momentum = lr, alpha, eps, momentum
        super().__init__()

    def _structure(self):
        return {"with_momentum": bool(self.momentum)}

    def _init_state(self, params):
        state = {"v": _zeros_like(params)}
        if self.momentum:
            state["buf"] = _zeros_like(params)
        return state

    def _update(self, grads, state, params, h):
        v = _map(lambda v, g: h["alpha"] * v + (1.0 - h["alpha"]) * g * g, state["v"], grads)
        d = _map(lambda g, v: g / (np.sqrt(v) + h["eps"]), grads, v)
        new = {"v": v}
        if h["with_momentum"]:
            d = _map(lambda b, d: h["momentum"] * b + d, state["buf"], d)
            new["buf"] = d
        return _map(lambda p, d: p - h["lr"] * d, params, d), new


class Adagrad(Optimizer):
    """Adagrad: ``s = s + g^2``, step ``lr g / (sqrt(s) + eps)``."""

    hyper = ("lr", "eps")

    def __init__(self, lr=1e-2, eps=1e-10, initial_accumulator_value=0.0):
        self.lr, self.eps = lr, eps
        self.initial_accumulator_value = initial_accumulator_value
        super().__init__()

    def _init_state(self, params):
        return {"s": _map(lambda p: np.full(np.shape(p), self.initial_accumulator_value),
                          params)}

    def _update(self, grads, state, params, h):
        s = _map(lambda s, g: s + g * g, state["s"], grads)
        return _map(lambda p, g, s: p - h["lr"] * g / (np.sqrt(s) + h["eps"]), params,
                    grads, s), {"s": s}


def _progress(total, enabled, desc):
    """A tqdm bar when tqdm is installed and the output is a terminal (or asked for)."""
    if enabled is None:
        enabled = sys.stderr.isatty()
    if not enabled:
        return None
    try:
        from tqdm import tqdm
    except ImportError:
        return None
    return tqdm(total=total, desc=desc, leave=False)


def fit(loss, params, data, epochs, batch_size, optimizer, *, shuffle=True, seed=0,
        state=None, progress=None, callback=None, client=None, compile="auto"):
    """Train ``params`` on ``data`` with minibatches: ``loss(params, *batch) -> scalar``.

    ``data`` is an array or a tuple of arrays sharing their first axis (inputs, targets);
    each epoch visits it in batches of ``batch_size`` (shuffled with ``seed`` unless
    ``shuffle=False``; the last batch may be smaller). Each step is one compiled call:
    the gradient and ``optimizer``'s update. A tqdm progress bar is shown when tqdm is
    installed and stderr is a terminal (``progress=True/False`` forces it).
    ``state`` continues from an optimizer state; ``callback(epoch, params, state, loss)``
    runs after each epoch. With a Dask ``client``, the steps run data-parallel on its
    workers (`jvpvjp.distributed.fit`: the same batches, the same result up to rounding).

    The same ``seed`` gives the same batches. With ``compile="auto"`` the step starts on
    an interpreter and its compiled kernel is swapped in when ready, at a moment that
    depends on the machine's load; compiled reductions add in another order than NumPy, so
    two runs can differ in the last bits of the loss. ``compile="eager"`` (compile before
    the first step) or ``"never"`` (interpret only) makes runs repeat to the bit.

    Returns ``(params, history)``: the trained parameters and the mean loss of each epoch
    (the mean over its steps' losses, weighted by batch size).
    """
    if client is not None:
        from .distributed import fit as distributed_fit
        return distributed_fit(loss, params, data, epochs, batch_size, optimizer,
                               client=client, shuffle=shuffle, seed=seed, state=state,
                               progress=progress, callback=callback)
    arrays = tuple(np.asarray(a) for a in data_arrays(data, batch_size))
    n = arrays[0].shape[0]
    step = optimizer.step(loss, compile)

    def run_step(params, state, idx):
        return step(params, state, *[a[idx] for a in arrays])
    state = optimizer.init(params) if state is None else state
    return run_epochs(run_step, params, state, n, epochs, batch_size, shuffle, seed,
                      progress, callback, f"fit {getattr(loss, '__name__', '')}")


def data_arrays(data, batch_size):
    """`fit`'s data as a tuple of arrays sharing their first axis (checked)."""
    arrays = tuple(data) if isinstance(data, (tuple, list)) else (data,)
    n = arrays[0].shape[0] if arrays and hasattr(arrays[0], "shape") else 0
    if any(np.shape(a)[:1] != (n,) for a in arrays):
        raise ValueError(f"fit: the data arrays have different lengths "
                         f"{[np.shape(a)[:1] for a in arrays]}")
    if batch_size < 1 or n == 0:
        raise ValueError("fit: needs batch_size >= 1 and at least one sample")
    return arrays


def run_epochs(run_step, params, state, n, epochs, batch_size, shuffle, seed, progress,
               callback, desc):
    """The epochs of `fit`: the batches (one seeded permutation of range(n) per epoch,
    cut in batch_size pieces) and the loss history; ``run_step(params, state, idx)``
    returns ``(params, state, loss value)`` for the rows ``idx``."""
    rng = np.random.default_rng(seed)
    n_steps = -(-n // batch_size)
    bar = _progress(epochs * n_steps, progress, desc)
    history = []
    try:
        for epoch in range(epochs):
            order = rng.permutation(n) if shuffle else np.arange(n)
            total = 0.0
            for start in range(0, n, batch_size):
                idx = order[start:start + batch_size]
                params, state, value = run_step(params, state, idx)
                total += float(value) * len(idx)
                if bar is not None:
                    bar.update(1)
            history.append(total / n)
            if callback is not None:
                callback(epoch, params, state, history[-1])
            if bar is not None:
                bar.set_postfix(loss=f"{history[-1]:.4g}")
    finally:
        if bar is not None:
            bar.close()
    return params, history
