"""vmap: a function of one example run on a batch of them, as one compiled program.

The function is traced once on the first slice of the batch; `batching.batch_oplist`
then gives every op a leading batch axis (one rule per primitive) and the result is
compiled like any other op list. Inside another transform the batched program is inlined,
so ``vmap(grad(loss))`` gives per-example gradients and ``grad(... vmap(f) ...)``
differentiates through a batch.

A trace holds one path through the function's Python control flow. Slices of a batch may
take different paths, so a function whose trace records guards (``if x > 0`` on traced
values) is refused rather than run on the first slice's path for all of them.
"""
from __future__ import annotations

import functools

import numpy as np

from .api import _check_compile, _mark, tiered
from .batching import NotBatchable, batch_oplist
from .pytree import tree_flatten, tree_unflatten
from .dispatch import Args, Path, Trace, dispatcher_for
from .tracing import Tracer
from .transforms import inline


def _axes_per_argument(in_axes, nargs, fname):
    if in_axes is None or isinstance(in_axes, int):
        return (in_axes,) * nargs
    if isinstance(in_axes, (tuple, list)) and len(in_axes) == nargs and \
            all(a is None or isinstance(a, int) for a in in_axes):
        return tuple(in_axes)
    raise ValueError(f"{fname}: in_axes must be an int, None, or a tuple of one int or None "
                     f"per positional argument ({nargs}), got {in_axes!r}")


def _move_to_front(x, axis):
    return x if axis == 0 else np.moveaxis(x, axis, 0)


def vmap(fun, in_axes=0, out_axes=0, *, compile="auto"):
    """Vectorise ``fun`` over an axis of its arguments (JAX's ``vmap``).

    ``in_axes`` gives, per positional argument (or one for all), the axis that indexes the
    batch, or None for an argument shared by every example; ``out_axes`` the axis of the
    outputs that indexes it. The function is traced on one example and compiled once for
    the whole batch. Works inside and around the other transforms:
    ``vmap(grad(loss), in_axes=(None, 0, 0))(w, X, y)`` gives one gradient per example.

    >>> import numpy as np
    >>> vmap(lambda x, w: np.sum(x * w), in_axes=(0, None))(np.ones((4, 3)), np.arange(3.0))
    array([3., 3., 3., 3.])
    """
    fname = f"vmap({getattr(fun, '__name__', 'fun')})"
    if not isinstance(out_axes, int):
        raise ValueError(f"{fname}: out_axes must be an int, got {out_axes!r}")
    _check_compile(compile, fname)
    d = dispatcher_for(fun, ("vmap", in_axes if not isinstance(in_axes, list)
                             else tuple(in_axes), out_axes, compile), fname)

    @functools.wraps(fun)
    def batched_fun(*args, **kwargs):
        if kwargs:
            raise TypeError(f"{fname}: pass batched and shared values as positional "
                            f"arguments (keyword arguments are not batched)")
        axes = _axes_per_argument(in_axes, len(args), fname)
        flat, trees, counts, leaf_axes = [], [], [], []
        for arg, ax in zip(args, axes):
            lv, tr = tree_flatten(arg)
            flat.extend(lv)
            trees.append(tr)
            counts.append(len(lv))
            leaf_axes.extend([ax] * len(lv))
        size, moved = None, []
        for i, (leaf, ax) in enumerate(zip(flat, leaf_axes)):
            if ax is None:
                moved.append(leaf)
                continue
            if not isinstance(leaf, (np.ndarray, Tracer)):
                leaf = np.asarray(leaf)
            if not -leaf.ndim <= ax < leaf.ndim:
                raise ValueError(f"{fname}: in_axes {ax} is out of range for an argument of "
                                 f"shape {leaf.shape}")
            n = leaf.shape[ax]
            if size is not None and n != size:
                raise ValueError(f"{fname}: batched arguments have different sizes along "
                                 f"their in_axes ({size} and {n})")
            size = n
            moved.append(_move_to_front(leaf, ax % leaf.ndim))
        if size is None:
            raise ValueError(f"{fname}: no argument is batched (every in_axes is None)")
        if size == 0:
            raise ValueError(f"{fname}: the batch is empty")
        # the first example traces the function (a traced leaf lends its value)
        examples = [m.value if isinstance(m, Tracer) else m for m in moved]
        examples = [e[0] if ax is not None and e is not None else e
                    for e, ax in zip(examples, leaf_axes)]
        ex_args, k = [], 0
        for tr, cnt in zip(trees, counts):
            ex_args.append(tree_unflatten(tr, examples[k:k + cnt]))
            k += cnt
        a = Args(tuple(ex_args), {}, (), fname)
        batched_dyn = [leaf_axes[i] is not None for i in a.dyn_idx]
        full_dyn = [moved[i] for i in a.dyn_idx]
        # (np.ascontiguousarray would turn a 0-d value into shape (1,))
        full_dyn = [x if isinstance(x, Tracer) else np.asarray(x, order="C") for x in full_dyn]
        a.key = (a.key, tuple(batched_dyn), size)

        def make(trace):
            program = _batched(trace, batched_dyn, size, fname)
            return Path(trace, [tiered(program, d, "vmap", compile)], trace.n_out)

        if a.nested or any(isinstance(x, Tracer) for x in full_dyn):
            trace = Trace(fun, a, False, fname)
            program = _batched(trace, batched_dyn, size, fname)
            outs = inline(program, full_dyn + trace.captured)
        else:
            d.stats["calls"] += 1
            inputs = [x[()] if x.ndim == 0 else x for x in full_dyn]
            path, outs, reason = d.lookup(a.key, inputs)
            if path is None:
                path = d.new_path(a, False, make, reason)
                if compile == "eager":
                    path.compile_now(inputs)
                outs = path.run(inputs)
            trace = path.trace
        outs = [np.moveaxis(o, 0, out_axes) if out_axes != 0 else o
                for o in outs[:trace.n_out]]
        return tree_unflatten(trace.out_tree, outs)

    return _mark(batched_fun, d)


def _batched(trace, batched_dyn, size, fname):
    ol = trace.oplist
    if ol.guards:
        g = ol.guards[0]
        raise NotImplementedError(
            f"{fname}: the function takes a Python value out of a traced value "
            f"({g.kind} at {g.where or 'an unknown line'}); each example of a batch could "
            f"take a different path, so vmap cannot batch it. Write the branch with "
            f"np.where, or loop over the examples.")
    mask = list(batched_dyn) + [False] * len(trace.captured)
    try:
        return batch_oplist(ol, mask, size)
    except NotBatchable as e:
        raise NotImplementedError(f"{fname}: {e}") from None
