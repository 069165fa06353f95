"""Whole Jacobians: jacfwd, jacrev, hessian.

Design notes
------------
* A Jacobian is the linear part of a derivative program run once per basis vector. The JVP
  (or VJP) op list is split by `partial_eval` into what does not depend on the seed (the
  primal and every factor derived from it, computed once) and the linear part (run per
  column in forward mode, per row in reverse mode). `compile_jacobian` compiles both and, on
  the Numba backend, the loop over seeds too: one call, no per-column dispatch.
* The linear part is batched (`batching`) over a block of seeds, so a block of columns costs
  one pass: a matrix-vector product per column becomes a matrix-matrix product per block.
* Inside another transform the loop is unrolled into the enclosing trace, so Jacobians
  nest: ``hessian(f) = jacfwd(jacrev(f))`` traces the inner reverse sweep (one row for a
  scalar ``f``) and compiles the outer forward loop over it.
* Results follow JAX: output k's Jacobian with respect to input leaf l has shape
  ``out_shape + in_shape``, arranged as the output pytree of (per-argnum) input pytrees.
"""
from __future__ import annotations

import functools

import numpy as np

from . import config
from .api import _check_compile, _finish_call, _mark
from .backend import JacobianSpec, compile_jacobian
from .backend.tiers import Tiered
from .batching import NotBatchable, batch_oplist
from .dispatch import (Args, Path, Trace, dispatcher_for, fast_signature, normalize_argnums,
                       unflatten_outputs)
from .oplist import OpList, dead_code_elimination
from .pytree import _LEAF, tree_unflatten
from .tracing import tracing_active
from .transforms import inline, jvp_oplist, partial_eval, vjp_oplist


def _programs(trace, diff, mode, batch=True, values=True):
    """(first, second, spec, compiled) for the Jacobian of ``trace`` in ``mode``; ``second``
    batched over blocks of seeds when ``batch`` and its ops allow. ``compiled`` is the
    ``second`` to compile: products with the seeds gathered instead of computed (see
    `batching.batch_oplist`'s ``one_hot``); ``second`` itself stays within what every tier
    runs (the vector tape has no integer positions) and is the reference in tests. Without
    ``values`` (no aux wanted), ``first`` returns only the residuals: the function's own
    outputs are neither returned nor, unless the rest reads them, computed."""
    n_out, n_aux = trace.n_out, trace.n_aux
    n_in = len(trace.oplist.invars)
    wrt = diff + [False] * (n_in - len(diff))
    diff_vars = [v for v, w in zip(trace.oplist.invars, wrt) if w]
    outs = trace.oplist.outvars[:n_out]
    if mode == "fwd":
        ol = jvp_oplist(trace.oplist, wrt)
        # keep the tangents of the outputs, not of aux
        ol = OpList(ol.invars, ol.outvars[:n_out + n_aux] +
                    ol.outvars[n_out + n_aux:n_out + n_aux + n_out], ol.ops, ol.consts,
                    ol.guards)
        seeds = [(v.shape, v.dtype) for v in diff_vars]
        results = [(v.shape, v.dtype) for v in outs]
    else:
        ol = vjp_oplist(trace.oplist, wrt, n_seeded=n_out).oplist
        seeds = [(v.shape, v.dtype) for v in outs]
        results = [(v.shape, v.dtype) for v in diff_vars]
    known = [True] * n_in + [False] * len(seeds)
    first, second = partial_eval(ol, known, n_out + n_aux)
    n_known = n_out + n_aux
    if not values:
        first = dead_code_elimination(OpList(first.invars, first.outvars[n_known:],
                                             first.ops, first.consts, first.guards))
        n_known = 0
    spec = JacobianSpec(mode, n_known, len(first.outvars) - n_known, seeds, results)
    block = _block_size(second, spec) if batch else 1
    compiled = second
    if block > 1:
        n_res = spec.n_res
        batched = [False] * n_res + [True] * len(seeds)
        try:
            compiled = batch_oplist(second, batched, block,
                                    one_hot=range(n_res, n_res + len(seeds)))
            second = batch_oplist(second, batched, block)
            spec.block = block
        except NotBatchable:
            compiled = second
    return first, second, spec, compiled


def _block_size(second, spec):
    """Seed elements per call of the linear part: as many as keep its largest value under
    `config.jacobian_block_elements` elements (at most `MAX_BLOCK`), or 1 (one call per
    seed)."""
    total = spec.n_seed_elements
    if total < 4 or not second.ops:
        return 1
    largest = max([op.outvar.size for op in second.ops] + [1])
    cap = int(min(total, MAX_BLOCK, max(1, config.jacobian_block_elements // largest)))
    n_blocks = -(-total // cap)
    return -(-total // n_blocks)     # equal blocks: the last one is (nearly) full


MAX_BLOCK = 256


def _check_outputs(trace, fname, a=None, holomorphic=False):
    from .api import check_holomorphic
    if a is not None:
        check_holomorphic(trace, a, holomorphic, fname, "a Jacobian")
        if not holomorphic and any(v.dtype.kind == "c" for v, d in zip(a.dyn, a.diff) if d):
            raise TypeError(f"{fname}: the Jacobian with respect to a complex input needs "
                            f"holomorphic=True")
    for i, (shape, dtype) in enumerate(trace.out_avals[:trace.n_out]):
        if np.dtype(dtype).kind not in ("fc" if holomorphic else "f"):
            raise TypeError(f"{fname}: output {i} has dtype {np.dtype(dtype)}; Jacobians need "
                            f"real floating-point outputs")


def _unpacker(trace, a, nums, single, diff):
    """A function from the per-output (rows, columns) matrices to JAX's pytree layout."""
    in_shapes = [np.shape(v) for v, d in zip(a.dyn, diff) if d]
    sizes = [int(np.prod(s, dtype=np.int64)) for s in in_shapes]
    offsets = np.cumsum([0] + sizes).tolist()
    out_shapes = [tuple(s) for s, _ in trace.out_avals[:trace.n_out]]
    one_leaf = len(in_shapes) == 1
    if one_leaf and single and len(out_shapes) == 1 and trace.out_tree == _LEAF and \
            a.trees[nums[0]] == _LEAF:
        shape = out_shapes[0] + in_shapes[0]      # one array in, one array out
        return lambda jacs: jacs[0].reshape(shape)

    def unpack(jacs):
        entries = []
        for J, oshape in zip(jacs, out_shapes):
            if one_leaf:
                blocks = [J.reshape(oshape + in_shapes[0])]
            else:
                blocks = [J[:, lo:hi].reshape(oshape + s)
                          for lo, hi, s in zip(offsets[:-1], offsets[1:], in_shapes)]
            per_arg = a.per_argument(nums, blocks)
            entries.append(per_arg[0] if single else per_arg)
        return tree_unflatten(trace.out_tree, entries)
    return unpack


def _nested(trace, a, diff, mode):
    """The Jacobian recorded into the enclosing trace: the seed loop unrolled."""
    first, second, spec, _ = _programs(trace, diff, mode, batch=False)
    r = inline(first, list(a.dyn) + trace.captured)
    known, res = r[:spec.n_known], r[spec.n_known:spec.n_known + spec.n_res]
    seeds = [np.zeros(s, d) for s, d in spec.seeds]
    lines = []      # per seed element: the second program's outputs
    for seed in seeds:
        flat = seed.reshape(-1)
        for j in range(flat.size):
            flat[j] = 1
            lines.append(inline(second, res + [s.copy() for s in seeds]))
            flat[j] = 0
    rows, ncols = spec.outputs
    jacs = []
    if mode == "fwd":
        for k, (shape, dtype) in enumerate(rows):
            cols = [np.reshape(line[k], (-1,)) for line in lines]
            jacs.append(np.stack(cols, axis=1) if cols else
                        np.zeros((int(np.prod(shape, dtype=np.int64)), 0), dtype))
    else:
        start = 0
        for k, (shape, dtype) in enumerate(rows):
            size = int(np.prod(shape, dtype=np.int64))
            mine = lines[start:start + size]
            start += size
            rows_k = [np.concatenate([np.reshape(g, (-1,)) for g in line]) if line else
                      np.zeros(0, dtype) for line in mine]
            jacs.append(np.stack(rows_k, axis=0) if rows_k else np.zeros((0, ncols), dtype))
    return jacs, known


def _jacobian_transform(fun, argnums, has_aux, mode, fname, compile="auto",
                        holomorphic=False):
    _check_compile(compile, fname)
    nums_key = argnums if isinstance(argnums, int) else tuple(argnums)
    d = dispatcher_for(fun, ("jacobian", mode, nums_key, has_aux, compile, holomorphic), fname)

    def build(a, nums, single, diff):
        def make(trace):
            _check_outputs(trace, fname, a, holomorphic)
            first, second, spec, compiled = _programs(trace, diff, mode, values=has_aux)
            if compile == "never":
                kernel = Tiered(lambda b: compile_jacobian(first, second, spec, "numpy"), [],
                                f"{mode} Jacobian", d.note, pinned="numpy")
            else:
                kernel = Tiered(lambda b: compile_jacobian(
                    first, compiled if b == "numba" else second, spec, b),
                    [first, second], f"{mode} Jacobian", d.note)
            path = Path(trace, [kernel], trace.n_out + spec.n_known)
            path.unpack = _unpacker(trace, a, nums, single, diff)
            return path
        return make

    @functools.wraps(fun)
    def jac_fun(*args, **kwargs):
        if d.fast and not kwargs and not has_aux and not tracing_active():
            hit = d.replay_args(args)
            if hit is not None:
                path, results = hit
                return path.unpack(results[:path.trace.n_out])
        single, nums = normalize_argnums(argnums, len(args), fname)
        a = Args(args, kwargs, nums, fname)
        diff = a.diff
        if a.nested:
            trace = Trace(fun, a, has_aux, fname)
            _check_outputs(trace, fname, a, holomorphic)
            jacs, known = _nested(trace, a, diff, mode)
            unpack = _unpacker(trace, a, nums, single, diff)
        else:
            d.stats["calls"] += 1
            inputs = a.kernel_inputs()
            path, results, reason = d.lookup(a.key, inputs)
            if path is None:
                path = d.new_path(a, has_aux, build(a, nums, single, diff), reason)
                _finish_call(d, path, a, inputs, compile, fast_signature(args),
                             not kwargs and not has_aux)
                results = path.run(inputs)
            trace, unpack = path.trace, path.unpack
            jacs, known = results[:trace.n_out], results[trace.n_out:]
        jac = unpack(jacs)
        if has_aux:
            return jac, unflatten_outputs(trace, list(known))[1]
        return jac

    return _mark(jac_fun, d)


def jacfwd(fun, argnums=0, has_aux=False, *, compile="auto", holomorphic=False):
    """The Jacobian of ``fun`` in forward mode: one JVP column per input element.

    Cheaper than `jacrev` when there are fewer inputs than outputs. Output k's Jacobian
    with respect to an input leaf of shape ``s`` has shape ``out_shape + s``; with a tuple
    ``argnums`` each output gets a tuple, one entry per argument (JAX's layout). With
    ``has_aux=True`` ``fun`` returns ``(out, aux)`` and the result is ``(jacobian, aux)``.
    ``holomorphic=True``: the complex Jacobian of a holomorphic ``fun`` of complex inputs
    (without it, complex inputs and outputs raise, as in JAX).

    >>> import numpy as np
    >>> jacfwd(lambda x: np.sin(x) * x[0])(np.array([1.0, 2.0]))
    array([[ 1.38177329,  0.        ],
           [ 0.90929743, -0.41614684]])
    """
    fname = f"jacfwd({getattr(fun, '__name__', 'fun')})"
    return _jacobian_transform(fun, argnums, has_aux, "fwd", fname, compile, holomorphic)


def jacrev(fun, argnums=0, has_aux=False, *, compile="auto", holomorphic=False):
    """The Jacobian of ``fun`` in reverse mode: one forward pass, then one VJP row per
    output element (cheaper than `jacfwd` when there are fewer outputs than inputs).
    Same arguments and layout as `jacfwd`.

    >>> import numpy as np
    >>> jacrev(lambda x: np.sum(x ** 2))(np.array([1.0, 2.0]))
    array([2., 4.])
    """
    fname = f"jacrev({getattr(fun, '__name__', 'fun')})"
    return _jacobian_transform(fun, argnums, has_aux, "rev", fname, compile, holomorphic)


def hessian(fun, argnums=0, has_aux=False, *, compile="auto"):
    """The Hessian of scalar ``fun``: forward over reverse, ``jacfwd(jacrev(fun))``.

    The reverse sweep is traced once into the forward-mode Jacobian program, which is
    compiled with its loop over input directions. Shape ``in_shape + in_shape``.

    >>> import numpy as np
    >>> hessian(lambda x: x[0] ** 2 * x[1])(np.array([1.0, 3.0]))
    array([[6., 2.],
           [2., 0.]])
    """
    return jacfwd(jacrev(fun, argnums, has_aux), argnums, has_aux, compile=compile)


def hvp(fun, primals, tangents):
    """Hessian-vector product of scalar ``fun``: ``H(primals) @ tangents`` without forming
    H, as forward mode over the reverse-mode gradient (one sweep of each).

    ``primals`` and ``tangents`` are tuples with one entry per positional argument (pytrees
    of float arrays), as for `jvp`; all arguments are differentiated. The result is what
    JAX's recipe ``jvp(grad(f, argnums), primals, tangents)[1]`` gives: for one argument
    its pytree, for several a tuple with one entry per argument.

    >>> import numpy as np
    >>> hvp(lambda x: np.sum(x ** 3), (np.array([1.0, 2.0]),), (np.array([1.0, 0.0]),))
    array([6., 0.])
    """
    from .api import grad, jvp
    if not isinstance(primals, (tuple, list)) or not isinstance(tangents, (tuple, list)):
        raise TypeError("hvp: primals and tangents must be tuples of arguments")
    argnums = 0 if len(primals) == 1 else tuple(range(len(primals)))
    gradient = grad(fun, argnums=argnums)
    return jvp(gradient, tuple(primals), tuple(tangents))[1]
