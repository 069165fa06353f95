"""Sparse Jacobians and Hessians: pattern, colouring, compressed sweeps, recovery.

``sparse_jacobian(f)(x)`` finds the pattern of df/dx from f's op list (`sparsity`),
colours columns (forward mode) or rows (reverse mode, when that takes fewer sweeps), and
computes the compressed Jacobian with one sweep per colour: the JVP (or VJP) program is
batched over the colours' seed vectors (`batching`), the seeds are constants of it, and the
whole is one program compiled and cached like any other (the primal runs once, the linear
part once per colour). The entries are then read off the compressed matrix.
``sparse_hessian`` does the same for forward over reverse, with a star colouring.

The pattern and colouring are computed once per traced path and kept with its kernel, so
they are reused while the signature and guards hold, and a path through another branch
gets its own.
"""
from __future__ import annotations

import functools

import numpy as np

from . import sparsity as sp
from .api import _check_compile, _mark, tiered
from .batching import NotBatchable, batch_oplist
from .dispatch import Args, Path, dispatcher_for, normalize_argnums
from .oplist import OpList, dead_code_elimination
from .transforms import jvp_oplist, vjp_oplist

__all__ = ["jacobian_sparsity", "hessian_sparsity", "sparse_jacobian", "sparse_hessian"]

_MODES = ("auto", "fwd", "rev")


def _result(rows, cols, values, shape):
    """A SciPy CSR array when SciPy is installed, else COO arrays."""
    try:
        import scipy.sparse
    except ImportError:
        return rows, cols, values, shape
    return scipy.sparse.csr_array((values, (rows, cols)), shape=shape)


def _setup(fun, args, argnums, fname):
    """(Args, the one differentiated leaf's position among the dynamic leaves)."""
    if not isinstance(argnums, int):
        raise TypeError(f"{fname}: argnums must be one int (one array argument)")
    normalize_argnums(argnums, len(args), fname)
    a = Args(args, {}, (argnums,), fname)
    if a.nested:
        raise NotImplementedError(f"{fname} inside another transform; use jacfwd / jacrev "
                                  f"there")
    if sum(a.diff) != 1:
        raise TypeError(f"{fname}: argument {argnums} must be one float array (got a pytree "
                        f"of {sum(a.diff)} arrays)")
    k = a.diff.index(True)
    if a.dyn[k].dtype.kind != "f":
        raise TypeError(f"{fname}: sparse derivatives need a real floating-point input")
    return a, k


def _check_trace(trace, fname, scalar=False):
    if trace.n_out != 1 or trace.n_aux:
        raise TypeError(f"{fname}: the function must return one array")
    shape, dtype = trace.out_avals[0]
    if np.dtype(dtype).kind != "f":
        raise TypeError(f"{fname}: the output must be a real floating-point array, got "
                        f"{np.dtype(dtype)}")
    if scalar and tuple(shape) != ():
        raise TypeError(f"{fname}: the Hessian needs a scalar output, got shape {shape}")


def _pattern_of(ol, k, out_index):
    """(rows, cols) of d out / d input k for op list ``ol``."""
    x = ol.invars[k]
    deps = sp.propagate(ol, {x: sp.Deps.identity(x.size, x.size)}, x.size)
    out = ol.outvars[out_index]
    d = deps.get(out)
    if d is None and out is x:
        d = sp.Deps.identity(x.size, x.size)
    if d is None:
        return np.zeros(0, np.int64), np.zeros(0, np.int64)
    return d.rows(), d.indices


def _gradient_program(trace, k):
    """primals -> gradient with respect to input k (the seed cotangent a constant)."""
    n_in = len(trace.oplist.invars)
    wrt = [i == k for i in range(n_in)]
    ol = vjp_oplist(trace.oplist, wrt, n_seeded=1).oplist.copy()
    ol.consts[ol.invars.pop()] = np.ones((), trace.out_avals[0][1])
    return _last_output(ol)


def _hessian_pattern(trace, k):
    rows, cols = _pattern_of(_gradient_program(trace, k), k, 0)
    rows, cols = np.concatenate([rows, cols]), np.concatenate([cols, rows])  # symmetric
    key = np.unique(rows * max(trace.oplist.invars[k].size, 1) + cols)
    n = max(trace.oplist.invars[k].size, 1)
    return key // n, key % n


def _compressed(ol, tangent_index, seeds, fname):
    """Op list: primals -> the outputs of linear program ``ol`` (inputs: primals, then one
    tangent or cotangent at ``tangent_index``) for each seed, stacked along axis 0."""
    n = len(ol.invars)
    mask = [i == tangent_index for i in range(n)]
    try:
        batched = batch_oplist(ol, mask, seeds.shape[0])
    except NotBatchable as e:
        raise NotImplementedError(f"{fname}: {e}") from None
    batched = batched.copy()
    seed_var = batched.invars.pop(tangent_index)
    batched.consts[seed_var] = seeds
    return batched


def _seed_matrix(colors, n_colors, shape, dtype):
    seeds = np.zeros((n_colors, colors.size), dtype)
    seeds[colors, np.arange(colors.size)] = 1
    return seeds.reshape((n_colors,) + tuple(shape))


class _Plan:
    """What a traced path needs to turn its kernel's compressed result into entries."""

    def __init__(self, rows, cols, shape, mode, colors, n_colors, src=None):
        self.rows, self.cols, self.shape, self.mode = rows, cols, shape, mode
        self.colors, self.n_colors, self.src = colors, n_colors, src
        if mode == "star":      # the position of each entry's transpose (keys are sorted)
            n = max(shape[0], 1)
            self.mirror = np.searchsorted(rows * n + cols, cols * n + rows)

    def entries(self, compressed):
        B = np.asarray(compressed).reshape(self.n_colors, -1)
        if self.mode == "fwd":                    # B[c, i] = sum over columns j of colour c
            return B[self.colors[self.cols], self.rows]
        if self.mode == "rev":                    # B[c, j] = sum over rows i of colour c
            return B[self.colors[self.rows], self.cols]
        src_row, src_col = self.src               # star colouring: B = (H S)^T
        values = B[src_col, src_row]
        lower = self.rows > self.cols             # one value per pair: exactly symmetric
        values[lower] = values[self.mirror[lower]]
        return values


def _last_output(prog):
    """``prog`` keeping only its last output (the derivative), dead code removed."""
    return dead_code_elimination(OpList(prog.invars, [prog.outvars[-1]], prog.ops,
                                        prog.consts, prog.guards))


def _plan_jacobian(trace, k, mode, fname):
    ol = trace.oplist
    x, out = ol.invars[k], ol.outvars[0]
    rows, cols = _pattern_of(ol, k, 0)
    shape = (out.size, x.size)
    if mode != "rev":
        col_colors, n_col = sp.color_columns(rows, cols, shape)
    if mode != "fwd":
        row_colors, n_row = sp.color_columns(cols, rows, shape[::-1])
    if mode == "auto":
        mode = "rev" if n_row < n_col else "fwd"
    n_in = len(ol.invars)
    wrt = [i == k for i in range(n_in)]
    if mode == "fwd":
        prog, colors, n, seed = jvp_oplist(ol, wrt), col_colors, max(n_col, 1), x
    else:
        prog = vjp_oplist(ol, wrt, n_seeded=1).oplist
        colors, n, seed = row_colors, max(n_row, 1), out
    seeds = _seed_matrix(colors, n, seed.shape, seed.dtype)
    program = _compressed(_last_output(prog), n_in, seeds, fname)
    return program, _Plan(rows, cols, shape, mode, colors, n)


def _plan_hessian(trace, k, fname):
    x = trace.oplist.invars[k]
    rows, cols = _hessian_pattern(trace, k)
    colors, n_colors = sp.star_coloring(rows, cols, x.size)
    n_colors = max(n_colors, 1)
    src = sp.recover_symmetric_positions(rows, cols, colors) if rows.size else \
        (rows, cols)
    if src is None:
        raise AssertionError("internal error: the star colouring does not determine the "
                             "Hessian")
    grad_ol = _gradient_program(trace, k)
    n_in = len(grad_ol.invars)
    prog = _last_output(jvp_oplist(grad_ol, [i == k for i in range(n_in)]))
    seeds = _seed_matrix(colors, n_colors, x.shape, x.dtype)
    program = _compressed(prog, n_in, seeds, fname)
    return program, _Plan(rows, cols, (x.size, x.size), "star", colors, n_colors, src)


def _sparse_transform(fun, argnums, kind, mode, compile, fname):
    _check_compile(compile, fname)
    if mode not in _MODES:
        raise ValueError(f"{fname}: mode must be one of {_MODES}, got {mode!r}")
    d = dispatcher_for(fun, ("sparse", kind, argnums, mode, compile), fname)

    @functools.wraps(fun)
    def sparse_fun(*args):
        a, k = _setup(fun, args, argnums, fname)

        def make(trace):
            _check_trace(trace, fname, scalar=(kind == "hessian"))
            if kind == "hessian":
                program, plan = _plan_hessian(trace, k, fname)
            else:
                program, plan = _plan_jacobian(trace, k, mode, fname)
            path = Path(trace, [tiered(program, d, f"sparse {kind}", compile)],
                        len(program.outvars))
            path.unpack = plan
            return path

        d.stats["calls"] += 1
        inputs = a.kernel_inputs()
        path, results, reason = d.lookup(a.key, inputs)
        if path is None:
            path = d.new_path(a, False, make, reason)
            if compile == "eager":
                path.compile_now(inputs)
            results = path.run(inputs)
        plan = last[0] = path.unpack
        return _result(plan.rows, plan.cols, plan.entries(results[0]), plan.shape)

    last = [None]       # the plan of the latest call

    def colors(*args):
        """The number of sweeps (colours) the call on ``args`` uses, and the mode."""
        sparse_fun(*args)
        return last[0].n_colors, last[0].mode

    wrapper = _mark(sparse_fun, d)
    wrapper.sweeps = colors
    return wrapper


def sparse_jacobian(fun, argnums=0, *, mode="auto", compile="auto"):
    """The Jacobian of ``fun`` (one array in, one array out) as a sparse matrix.

    The pattern comes from the op list (index-set propagation), columns (forward mode) or
    rows (reverse mode) that share no row or column are coloured alike, and one sweep per
    colour computes the compressed Jacobian. ``mode``: ``"auto"`` (fewer sweeps), ``"fwd"``
    or ``"rev"``. Returns a ``scipy.sparse.csr_array`` of shape ``(out.size, x.size)`` when
    SciPy is installed, else ``(rows, cols, values, shape)``. ``f.sweeps(*args)`` tells the
    number of sweeps and the mode a call uses.

    >>> import numpy as np
    >>> def f(x):
    ...     return x[1:] * x[:-1]          # each output reads two neighbours
    >>> J = sparse_jacobian(f)(np.arange(1.0, 5.0))
    >>> J.toarray()
    array([[2., 1., 0., 0.],
           [0., 3., 2., 0.],
           [0., 0., 4., 3.]])
    """
    fname = f"sparse_jacobian({getattr(fun, '__name__', 'fun')})"
    return _sparse_transform(fun, argnums, "jacobian", mode, compile, fname)


def sparse_hessian(fun, argnums=0, *, compile="auto"):
    """The Hessian of scalar ``fun`` of one array as a sparse symmetric matrix: the pattern
    of its gradient's Jacobian, a star colouring, and one forward-over-reverse sweep per
    colour. Returns what `sparse_jacobian` returns, shape ``(x.size, x.size)``.

    >>> import numpy as np
    >>> H = sparse_hessian(lambda x: np.sum((x[1:] - x[:-1] ** 2) ** 2))(np.ones(4))
    >>> H.toarray()
    array([[ 8., -4.,  0.,  0.],
           [-4., 10., -4.,  0.],
           [ 0., -4., 10., -4.],
           [ 0.,  0., -4.,  2.]])
    """
    fname = f"sparse_hessian({getattr(fun, '__name__', 'fun')})"
    return _sparse_transform(fun, argnums, "hessian", "auto", compile, fname)


def _pattern_transform(fun, argnums, kind, fname):
    from .dispatch import Trace

    @functools.wraps(fun)
    def pattern(*args):
        a, k = _setup(fun, args, argnums, fname)
        trace = Trace(fun, a, False, fname)
        _check_trace(trace, fname, scalar=(kind == "hessian"))
        x = trace.oplist.invars[k]
        if kind == "hessian":
            rows, cols = _hessian_pattern(trace, k)
            shape = (x.size, x.size)
        else:
            rows, cols = _pattern_of(trace.oplist, k, 0)
            shape = (trace.oplist.outvars[0].size, x.size)
        return _result(rows, cols, np.ones(rows.size, bool), shape)
    return pattern


def jacobian_sparsity(fun, argnums=0):
    """The sparsity pattern of ``fun``'s Jacobian at the given arguments, from its op list:
    a boolean ``scipy.sparse.csr_array`` (or ``(rows, cols, values, shape)`` without SciPy).
    Structural: it holds every entry that can be nonzero on this path.

    >>> import numpy as np
    >>> jacobian_sparsity(lambda x: x[1:] * x[:-1])(np.ones(3)).toarray()
    array([[ True,  True, False],
           [False,  True,  True]])
    """
    return _pattern_transform(fun, argnums, "jacobian",
                              f"jacobian_sparsity({getattr(fun, '__name__', 'fun')})")


def hessian_sparsity(fun, argnums=0):
    """The sparsity pattern of scalar ``fun``'s Hessian (symmetric), as `jacobian_sparsity`."""
    return _pattern_transform(fun, argnums, "hessian",
                              f"hessian_sparsity({getattr(fun, '__name__', 'fun')})")
