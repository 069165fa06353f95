"""The public transforms: grad, value_and_grad, jvp, vjp, jit, make_oplist, stop_gradient.

Each transform is a thin wrapper over the function's `dispatch.Dispatcher` (one per
function and transform, shared by every wrapper): a call replays the newest path whose
environment and guards hold, else traces a new one, builds the transform's program and
wraps it in tiered kernels (`backend.tiers`). Called on traced values (inside another
transform), the derivative program is inlined into the enclosing trace instead, so
transforms nest.
"""
from __future__ import annotations

import functools

import numpy as np

from . import config
from .backend import compile_oplist, oplist_on_disk
from .backend.tiers import Tiered
from .dispatch import (Args, Path, Trace, dispatcher_for, fast_hit, fast_signature,
                       normalize_argnums, unflatten_outputs)
from .primitives import elementwise as _ew
from .pytree import tree_flatten, tree_unflatten
from .tracing import Tracer, tracing_active
from .transforms import inline, jvp_oplist, vjp_oplist

_COMPILE_MODES = ("auto", "eager", "never")


def _check_compile(compile, fname):
    if compile not in _COMPILE_MODES:
        raise ValueError(f"{fname}: compile must be one of {_COMPILE_MODES}, got {compile!r}")
    return compile


def tiered(ol, dispatcher, label, compile="auto"):
    """A `Tiered` kernel for op list ``ol``: interpreted at once, compiled when hot."""
    if compile == "never":
        return Tiered(lambda backend: compile_oplist(ol, "numpy"), [], label,
                      dispatcher.note, pinned="numpy")
    return Tiered(lambda backend: compile_oplist(ol, backend), [ol], label, dispatcher.note,
                  on_disk=lambda: oplist_on_disk(ol))


def _finish_call(d, path, a, inputs, compile, sig, fast_ok):
    """After a path was traced: compile it now if asked, register the fast signature."""
    if compile == "eager":
        path.compile_now(inputs)
    if sig is not None and fast_ok:
        d.add_fast(sig, a.key, a.leaves)


def _mark(wrapper, d):
    wrapper.cache_info = d.info
    wrapper._dispatcher = lambda: d
    wrapper._jvpvjp_key = ("transformed", id(d)) if d.key is None else d.key
    return wrapper


def stop_gradient(x):
    """The value of ``x`` with a zero derivative (PyTorch's ``detach``), for any pytree.

    >>> print(grad(lambda x: x * stop_gradient(x))(3.0))   # d/dx [x * c] with c = 3
    3.0
    """
    leaves, tree = tree_flatten(x)
    return tree_unflatten(tree, [_ew.stop_gradient(v) if isinstance(v, Tracer) else v
                                 for v in leaves])


# -- value_and_grad / grad ------------------------------------------------------------------
def value_and_grad(fun=None, argnums=0, has_aux=False, *, compile="auto", holomorphic=False):
    """Return a function computing ``(fun(*args), gradient)`` in reverse mode.

    ``argnums`` (int or tuple) selects the differentiated positional arguments (pytrees of
    float arrays); ``fun`` must return a real scalar (or ``(scalar, aux)`` with
    ``has_aux=True``, giving ``((value, aux), gradient)``). ``compile``: ``"auto"`` (run
    new code at once on an interpreter, compile it in the background when it is hot),
    ``"eager"`` (compile before the first call returns) or ``"never"`` (interpret only).

    Complex inputs follow JAX's convention: for a real-valued ``fun`` of ``z = x + iy`` the
    gradient is ``df/dx - i df/dy`` (so ``grad(lambda z: abs(z) ** 2)(3 + 4j) == 6 - 8j``).
    ``holomorphic=True`` takes the complex derivative ``f'(z)`` of a complex-valued ``fun``
    of complex inputs.

    >>> import numpy as np
    >>> f = value_and_grad(lambda x: np.sum(x ** 2))
    >>> value, g = f(np.array([1.0, 2.0]))
    >>> print(value, g)
    5.0 [2. 4.]
    """
    if fun is None:
        return functools.partial(value_and_grad, argnums=argnums, has_aux=has_aux,
                                 compile=compile, holomorphic=holomorphic)
    return _value_and_grad(fun, argnums, has_aux, compile, True, holomorphic)


def check_holomorphic(trace, a, holomorphic, fname, what):
    """JAX's rules for complex values: complex outputs only with ``holomorphic=True``,
    which needs complex differentiated inputs."""
    outs = [np.dtype(dt) for _, dt in trace.out_avals[:trace.n_out]]
    if holomorphic:
        bad = [v.dtype for v, d in zip(a.dyn, a.diff) if d and v.dtype.kind != "c"]
        if bad:
            raise TypeError(f"{fname}: holomorphic=True needs complex differentiated inputs, "
                            f"got dtype {bad[0]}")
        if any(dt.kind != "c" for dt in outs):
            raise TypeError(f"{fname}: holomorphic=True needs complex outputs, got dtype "
                            f"{next(dt for dt in outs if dt.kind != 'c')}")
    elif any(dt.kind == "c" for dt in outs):
        raise TypeError(f"{fname}: {what} of a complex output needs holomorphic=True (the "
                        f"complex derivative of a holomorphic function); for a real-valued "
                        f"function take np.real or np.abs of the output")


def _value_and_grad(fun, argnums, has_aux, compile, with_value, holomorphic=False):
    fname = f"value_and_grad({getattr(fun, '__name__', 'fun')})"
    _check_compile(compile, fname)
    nums_key = argnums if isinstance(argnums, int) else tuple(argnums)
    d = dispatcher_for(fun, ("value_and_grad", nums_key, has_aux, compile, holomorphic),
                       fname)
    fast_grads = {}     # number of arguments -> slice or order of the gradients
    fast_ok = not has_aux
    one = isinstance(argnums, int)

    def build(a, diff):
        def make(trace):
            if trace.n_out != 1 or trace.out_avals[0][0] != ():
                shapes = [s for s, _ in trace.out_avals[:trace.n_out]]
                got = ('shape ' + str(shapes[0]) if len(shapes) == 1
                       else str(trace.n_out) + ' outputs')
                raise TypeError(f"{fname}: grad requires a scalar output, but the function "
                                f"returned {got}; use jvp/vjp (or jacfwd/jacrev) for "
                                f"non-scalar outputs")
            check_holomorphic(trace, a, holomorphic, fname, "grad")
            if np.dtype(trace.out_avals[0][1]).kind not in "fc":
                raise TypeError(f"{fname}: grad requires a real floating-point output, got "
                                f"dtype {trace.out_avals[0][1]}")
            prog = vjp_oplist(trace.oplist, diff + [False] * len(trace.captured), n_seeded=1)
            # the seed cotangent is always one: a constant of the program (simplify folds
            # it away), not an argument passed on every call
            ol = prog.oplist.copy()
            ol.consts[ol.invars.pop()] = np.ones((), trace.out_avals[0][1])
            return Path(trace, [tiered(ol, d, "value_and_grad", compile)],
                        1 + trace.n_aux + sum(diff))
        return make

    def gradients_of(results, nargs):
        how = fast_grads.get(nargs)
        if how is None:     # gradients come in argument order, not argnums order
            _, nums = normalize_argnums(argnums, nargs, fname)
            order = [sorted(set(nums)).index(n) for n in nums]
            how = fast_grads[nargs] = slice(1, 1 + len(order)) \
                if order == list(range(len(order))) else [1 + i for i in order]
        if type(how) is slice:
            return results[how] if type(results) is tuple else tuple(results[how])
        return tuple([results[i] for i in how])

    fast = d.fast

    @functools.wraps(fun)
    def value_and_grad_fun(*args, **kwargs):
        table = fast.get(config.backend)
        if table is not None and not kwargs and fast_ok:
            hit = fast_hit(table, args)
            if hit is not None:
                results = hit[1]
                if one:
                    return (results[0], results[1]) if with_value else results[1]
                how = fast_grads.get(len(args))
                if type(how) is slice:
                    g = results[how] if type(results) is tuple else tuple(results[how])
                else:
                    g = gradients_of(results, len(args))
                return (results[0], g) if with_value else g
        single, nums = normalize_argnums(argnums, len(args), fname)
        a = Args(args, kwargs, nums, fname)
        diff = a.diff
        if a.nested:
            trace = Trace(fun, a, has_aux, fname)
            check_holomorphic(trace, a, holomorphic, fname, "grad")
            prog = vjp_oplist(trace.oplist, diff + [False] * len(trace.captured), n_seeded=1)
            seed = np.ones((), trace.out_avals[0][1])
            results = inline(prog.oplist, list(a.dyn) + trace.captured + [seed])
        else:
            d.stats["calls"] += 1
            inputs = a.kernel_inputs()
            path, results, reason = d.lookup(a.key, inputs)
            if path is None:
                path = d.new_path(a, has_aux, build(a, diff), reason)
                _finish_call(d, path, a, inputs, compile, fast_signature(args),
                             fast_ok and not kwargs)
                results = path.run(inputs)
            trace = path.trace
        value, aux = unflatten_outputs(trace, results)
        grads = list(results[trace.n_out + trace.n_aux:trace.n_out + trace.n_aux + sum(diff)])
        per_arg = a.per_argument(nums, grads)
        g = per_arg[0] if single else per_arg
        if not with_value:
            return (g, aux) if has_aux else g
        return ((value, aux), g) if has_aux else (value, g)

    wrapper = _mark(value_and_grad_fun, d)
    if not with_value:
        wrapper._jvpvjp_key = ("grad",) + wrapper._jvpvjp_key
    return wrapper


def grad(fun=None, argnums=0, has_aux=False, *, compile="auto", holomorphic=False):
    """Return a function computing the gradient of scalar-valued ``fun`` (reverse mode).

    Works as a decorator (``@grad``, ``@grad(argnums=(0, 1))``). With ``has_aux=True``
    ``fun`` returns ``(scalar, aux)`` and the gradient function returns ``(grad, aux)``.
    ``compile`` and ``holomorphic`` (complex values) as for `value_and_grad`.

    >>> import numpy as np
    >>> grad(lambda x: np.sum(np.sin(x)))(np.array([0.0, np.pi]))
    array([ 1., -1.])
    """
    if fun is None:
        return functools.partial(grad, argnums=argnums, has_aux=has_aux, compile=compile,
                                 holomorphic=holomorphic)
    return _value_and_grad(fun, argnums, has_aux, compile, False, holomorphic)


# -- jvp --------------------------------------------------------------------------------------
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
            if isinstance(t, Tracer) or _dtype(t).kind not in "fc" or \
                    _dtype(t).kind == "c" and pd.kind != "c":
                raise TypeError(f"{fname}: {what} {i} has dtype {_dtype(t)}, its "
                                f"primal has dtype {pd}")
            t = t.astype(pd)
        out.append(t)
    return out


def _dtype(x):
    return x.dtype if isinstance(x, (Tracer, np.ndarray, np.generic)) else np.asarray(x).dtype


def jvp(fun, primals=None, tangents=None, *, has_aux=False, compile="auto"):
    """Forward mode: ``(fun(*primals), J @ tangents)``, JAX's signature.

    ``primals`` and ``tangents`` are tuples (one entry per positional argument) of the same
    pytree structure, shapes and float dtypes. Called with only ``fun``, returns
    ``f_jvp(primals, tangents)``. With ``has_aux=True`` returns ``(out, t_out, aux)``.
    ``compile`` as for `value_and_grad`; the cache belongs to ``fun``, so repeated
    ``jvp(f, ...)`` calls reuse it.

    >>> import numpy as np
    >>> jvp(np.sin, (np.array([0.0, 1.0]),), (np.array([1.0, 1.0]),))
    (array([0.        , 0.84147098]), array([1.        , 0.54030231]))
    """
    if primals is None:
        return functools.partial(jvp, fun, has_aux=has_aux, compile=compile)
    fname = f"jvp({getattr(fun, '__name__', 'fun')})"
    if not isinstance(primals, (tuple, list)) or not isinstance(tangents, (tuple, list)):
        raise TypeError(f"{fname}: primals and tangents must be tuples of arguments")
    if len(primals) != len(tangents):
        raise TypeError(f"{fname}: got {len(primals)} primals and {len(tangents)} tangents")
    d = dispatcher_for(fun, ("jvp", has_aux, compile), fname)
    if d.fast and not tracing_active():
        sig = fast_signature(primals)
        if sig is not None and fast_signature(tangents) == sig:
            hit = d.replay_fast(sig, tuple(primals) + tuple(tangents))
            if hit is not None:
                return _jvp_result(hit[0].trace, hit[1], has_aux)
    _check_compile(compile, fname)
    nums = tuple(range(len(primals)))
    a = Args(tuple(primals), {}, nums, fname)
    t_vals = _check_tangents(primals, tangents, fname)
    if len(t_vals) != len(a.dyn):
        raise TypeError(f"{fname}: every primal leaf must be a float array or float")

    def program(trace):
        mask = [True] * len(a.dyn) + [False] * len(trace.captured)
        return jvp_oplist(trace.oplist, mask)

    def make(trace):
        nres = trace.n_out + trace.n_aux
        return Path(trace, [tiered(program(trace), d, "jvp", compile)],
                    nres + trace.n_out + trace.n_aux)

    if a.nested or any(isinstance(t, Tracer) for t in t_vals):
        trace = Trace(fun, a, has_aux, fname)
        results = inline(program(trace), list(a.dyn) + trace.captured + t_vals)
    else:
        d.stats["calls"] += 1
        inputs = a.kernel_inputs() + [t[()] if t.ndim == 0 else t for t in t_vals]
        path, results, reason = d.lookup(a.key, inputs)
        if path is None:
            path = d.new_path(a, has_aux, make, reason)
            sig = fast_signature(primals)
            _finish_call(d, path, a, inputs, compile, sig,
                         sig is not None and fast_signature(tangents) == sig)
            results = path.run(inputs)
        trace = path.trace
    return _jvp_result(trace, results, has_aux)


def _jvp_result(trace, results, has_aux):
    nres = trace.n_out + trace.n_aux
    out, aux = unflatten_outputs(trace, results)
    t_out = tree_unflatten(trace.out_tree, results[nres:nres + trace.n_out])
    return (out, t_out, aux) if has_aux else (out, t_out)


# -- vjp --------------------------------------------------------------------------------------
def vjp(fun, *primals, has_aux=False, compile="auto"):
    """Reverse mode: returns ``(fun(*primals), pullback)``; ``pullback(ct)`` gives one
    cotangent per primal (a tuple), for a cotangent ``ct`` shaped like the output.

    The forward pass runs once and keeps what the backward pass needs; each pullback call
    runs only the backward kernel. With ``has_aux=True`` returns ``(out, pullback, aux)``.
    ``compile`` and ``holomorphic`` (complex values) as for `value_and_grad`.

    >>> import numpy as np
    >>> out, pullback = vjp(np.multiply, np.array(2.0), np.array(3.0))
    >>> [float(c) for c in pullback(np.array(1.0))]
    [3.0, 2.0]
    """
    fname = f"vjp({getattr(fun, '__name__', 'fun')})"
    d = dispatcher_for(fun, ("vjp", has_aux, compile), fname)
    if d.fast and not has_aux and not tracing_active():
        sig = fast_signature(primals)
        hit = d.replay_fast(sig, primals) if sig is not None else None
        if hit is not None:     # plain positional arrays: each argument is one leaf
            path, residuals = hit
            return _vjp_result(fname, path, residuals, has_aux, tuple)
    _check_compile(compile, fname)
    nums = tuple(range(len(primals)))
    a = Args(tuple(primals), {}, nums, fname)
    diff = a.diff

    def program(trace):
        return vjp_oplist(trace.oplist, diff + [False] * len(trace.captured),
                          n_seeded=trace.n_out)

    def make(trace):
        forward, backward = program(trace).split()
        return Path(trace, [tiered(forward, d, "vjp forward", compile),
                            tiered(backward, d, "vjp backward", compile)],
                    len(forward.outvars))

    if a.nested:
        trace = Trace(fun, a, has_aux, fname)
        forward, backward = program(trace).split()
        residuals = inline(forward, list(a.dyn) + trace.captured)
        n_res = len(forward.outvars) - trace.n_out - trace.n_aux

        def backward_call(cts):
            return inline(backward, residuals[len(residuals) - n_res:] + cts)
        return _make_pullback(fname, trace, residuals, backward_call, has_aux,
                              lambda flat: a.per_argument(nums, flat))
    d.stats["calls"] += 1
    inputs = a.kernel_inputs()
    path, residuals, reason = d.lookup(a.key, inputs)
    if path is None:
        path = d.new_path(a, has_aux, make, reason)
        _finish_call(d, path, a, inputs, compile, fast_signature(primals), not has_aux)
        residuals = path.run(inputs)
    return _vjp_result(fname, path, residuals, has_aux,
                       lambda flat: a.per_argument(nums, flat))


def _vjp_result(fname, path, residuals, has_aux, regroup):
    trace = path.trace
    res_vals = list(residuals[trace.n_out + trace.n_aux:path.n_fixed])
    bwd = path.kernels[1]

    def backward_call(cts):
        return bwd.call(*res_vals, *[c[()] if type(c) is np.ndarray and c.ndim == 0 else c
                                     for c in cts])
    result = _make_pullback(fname, trace, residuals, backward_call, has_aux, regroup)
    # what the forward pass keeps for the backward pass (checkpoint makes it smaller)
    result[1].residual_bytes = sum(getattr(r, "nbytes", 8) for r in res_vals)
    return result


def _make_pullback(fname, trace, residuals, backward_call, has_aux, regroup):
    out, aux = unflatten_outputs(trace, residuals)
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


def cache_info(fun, transform=None):
    """Counters of a transformed function's cache (calls, traces, compiles, guard misses,
    signatures, paths). For `jvp` and `vjp`, which take the function itself, pass ``fun``
    and ``transform="jvp"`` or ``"vjp"``."""
    if transform is None and hasattr(fun, "cache_info"):
        return fun.cache_info()
    result = {}
    for name in ((transform,) if transform else ("jvp", "vjp")):
        for has_aux in (False, True):
            d = dispatcher_for(fun, (name, has_aux, "auto"), name)
            if d.stats["calls"]:
                result[name] = d.info()
    return result


# -- jit -------------------------------------------------------------------------------------
def jit(fun=None, *, compile="auto"):
    """Compile ``fun`` itself (no derivative) with the same tracing, guards, tiers and cache.

    Useful to time a function against its derivatives, and as a fast primal. Inside another
    transform it simply traces through. ``compile="eager"`` compiles before the first call
    returns (what a benchmark wants); ``"auto"`` starts on an interpreter.

    >>> import numpy as np
    >>> print(jit(lambda x: np.sum(np.exp(x)))(np.zeros(3)))
    3.0
    """
    if fun is None:
        return functools.partial(jit, compile=compile)
    fname = f"jit({getattr(fun, '__name__', 'fun')})"
    _check_compile(compile, fname)
    d = dispatcher_for(fun, ("jit", compile), fname)

    def make(trace):
        return Path(trace, [tiered(trace.oplist, d, "jit", compile)], trace.n_out)

    @functools.wraps(fun)
    def jitted(*args, **kwargs):
        if tracing_active():
            return fun(*args, **kwargs)
        if d.fast and not kwargs:
            hit = d.replay_args(args)
            if hit is not None:
                return unflatten_outputs(hit[0].trace, hit[1])[0]
        a = Args(args, kwargs, (), fname)
        d.stats["calls"] += 1
        inputs = a.kernel_inputs()
        path, results, reason = d.lookup(a.key, inputs)
        if path is None:
            path = d.new_path(a, False, make, reason)
            _finish_call(d, path, a, inputs, compile, fast_signature(args), not kwargs)
            results = path.run(inputs)
        return unflatten_outputs(path.trace, results)[0]

    return _mark(jitted, d)


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
        a = Args(args, kwargs, (), fname)
        return Trace(fun, a, False, fname).oplist
    return make
