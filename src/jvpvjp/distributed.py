"""Scale-out on Dask: data-parallel gradients and training, distributed Jacobians.

Needs ``dask[distributed]`` (``pip install "jvpvjp[dask]"``); the same code runs on a
`LocalCluster` and on a cluster (``Client("tcp://scheduler:8786")``).

Design notes
------------
* Data stays where Dask keeps it. Arguments after the parameters are dask arrays split
  along their first axis (or lists of per-partition futures / delayed values); they are
  persisted once and each partition's task runs on the worker that holds it.
* Parameters travel once per step: scattered and broadcast to every worker, then every
  task of the step reads that one copy.
* A task computes its partition's value and gradient with jvpvjp on the worker. The
  function travels with the task (pickled by value) under a token; each worker process
  builds and compiles the transformed function once per token and keeps it, so a cluster
  compiles once per worker process (or loads the kernel from jvpvjp's disk cache when the
  workers share one: then the first worker's compile serves all). `compile_times` reports
  each worker's first call.
* Partial results are combined by a tree of tasks on the workers; only the final sum
  comes back. A loss that is a mean over its rows is weighted by the rows of each
  partition, so the result is the mean over all rows, as in one process.
* Faults are Dask's: a task on a worker that dies is run again elsewhere (lost partitions
  are recomputed from their graph); an exception in a task reaches the caller as raised,
  with jvpvjp's message naming the user's line.
"""
from __future__ import annotations

import functools
import hashlib
import logging
import math
import pickle
import time

import numpy as np

from .pytree import tree_flatten, tree_unflatten

__all__ = ["value_and_grad", "grad", "fit", "jacrev", "jacfwd"]

log = logging.getLogger("jvpvjp")

_REDUCE = ("mean", "sum")


def _client(client):
    if client is not None:
        return client
    try:
        from distributed import get_client
    except ImportError:
        raise ImportError("jvpvjp.distributed needs dask[distributed]: "
                          "pip install 'jvpvjp[dask]'") from None
    try:
        return get_client()
    except ValueError:
        raise ValueError("jvpvjp.distributed: no Dask client; create one "
                         "(Client(LocalCluster(...)) or Client(address)) or pass "
                         "client=") from None


def _token(fn):
    """A name for ``fn`` that is the same for the same function in every process."""
    try:
        import cloudpickle
        data = cloudpickle.dumps(fn)
    except Exception:                      # noqa: BLE001  (fall back to plain pickle)
        data = pickle.dumps(fn)
    return hashlib.sha256(data).hexdigest()[:24]


# -- what runs on the workers --------------------------------------------------------------------
_BUILT = {}     # per worker process: (token, kind, options) -> transformed function


def _worker_name():
    try:
        from distributed import get_worker
        return get_worker().address
    except (ImportError, ValueError):
        return "local"


def _built(token, fn, argnums, compile):
    """The transformed function for ``token`` in this process, and whether this call
    built it (its first call's seconds are reported)."""
    key = (token, argnums, compile)
    f = _BUILT.get(key)
    if f is not None:
        return f, False
    from . import api
    f = api.value_and_grad(fn, argnums=argnums, compile=compile)
    _BUILT[key] = f
    return f, True


def _pieces(m):
    """Sizes that add up to ``m``, each a power of two (its binary digits, largest
    first): any number of rows in a few shapes that recur from step to step."""
    sizes, k = [], 1 << max(m.bit_length() - 1, 0)
    while m:
        if m >= k:
            sizes.append(k)
            m -= k
        k >>= 1
    return sizes


def _partial_value_and_grad(token, fn, argnums, reduce, params, rows_of, *blocks):
    """(weighted value, weighted gradient, rows, {worker: first-call seconds}) of one
    partition; ``rows_of``: row positions to take from the blocks (None: all).

    A whole partition has one shape, compiled on its first call. A training step's rows
    of a partition vary in number from step to step; they are taken in pieces whose sizes
    are powers of two, so that a few shapes recur (each traced once, then replayed on the
    NumPy interpreter: at these sizes NumPy's speed) instead of a new trace every step. A piece's mean weighs by its rows (a sum, by one),
    so the total is exactly the loss over all the rows."""
    if rows_of is None:
        pieces, compile = [(slice(None), None)], "eager"
    else:
        starts = np.cumsum([0] + _pieces(len(rows_of)))
        pieces = [(rows_of[lo:hi], hi - lo) for lo, hi in zip(starts[:-1], starts[1:])]
        compile = "never"   # (a background compile would take the worker's core mid-step)
    f, new = _built(token, fn, argnums, compile)
    total = grads = tree = None
    n = 0
    info = {}
    for idx, size in pieces:
        part = [np.asarray(b)[idx] for b in blocks] if size is not None else list(blocks)
        rows = int(np.shape(part[0])[0]) if part else 1
        t = time.perf_counter()
        value, g = f(params, *part)
        if new:
            info[_worker_name()] = time.perf_counter() - t
            new = False
        w = float(rows) if reduce == "mean" else 1.0
        leaves, tree = tree_flatten(g)
        if total is None:
            total, grads = w * np.asarray(value), [w * np.asarray(x) for x in leaves]
        else:
            total = total + w * np.asarray(value)
            grads = [acc + w * np.asarray(x) for acc, x in zip(grads, leaves)]
        n += rows
    return total, tree_unflatten(tree, grads), n, info


def _combine(a, b):
    la, tree = tree_flatten(a[1])
    lb, _ = tree_flatten(b[1])
    info = dict(a[3])
    info.update(b[3])
    return (a[0] + b[0], tree_unflatten(tree, [x + y for x, y in zip(la, lb)]), a[2] + b[2],
            info)


def _broadcast(client, value):
    """One future for ``value`` (any pytree) on every worker. (Wrapped in a list: scatter
    of a dict would store its entries under the dict's own keys, and a later step's
    values under the same keys would not replace them.)"""
    return client.scatter([value], broadcast=True, hash=False)[0]


def _result(future, fun):
    """``future.result()``; an exception from a task gets the user's file back in its
    message. (A function from a script or a test file travels by value, and its code's
    file name arrives on the worker as "<dynamic-code>"; the line number is kept.)"""
    try:
        return future.result()
    except Exception as e:
        msg = e.args[0] if e.args and isinstance(e.args[0], str) else None
        where = _source_file(fun)
        if msg and where and '"<dynamic-code>", line ' in msg:
            import linecache
            import re

            def fix(m):
                line = int(m.group(1))
                src = linecache.getline(where, line).strip()
                return f'"{where}", line {line}' + (f" ({src})" if src else "")
            e.args = (re.sub(r'"<dynamic-code>", line (\d+)', fix, msg),) + e.args[1:]
        raise


_STEP_TRIES = 3


def _step(submit, fun):
    """The result of the futures ``submit()`` sends, sent again if they were cancelled.

    Dask recomputes what a dead worker held when it can, but it cancels a task whose
    dependencies were lost before it was submitted (the parameters scattered to that
    worker, a partial gradient it held while the next level of the reduction was being
    sent). A step is a pure function of the parameters and the data, so it is simply run
    again: the result is the same. A task that raises is not retried."""
    from concurrent.futures import CancelledError
    for attempt in range(_STEP_TRIES):
        try:
            return _result(submit(), fun)
        except CancelledError as e:
            if attempt + 1 == _STEP_TRIES:
                raise
            log.warning("distributed: a step's tasks were cancelled (%s); running the step "
                        "again", e)


def _source_file(fun):
    import inspect
    try:
        return inspect.getsourcefile(fun)
    except TypeError:
        return None


def _tree_reduce(client, futures):
    """Combine futures pairwise, level by level, on the workers."""
    while len(futures) > 1:
        nxt = [client.submit(_combine, futures[i], futures[i + 1], pure=False)
               for i in range(0, len(futures) - 1, 2)]
        if len(futures) % 2:
            nxt.append(futures[-1])
        futures = nxt
    return futures[0]


# -- partitions ---------------------------------------------------------------------------------
class _Partitions:
    """The data arguments as per-partition futures on the workers, and their row ranges."""

    def __init__(self, client, data, fname):
        import dask.array as da
        from distributed import Future, futures_of
        if not data:
            raise TypeError(f"{fname}: pass the data (dask arrays) after the parameters")
        if all(isinstance(d, da.Array) for d in data):
            first = data[0]
            if first.ndim == 0:
                raise TypeError(f"{fname}: data arrays need a first axis of samples")
            rows = first.chunks[0]
            arrays = []
            for d in data:
                if d.shape[0] != first.shape[0]:
                    raise ValueError(f"{fname}: the data arrays have different lengths "
                                     f"({first.shape[0]} and {d.shape[0]})")
                d = d.rechunk({0: rows, **{k: -1 for k in range(1, d.ndim)}})
                arrays.append(d)
            arrays = client.persist(arrays)
            per_array = []
            for d in arrays:
                fs = futures_of(d)
                fs.sort(key=lambda f: f.key[1])
                per_array.append(fs)
            self.blocks = list(zip(*per_array))
            self.rows = list(rows)
        elif all(isinstance(d, (list, tuple)) for d in data):
            n = len(data[0])
            if any(len(d) != n for d in data):
                raise ValueError(f"{fname}: the lists of partitions differ in length")
            cols = []
            for d in data:
                items = list(d)
                todo = [i for i, x in enumerate(items) if not isinstance(x, Future)]
                if todo:
                    done = client.compute([items[i] for i in todo]) if hasattr(
                        items[todo[0]], "dask") else client.scatter([items[i] for i in todo])
                    for i, f in zip(todo, done):
                        items[i] = f
                cols.append(items)
            self.blocks = list(zip(*cols))
            self.rows = None
        else:
            raise TypeError(f"{fname}: data must be dask arrays (or lists of per-partition "
                            f"futures or delayed values), got "
                            f"{[type(d).__name__ for d in data]}")
        self.data = data

    def ranges(self):
        starts = np.cumsum([0] + self.rows)
        return list(zip(starts[:-1].tolist(), starts[1:].tolist()))


def _persisted(cache, client, data, fname):
    """Partitions of ``data``, persisted once per set of dask arrays (a dask array's name
    is a token of its contents; lists of partitions are taken as they come)."""
    names = [getattr(d, "name", None) for d in data]
    key = tuple(names) if all(isinstance(n, str) for n in names) else None
    parts = cache.get(key) if key is not None else None
    if parts is None:
        parts = _Partitions(client, data, fname)
        if key is not None:
            cache.clear()
            cache[key] = parts
    return parts


# -- the transforms -----------------------------------------------------------------------------
def value_and_grad(fun, argnums=0, reduce="mean", client=None):
    """Data-parallel ``value_and_grad`` of ``fun(params, *data_blocks)`` over the
    partitions of dask arrays.

    ``fun`` is a loss over the rows of its data blocks: a mean (``reduce="mean"``, the
    result is the mean over all rows) or a sum (``reduce="sum"``). The data arguments are
    dask arrays split along their first axis (all with the same row chunks, or rechunked
    to those of the first), or lists of per-partition futures / delayed values. One task
    per partition runs on the worker holding it; partial results are combined by a tree
    reduction. Returns ``(value, gradient)`` like `jvpvjp.value_and_grad` (NumPy values).
    ``f.compile_times`` maps each worker to the seconds its first call took.
    """
    if reduce not in _REDUCE:
        raise ValueError(f"reduce must be one of {_REDUCE}, got {reduce!r}")
    if argnums != 0:
        raise NotImplementedError("jvpvjp.distributed differentiates the first argument "
                                  "(the parameters pytree)")
    fname = f"distributed.value_and_grad({getattr(fun, '__name__', 'fun')})"
    token = _token(fun)
    cache = {}
    compile_times = {}

    @functools.wraps(fun)
    def vg(params, *data):
        c = _client(client)
        parts = _persisted(cache, c, data, fname)

        def submit():
            p = _broadcast(c, params)
            return _tree_reduce(c, [c.submit(_partial_value_and_grad, token, fun, 0, reduce,
                                             p, None, *blocks, pure=False)
                                    for blocks in parts.blocks])
        total, g, n, info = _step(submit, fun)
        compile_times.update(info)
        return _finish(total, g, n, reduce)

    vg.compile_times = compile_times
    return vg


def _finish(total, g, n, reduce):
    if reduce == "sum":
        return total, g
    leaves, tree = tree_flatten(g)
    return total / n, tree_unflatten(tree, [x / n for x in leaves])


def grad(fun, argnums=0, reduce="mean", client=None):
    """The gradient part of `value_and_grad`."""
    vg = value_and_grad(fun, argnums, reduce, client)

    @functools.wraps(fun)
    def g(params, *data):
        return vg(params, *data)[1]
    g.compile_times = vg.compile_times
    return g


def fit(loss, params, data, epochs, batch_size, optimizer, *, client=None, shuffle=True,
        seed=0, state=None, progress=None, callback=None, reduce="mean"):
    """Synchronous data-parallel training, as `jvpvjp.optim.fit` (the same arguments, the
    same batches in the same order, the same result up to rounding).

    The data (NumPy or dask arrays sharing their first axis) is persisted on the workers,
    split by rows (NumPy arrays: one partition per worker) and stays there. Each step sends
    the parameters once and each partition's row positions of the batch; the workers
    compute the gradients of their rows and the client combines them and runs the
    optimizer's update. Returns ``(params, history)``.
    """
    import dask.array as da
    from .optim import data_arrays, run_epochs
    c = _client(client)
    arrays = data_arrays(data, batch_size)
    n = arrays[0].shape[0]
    workers = max(1, len(c.scheduler_info().get("workers", {})))
    chunk = math.ceil(n / workers)
    arrays = tuple(a if isinstance(a, da.Array) else
                   da.from_array(np.asarray(a), chunks=(chunk,) + np.shape(a)[1:])
                   for a in arrays)
    fname = f"distributed.fit({getattr(loss, '__name__', 'loss')})"
    parts = _Partitions(c, arrays, fname)
    ranges = parts.ranges()
    token = _token(loss)

    def run_step(params, state, idx):
        def submit():
            p = _broadcast(c, params)
            futures = []
            for (lo, hi), blocks in zip(ranges, parts.blocks):
                local = idx[(idx >= lo) & (idx < hi)] - lo
                if local.size:
                    futures.append(c.submit(_partial_value_and_grad, token, loss, 0, reduce,
                                            p, local, *blocks, pure=False))
            return _tree_reduce(c, futures)
        value_sum, g, rows, _ = _step(submit, loss)
        value, grads = _finish(value_sum, g, rows, reduce)
        params, state = optimizer.update(grads, state, params)
        return params, state, value
    state = optimizer.init(params) if state is None else state
    return run_epochs(run_step, params, state, n, epochs, batch_size, shuffle, seed,
                      progress, callback, fname)


# -- Jacobians ----------------------------------------------------------------------------------
def _jacobian_block(fn, mode, x, lo, hi):
    """Rows lo:hi (reverse mode) or columns lo:hi (forward mode) of fn's Jacobian at x,
    as a 2-D array over flattened outputs and inputs."""
    from . import jacobian
    x = np.asarray(x)
    if mode == "rev":
        def rows(x):
            return np.reshape(fn(x), (-1,))[lo:hi]
        J = jacobian.jacrev(rows)(x)
        return np.reshape(J, (hi - lo, x.size))
    flat = x.reshape(-1)

    def cols(z):
        full = np.concatenate([flat[:lo], z, flat[hi:]])
        return np.reshape(fn(np.reshape(full, x.shape)), (-1,))
    J = jacobian.jacfwd(cols)(flat[lo:hi].copy())
    return np.reshape(J, (-1, hi - lo))


def _jacobian(fun, mode, client, blocks, small):
    @functools.wraps(fun)
    def jac(x):
        import dask
        import dask.array as da
        c = _client(client)
        x = np.asarray(x)
        out = np.asarray(fun(x))          # the output's shape and dtype (one local call)
        n_out, n_in = out.size, x.size
        total = n_out if mode == "rev" else n_in
        n_workers = max(1, len(c.scheduler_info().get("workers", {})))
        k = max(1, min(total, blocks or 4 * n_workers))
        edges = np.linspace(0, total, k + 1).round().astype(int)
        def graph():
            xf = _broadcast(c, x)
            pieces = []
            for lo, hi in zip(edges[:-1].tolist(), edges[1:].tolist()):
                if hi <= lo:
                    continue
                d = dask.delayed(_jacobian_block, pure=False)(fun, mode, xf, lo, hi)
                shape = (hi - lo, n_in) if mode == "rev" else (n_out, hi - lo)
                pieces.append(da.from_delayed(d, shape=shape, dtype=np.result_type(out, x)))
            J = da.concatenate(pieces, axis=0 if mode == "rev" else 1)
            return J.reshape(out.shape + x.shape) if out.shape + x.shape else J
        if n_out * n_in <= small:
            return _step(lambda: c.compute(graph()), fun)
        return graph()
    return jac


def jacrev(fun, client=None, blocks=None, small=2 ** 22):
    """The Jacobian of ``fun`` at ``x`` (one array in, one out), blocks of its rows
    computed by reverse mode on the workers. Returns NumPy when it has at most ``small``
    entries, else a lazy dask array of shape ``out.shape + x.shape`` (compute or persist
    it); ``blocks``: how many tasks (default 4 per worker)."""
    return _jacobian(fun, "rev", client, blocks, small)


def jacfwd(fun, client=None, blocks=None, small=2 ** 22):
    """As `jacrev`, with blocks of columns by forward mode."""
    return _jacobian(fun, "fwd", client, blocks, small)
