"""The public transforms: grad, value_and_grad, jvp, vjp, make_oplist, stop_gradient.

Each transformed function keeps a cache: (argument structure, shapes, dtypes, static
values) -> a list of traced *paths*. A path holds the compiled kernels and the guards seen
while tracing; a call replays the newest path whose guards hold and traces a new path when
none does. Called on traced values (inside another transform), the derivative program is
inlined into the enclosing trace instead of compiled, so transforms nest.
"""
from __future__ import annotations

import functools
import weakref

import numpy as np

from . import config
from .backend import compile_oplist
from .primitives import elementwise as _ew
from .oplist import gc_paused
from .pytree import tree_flatten, tree_unflatten
from .tracing import Builder, Tracer, _builders
from .transforms import inline, jvp_oplist, vjp_oplist

_STATIC = (bool, int, str, bytes, type(None))


def stop_gradient(x):
    """The value of ``x`` with a zero derivative (PyTorch's ``detach``), for any pytree.

    >>> print(grad(lambda x: x * stop_gradient(x))(3.0))   # d/dx [x * c] with c = 3
    3.0
    """
    leaves, tree = tree_flatten(x)
    return tree_unflatten(tree, [_ew.stop_gradient(v) if isinstance(v, Tracer) else v
                                 for v in leaves])


# -- arguments --------------------------------------------------------------------------------
def _leaf_value(leaf):
    """A dynamic leaf as an array (or tracer), or None when the leaf is a static value."""
    if isinstance(leaf, np.ndarray):
        if leaf.dtype.kind not in "fiub":
            raise TypeError(f"arrays of dtype {leaf.dtype} are not supported")
        return leaf if leaf.flags.c_contiguous else np.ascontiguousarray(leaf)
    if isinstance(leaf, Tracer):
        return leaf
    if isinstance(leaf, float):
        return np.asarray(leaf, np.float64)
    if isinstance(leaf, np.generic):
        return np.asarray(leaf)
    if isinstance(leaf, _STATIC):
        return None
    if isinstance(leaf, complex):
        raise TypeError("complex values are not supported")
    if hasattr(leaf, "__array__") and not callable(leaf):
        return np.ascontiguousarray(leaf)
    try:
        hash(leaf)
    except TypeError:
        raise TypeError(f"argument leaf of type {type(leaf).__name__} is neither an array nor "
                        f"a hashable static value") from None
    return None


def _float_check(value, where):
    dt = value.dtype
    if dt.kind != "f":
        raise TypeError(f"{where} has dtype {dt}; differentiation needs real floating-point "
                        f"inputs (use x.astype(float))")


class _Args:
    """Flattened arguments: dynamic leaves (arrays) and the cache key."""

    __slots__ = ("trees", "leaves", "dyn", "dyn_idx", "key", "nested", "arg_slices")

    def __init__(self, args, kwargs, diff_argnums, fname):
        trees, leaves, slices = [], [], []
        for a in args:
            lv, tr = tree_flatten(a)
            slices.append((len(leaves), len(leaves) + len(lv)))
            leaves.extend(lv)
            trees.append(tr)
        kw_leaves, kw_tree = tree_flatten(kwargs)
        leaves.extend(kw_leaves)
        trees.append(kw_tree)
        self.trees, self.leaves, self.arg_slices = trees, leaves, slices
        dyn, dyn_idx, sig = [], [], []
        nested = False
        diff_leaf = set()
        for i in diff_argnums:
            lo, hi = slices[i]
            diff_leaf.update(range(lo, hi))
        for i, leaf in enumerate(leaves):
            v = _leaf_value(leaf)
            if v is None:
                if i in diff_leaf:
                    raise TypeError(
                        f"{fname}: argument {_argnum_of(i, slices)} holds a {type(leaf).__name__}"
                        f" ({leaf!r}); differentiation needs real floating-point arrays or "
                        f"floats")
                sig.append(("static", type(leaf), leaf))
                continue
            if i in diff_leaf and v.dtype.kind != "f":
                _float_check(v, f"{fname}: argument {_argnum_of(i, slices)}")
            nested = nested or isinstance(v, Tracer)
            dyn.append(v)
            dyn_idx.append(i)
            sig.append((v.shape, v.dtype.char, i in diff_leaf))
        # Inside another trace, derivative programs are inlined rather than compiled.
        self.dyn, self.dyn_idx, self.nested = dyn, dyn_idx, nested or bool(_builders)
        self.key = (config.backend, tuple(trees), tuple(sig))

    def diff_mask(self, diff_argnums):
        diff_leaf = set()
        for i in diff_argnums:
            lo, hi = self.arg_slices[i]
            diff_leaf.update(range(lo, hi))
        return [i in diff_leaf for i in self.dyn_idx]

    def per_argument(self, nums, flat):
        """Split values for the dynamic leaves of arguments ``nums`` (given in leaf order,
        as derivative programs produce them) into one pytree per entry of ``nums``, in the
        order of ``nums``."""
        wanted = set()
        for n in nums:
            lo, hi = self.arg_slices[n]
            wanted.update(range(lo, hi))
        value_of = dict(zip([i for i in self.dyn_idx if i in wanted], flat))
        out = []
        for n in nums:
            lo, hi = self.arg_slices[n]
            out.append(tree_unflatten(self.trees[n], [value_of[i] for i in self.dyn_idx
                                                      if lo <= i < hi]))
        return tuple(out)

    def rebuild(self, dyn_values):
        leaves = list(self.leaves)
        for i, v in zip(self.dyn_idx, dyn_values):
            leaves[i] = v
        args = []
        for (lo, hi), tr in zip(self.arg_slices, self.trees):
            args.append(tree_unflatten(tr, leaves[lo:hi]))
        kwargs = tree_unflatten(self.trees[-1], leaves[self.arg_slices[-1][1] if
                                                       self.arg_slices else 0:])
        return args, kwargs


def _argnum_of(leaf_index, slices):
    for n, (lo, hi) in enumerate(slices):
        if lo <= leaf_index < hi:
            return n
    return "(keyword)"


def _as_output(x, what):
    if isinstance(x, (Tracer, np.ndarray, np.generic, float, int, bool)):
        return x
    raise TypeError(f"{what} must be a pytree of arrays or numbers, found a "
                    f"{type(x).__name__}")


class _Trace:
    """The result of tracing a function once on concrete arguments."""

    @gc_paused
    def __init__(self, fun, args, has_aux, fname):
        with Builder(concrete=True) as b, np.errstate(all="ignore"):
            inputs = [b.new_input(value=(v.value if isinstance(v, Tracer) else v))
                      for v in args.dyn]
            if any(isinstance(v, Tracer) and v.value is None for v in args.dyn):
                raise NotImplementedError(f"{fname} inside an abstract derivative program")
            a, kw = args.rebuild(inputs)
            out = fun(*a, **kw)
            if has_aux:
                if not (isinstance(out, (tuple, list)) and len(out) == 2):
                    raise TypeError(f"{fname}: has_aux=True needs the function to return a "
                                    f"pair (output, aux), got {type(out).__name__}")
                out, aux = out
            else:
                aux = None
            out_leaves, self.out_tree = tree_flatten(out)
            aux_leaves, self.aux_tree = tree_flatten(aux)
            out_leaves = [_as_output(x, "the function's output") for x in out_leaves]
            aux_leaves = [_as_output(x, "aux output") for x in aux_leaves]
            self.n_out, self.n_aux = len(out_leaves), len(aux_leaves)
            self.out_avals = [(np.shape(x), _dtype(x)) for x in out_leaves]
            self.oplist = b.finish(out_leaves + aux_leaves)
            self.captured = [t for t, _ in b.captured]


def _dtype(x):
    return x.dtype if isinstance(x, (Tracer, np.ndarray, np.generic)) else np.asarray(x).dtype


def _unflatten_outputs(trace, values):
    out = tree_unflatten(trace.out_tree, values[:trace.n_out])
    aux = tree_unflatten(trace.aux_tree, values[trace.n_out:trace.n_out + trace.n_aux])
    return out, aux


def _fast_signature(args):
    """A key for plain positional arguments (contiguous arrays, floats), or None.

    Only a call that went through the general path registers its key (`_Cached.add_fast`),
    so a key found here has passed that path's argument checks."""
    sig = [config.backend]
    for x in args:
        t = type(x)
        if t is np.ndarray:
            if not x.flags.c_contiguous:
                return None
            sig.append((x.shape, x.dtype))
        elif t is float or t is np.float64 or t is np.float32:
            sig.append(t)
        else:
            return None
    return tuple(sig)


def _replay_fast(cache, sig, call_args):
    """Replay a cached path for plain positional arrays: (path, results) or None."""
    entry = cache.fast.get(sig) if sig is not None else None
    if entry is None:
        return None
    paths, has_0d = entry
    dyn = [x[()] if type(x) is np.ndarray and x.ndim == 0 else x for x in call_args] \
        if has_0d else call_args
    for path in reversed(paths):
        results = path.kernels[0](*dyn, *path.extra)
        if not path.guards or path.guards_hold(results):
            cache.stats["calls"] += 1
            return path, results
    return None


class _Path:
    __slots__ = ("trace", "kernels", "guards", "extra", "n_fixed")

    def __init__(self, trace, kernels, n_fixed, extra=()):
        self.trace, self.kernels, self.n_fixed = trace, kernels, n_fixed
        self.extra = extra     # trailing kernel arguments (the seed cotangent of grad)
        self.guards = [g.value for g in trace.oplist.guards]

    def guards_hold(self, results):
        for expected, got in zip(self.guards, results[self.n_fixed:]):
            if expected.ndim == 0:
                if got != expected:
                    return False
            elif not np.array_equal(got, expected):
                return False
        return True


class _Cached:
    """Per-transformed-function cache of paths, keyed by argument signature."""

    def __init__(self):
        self.paths = {}
        self.fast = {}     # signature of plain positional arrays -> paths
        self.stats = {"calls": 0, "traces": 0, "compiles": 0, "guard_misses": 0}

    def lookup(self, key, run):
        """Run the newest path whose guards hold; returns (path, results) or (None, None)."""
        paths = self.paths.get(key)
        if paths:
            for path in reversed(paths):
                results = run(path)
                if path.guards_hold(results):
                    return path, results
            self.stats["guard_misses"] += 1
        return None, None

    def add_fast(self, sig, key):
        """Serve calls with fast signature ``sig`` from the paths of ``key``."""
        if sig is not None:
            has_0d = any(type(e) is tuple and e[0] == () for e in sig[1:])
            self.fast[sig] = (self.paths[key], has_0d)

    def add(self, key, path):
        paths = self.paths.setdefault(key, [])
        paths.append(path)
        if len(paths) > config.max_paths:
            del paths[0]

    def info(self):
        return dict(self.stats, signatures=len(self.paths),
                    paths=sum(len(p) for p in self.paths.values()))


def _normalize_argnums(argnums, nargs, fname):
    single = isinstance(argnums, int)
    nums = (argnums,) if single else tuple(argnums)
    for n in nums:
        if not isinstance(n, int) or not -nargs <= n < nargs:
            raise ValueError(f"{fname}: argnums {argnums!r} out of range for {nargs} "
                             f"positional argument(s)")
    return single, tuple(n % nargs for n in nums)


# -- value_and_grad / grad ------------------------------------------------------------------
def value_and_grad(fun=None, argnums=0, has_aux=False):
    """Return a function computing ``(fun(*args), gradient)`` in reverse mode.

    ``argnums`` (int or tuple) selects the differentiated positional arguments (pytrees of
    float arrays); ``fun`` must return a real scalar (or ``(scalar, aux)`` with
    ``has_aux=True``, giving ``((value, aux), gradient)``).

    >>> import numpy as np
    >>> f = value_and_grad(lambda x: np.sum(x ** 2))
    >>> value, g = f(np.array([1.0, 2.0]))
    >>> print(value, g)
    5.0 [2. 4.]
    """
    if fun is None:
        return functools.partial(value_and_grad, argnums=argnums, has_aux=has_aux)
    cache = _Cached()
    fname = f"value_and_grad({getattr(fun, '__name__', 'fun')})"
    fast_order = {}

    def build(trace, args, diff):
        if trace.n_out != 1 or trace.out_avals[0][0] != ():
            shapes = [s for s, _ in trace.out_avals[:trace.n_out]]
            raise TypeError(f"{fname}: grad requires a scalar output, but the function "
                            f"returned {'shape ' + str(shapes[0]) if len(shapes) == 1 else str(trace.n_out) + ' outputs'}"
                            f"; use jvp/vjp (or jacfwd/jacrev) for non-scalar outputs")
        if np.dtype(trace.out_avals[0][1]).kind != "f":
            raise TypeError(f"{fname}: grad requires a real floating-point output, got "
                            f"dtype {trace.out_avals[0][1]}")
        wrt = diff + [False] * len(trace.captured)
        return vjp_oplist(trace.oplist, wrt, n_seeded=1)

    # Fast path for the common call: positional float arrays and scalars, no pytrees.
    @functools.wraps(fun)
    def value_and_grad_fun(*args, **kwargs):
        if cache.fast and not kwargs and not has_aux:
            hit = _replay_fast(cache, _fast_signature(args), args)
            if hit is not None:
                results = hit[1]
                if isinstance(argnums, int):
                    return results[0], results[1]
                order = fast_order.get(len(args))
                if order is None:     # gradients come in argument order, not argnums order
                    _, nums = _normalize_argnums(argnums, len(args), fname)
                    order = fast_order[len(args)] = [sorted(set(nums)).index(n) for n in nums]
                return results[0], tuple(results[1 + i] for i in order)
        single, nums = _normalize_argnums(argnums, len(args), fname)
        a = _Args(args, kwargs, nums, fname)
        diff = a.diff_mask(nums)
        cache.stats["calls"] += 1

        def run(path):
            return path.kernels[0](*[x[()] if x.ndim == 0 else x for x in a.dyn], *path.extra)

        if a.nested:
            trace = _Trace(fun, a, has_aux, fname)
            prog = build(trace, a, diff)
            seed = np.ones((), trace.out_avals[0][1])
            results = inline(prog.oplist, list(a.dyn) + trace.captured + [seed])
        else:
            path, results = cache.lookup(a.key, run)
            if path is None:
                cache.stats["traces"] += 1
                trace = _Trace(fun, a, has_aux, fname)
                prog = build(trace, a, diff)
                kernel = compile_oplist(prog.oplist)
                cache.stats["compiles"] += 1
                seed = np.ones((), trace.out_avals[0][1])[()]
                path = _Path(trace, [kernel], 1 + trace.n_aux + sum(diff), (seed,))
                cache.add(a.key, path)
                results = run(path)
                sig = _fast_signature(args)
                if sig is not None and not kwargs and not has_aux:
                    cache.add_fast(sig, a.key)
            trace = path.trace
        value, aux = _unflatten_outputs(trace, results)
        grads = list(results[trace.n_out + trace.n_aux:trace.n_out + trace.n_aux + sum(diff)])
        per_arg = a.per_argument(nums, grads)
        g = per_arg[0] if single else per_arg
        return ((value, aux), g) if has_aux else (value, g)

    value_and_grad_fun.cache_info = cache.info
    return value_and_grad_fun


def grad(fun=None, argnums=0, has_aux=False):
    """Return a function computing the gradient of scalar-valued ``fun`` (reverse mode).

    Works as a decorator (``@grad``, ``@grad(argnums=(0, 1))``). With ``has_aux=True``
    ``fun`` returns ``(scalar, aux)`` and the gradient function returns ``(grad, aux)``.

    >>> import numpy as np
    >>> grad(lambda x: np.sum(np.sin(x)))(np.array([0.0, np.pi]))
    array([ 1., -1.])
    """
    if fun is None:
        return functools.partial(grad, argnums=argnums, has_aux=has_aux)
    vg = value_and_grad(fun, argnums=argnums, has_aux=has_aux)

    @functools.wraps(fun)
    def grad_fun(*args, **kwargs):
        (value, g) = vg(*args, **kwargs)
        return (g, value[1]) if has_aux else g

    grad_fun.cache_info = vg.cache_info
    return grad_fun


# -- jvp --------------------------------------------------------------------------------------
_jvp_caches = weakref.WeakKeyDictionary()


def _cache_for(table, fun, extra):
    try:
        per_fun = table.setdefault(fun, {})
    except TypeError:   # not weak-referenceable: no cache across calls
        per_fun = {}
    c = per_fun.get(extra)
    if c is None:
        c = per_fun[extra] = _Cached()
    return c


def _check_tangents(primals, tangents, fname, what="tangent"):
    p_leaves, p_tree = tree_flatten(tuple(primals))
    t_leaves, t_tree = tree_flatten(tuple(tangents))
    if p_tree != t_tree:
        raise TypeError(f"{fname}: primals and {what}s must have the same structure")
    out = []
    for i, (p, t) in enumerate(zip(p_leaves, t_leaves)):
        ps, pd = np.shape(p), _dtype(p)
        t = t if isinstance(t, Tracer) else np.asarray(t)
        if np.shape(t) != ps:
            raise ValueError(f"{fname}: {what} {i} has shape {np.shape(t)}, its primal has "
                             f"shape {ps}")
        if _dtype(t) != pd:
            if isinstance(t, Tracer) or _dtype(t).kind != "f":
                raise TypeError(f"{fname}: {what} {i} has dtype {_dtype(t)}, its "
                                f"primal has dtype {pd}")
            t = t.astype(pd)
        out.append(t)
    return out


def jvp(fun, primals=None, tangents=None, *, has_aux=False):
    """Forward mode: ``(fun(*primals), J @ tangents)``, JAX's signature.

    ``primals`` and ``tangents`` are tuples (one entry per positional argument) of the same
    pytree structure, shapes and float dtypes. Called with only ``fun``, returns
    ``f_jvp(primals, tangents)``. With ``has_aux=True`` returns ``(out, t_out, aux)``.

    >>> import numpy as np
    >>> jvp(np.sin, (np.array([0.0, 1.0]),), (np.array([1.0, 1.0]),))
    (array([0.        , 0.84147098]), array([1.        , 0.54030231]))
    """
    if primals is None:
        return functools.partial(jvp, fun, has_aux=has_aux)
    fname = f"jvp({getattr(fun, '__name__', 'fun')})"
    if not isinstance(primals, (tuple, list)) or not isinstance(tangents, (tuple, list)):
        raise TypeError(f"{fname}: primals and tangents must be tuples of arguments")
    if len(primals) != len(tangents):
        raise TypeError(f"{fname}: got {len(primals)} primals and {len(tangents)} tangents")
    cache = _cache_for(_jvp_caches, fun, has_aux)
    if cache.fast and not _builders:
        sig = _fast_signature(primals)
        if sig is not None and _fast_signature(tangents) == sig:
            hit = _replay_fast(cache, sig, tuple(primals) + tuple(tangents))
            if hit is not None:
                return _jvp_result(hit[0].trace, hit[1], has_aux)
    nums = tuple(range(len(primals)))
    a = _Args(tuple(primals), {}, nums, fname)
    t_vals = _check_tangents(primals, tangents, fname)
    if len(t_vals) != len(a.dyn):
        raise TypeError(f"{fname}: every primal leaf must be a float array or float")

    def build(trace):
        mask = [True] * len(a.dyn) + [False] * len(trace.captured)
        return jvp_oplist(trace.oplist, mask)

    def run(path):
        return path.kernels[0](*[x[()] if x.ndim == 0 else x for x in a.dyn],
                               *[t[()] if t.ndim == 0 else t for t in t_vals])

    if a.nested or any(isinstance(t, Tracer) for t in t_vals):
        trace = _Trace(fun, a, has_aux, fname)
        ol = build(trace)
        # inputs: primals, captured, then tangents
        results = inline(ol, list(a.dyn) + trace.captured + t_vals)
    else:
        cache.stats["calls"] += 1
        path, results = cache.lookup(a.key, run)
        if path is None:
            cache.stats["traces"] += 1
            trace = _Trace(fun, a, has_aux, fname)
            kernel = compile_oplist(build(trace))
            cache.stats["compiles"] += 1
            nres = trace.n_out + trace.n_aux
            path = _Path(trace, [kernel], nres + trace.n_out + trace.n_aux)
            cache.add(a.key, path)
            results = run(path)
            sig = _fast_signature(primals)
            if sig is not None and _fast_signature(tangents) == sig:
                cache.add_fast(sig, a.key)
        trace = path.trace
    return _jvp_result(trace, results, has_aux)


def _jvp_result(trace, results, has_aux):
    nres = trace.n_out + trace.n_aux
    out, aux = _unflatten_outputs(trace, results)
    t_out = tree_unflatten(trace.out_tree, results[nres:nres + trace.n_out])
    return (out, t_out, aux) if has_aux else (out, t_out)


# -- vjp --------------------------------------------------------------------------------------
_vjp_caches = weakref.WeakKeyDictionary()


def vjp(fun, *primals, has_aux=False):
    """Reverse mode: returns ``(fun(*primals), pullback)``; ``pullback(ct)`` gives one
    cotangent per primal (a tuple), for a cotangent ``ct`` shaped like the output.

    The forward pass runs once and keeps what the backward pass needs; each pullback call
    runs only the backward kernel. With ``has_aux=True`` returns ``(out, pullback, aux)``.

    >>> import numpy as np
    >>> out, pullback = vjp(np.multiply, np.array(2.0), np.array(3.0))
    >>> [float(c) for c in pullback(np.array(1.0))]
    [3.0, 2.0]
    """
    fname = f"vjp({getattr(fun, '__name__', 'fun')})"
    cache = _cache_for(_vjp_caches, fun, has_aux)
    if cache.fast and not has_aux and not _builders:
        sig = _fast_signature(primals)
        hit = _replay_fast(cache, sig, primals) if sig is not None else None
        if hit is not None:     # plain positional arrays: each argument is one leaf
            path, residuals = hit
            return _vjp_result(fname, path, residuals, has_aux, tuple)
    nums = tuple(range(len(primals)))
    a = _Args(tuple(primals), {}, nums, fname)
    diff = a.diff_mask(nums)

    def build(trace):
        return vjp_oplist(trace.oplist, diff + [False] * len(trace.captured),
                          n_seeded=trace.n_out)

    def run(path):
        return path.kernels[0](*[x[()] if x.ndim == 0 else x for x in a.dyn])

    if a.nested:
        trace = _Trace(fun, a, has_aux, fname)
        prog = build(trace)
        forward, backward = prog.split()
        residuals = inline(forward, list(a.dyn) + trace.captured)
        n_res = len(forward.outvars) - trace.n_out - trace.n_aux

        def backward_call(cts):
            return inline(backward, residuals[len(residuals) - n_res:] + cts)
    else:
        cache.stats["calls"] += 1
        path, residuals = cache.lookup(a.key, run)
        if path is None:
            cache.stats["traces"] += 1
            trace = _Trace(fun, a, has_aux, fname)
            forward, backward = build(trace).split()
            kernels = [compile_oplist(forward), compile_oplist(backward)]
            cache.stats["compiles"] += 2
            path = _Path(trace, kernels, len(forward.outvars))
            cache.add(a.key, path)
            residuals = run(path)
            sig = _fast_signature(primals)
            if sig is not None and not has_aux:
                cache.add_fast(sig, a.key)
        return _vjp_result(fname, path, residuals, has_aux,
                           lambda flat: a.per_argument(nums, flat))
    return _make_pullback(fname, trace, residuals, backward_call, has_aux,
                          lambda flat: a.per_argument(nums, flat))


def _vjp_result(fname, path, residuals, has_aux, regroup):
    trace = path.trace
    res_vals = list(residuals[trace.n_out + trace.n_aux:path.n_fixed])
    bwd = path.kernels[1]

    def backward_call(cts):
        return bwd(*res_vals, *[c[()] if type(c) is np.ndarray and c.ndim == 0 else c
                                for c in cts])
    return _make_pullback(fname, trace, residuals, backward_call, has_aux, regroup)


def _make_pullback(fname, trace, residuals, backward_call, has_aux, regroup):
    out, aux = _unflatten_outputs(trace, residuals)
    out_avals = trace.out_avals[:trace.n_out]

    def pullback(ct):
        ct_leaves, ct_tree = tree_flatten(ct)
        if ct_tree != trace.out_tree:
            raise TypeError(f"{fname}: the cotangent must have the structure of the output")
        vals = []
        for i, (c, (shape, dtype)) in enumerate(zip(ct_leaves, out_avals)):
            if np.shape(c) != tuple(shape):
                raise ValueError(f"{fname}: cotangent {i} has shape {np.shape(c)}, the "
                                 f"output has shape {tuple(shape)}")
            if not isinstance(c, Tracer):
                c = np.asarray(c)
                if c.dtype != dtype:
                    if c.dtype.kind not in "fiub":
                        raise TypeError(f"{fname}: cotangent {i} has dtype {c.dtype}")
                    c = c.astype(dtype)
            vals.append(c)
        return regroup(list(backward_call(vals)))

    return (out, pullback, aux) if has_aux else (out, pullback)


def cache_info(fun):
    """Counters of a transformed function's cache (calls, traces, compiles, guard misses)."""
    if hasattr(fun, "cache_info"):
        return fun.cache_info()
    result = {}
    for table, name in ((_jvp_caches, "jvp"), (_vjp_caches, "vjp")):
        try:
            for extra, c in table.get(fun, {}).items():
                result[name] = c.info()
        except TypeError:
            pass
    return result


# -- jit -------------------------------------------------------------------------------------
def jit(fun):
    """Compile ``fun`` itself (no derivative) with the same tracing, guards and cache.

    Useful to time a function against its derivatives, and as a fast primal. Inside another
    transform it simply traces through.

    >>> import numpy as np
    >>> print(jit(lambda x: np.sum(np.exp(x)))(np.zeros(3)))
    3.0
    """
    cache = _Cached()
    fname = f"jit({getattr(fun, '__name__', 'fun')})"

    @functools.wraps(fun)
    def jitted(*args, **kwargs):
        if _builders:
            return fun(*args, **kwargs)
        if cache.fast and not kwargs:
            hit = _replay_fast(cache, _fast_signature(args), args)
            if hit is not None:
                return _unflatten_outputs(hit[0].trace, hit[1])[0]
        a = _Args(args, kwargs, (), fname)
        cache.stats["calls"] += 1

        def run(path):
            return path.kernels[0](*[x[()] if x.ndim == 0 else x for x in a.dyn])

        path, results = cache.lookup(a.key, run)
        if path is None:
            cache.stats["traces"] += 1
            trace = _Trace(fun, a, False, fname)
            kernel = compile_oplist(trace.oplist)
            cache.stats["compiles"] += 1
            path = _Path(trace, [kernel], trace.n_out)
            cache.add(a.key, path)
            results = run(path)
            sig = _fast_signature(args)
            if sig is not None and not kwargs:
                cache.add_fast(sig, a.key)
        return _unflatten_outputs(path.trace, results)[0]

    jitted.cache_info = cache.info
    return jitted


# -- inspection -----------------------------------------------------------------------------
def make_oplist(fun, **kwargs_unused):
    """Return a function that traces ``fun`` on example arguments and returns its `OpList`
    (printable, like ``jax.make_jaxpr``). Array arguments become inputs; guards show the
    Python control-flow decisions the trace depends on.

    >>> import numpy as np
    >>> print(make_oplist(lambda x: np.sin(x) * 2.0)(np.ones(3)))   # doctest: +SKIP
    { lambda a:f64[3] .
        b:f64[3] = sin a
        c:f64[3] = mul b 2.0
      in (c) }
    """
    @functools.wraps(fun)
    def make(*args, **kwargs):
        fname = f"make_oplist({getattr(fun, '__name__', 'fun')})"
        a = _Args(args, kwargs, (), fname)
        return _Trace(fun, a, False, fname).oplist
    return make
