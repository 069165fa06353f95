"""Gradient checking and Hypothesis strategies for users' own tests.

`check_grads` compares ``<u, J v>`` computed three ways: forward mode (`jvp`), reverse
mode (`vjp`) and central finite differences, in random directions ``u`` and ``v``; with
``order=2`` it checks the derivative functions themselves the same way.
"""
from __future__ import annotations

import contextlib

import numpy as np

from . import config
from .api import jvp, vjp
from .pytree import tree_flatten, tree_unflatten


@contextlib.contextmanager
def use_backend(name):
    """Temporarily run transforms on backend ``name`` ("numba", "numpy", "tape", "vtape", "rolled")."""
    old = config.backend
    config.backend = name
    try:
        yield
    finally:
        config.backend = old


def _as_number_array(x):
    x = np.asarray(x)
    return x.astype(np.complex128 if x.dtype.kind == "c" else np.float64)


def _inner(a, b):
    """Re(sum(a * b)): the pairing under which a VJP is the transpose of its JVP (JAX's
    convention for complex values; the dot product for real ones)."""
    la, _ = tree_flatten(a)
    lb, _ = tree_flatten(b)
    return float(sum(np.real(np.sum(_as_number_array(x) * _as_number_array(y)))
                     for x, y in zip(la, lb)))


def _norm(a):
    la, _ = tree_flatten(a)
    return float(sum(np.sum(np.abs(_as_number_array(x)) ** 2) for x in la)) ** 0.5


def _random_like(tree, rng):
    def draw(x):
        dt = np.result_type(x)
        v = rng.standard_normal(np.shape(x))
        if dt.kind == "c":
            v = v + 1j * rng.standard_normal(np.shape(x))
        return np.asarray(v, dtype=dt) if np.ndim(x) else dt.type(v)
    leaves, td = tree_flatten(tree)
    return tree_unflatten(td, [draw(x) for x in leaves])


def _axpy(a, x, y):
    lx, td = tree_flatten(x)
    ly, _ = tree_flatten(y)
    return tree_unflatten(td, [np.asarray(yi + a * xi, dtype=np.result_type(yi))
                               for xi, yi in zip(lx, ly)])


def numerical_jvp(f, args, tangents, eps=1e-6):
    """Central finite difference of ``f`` at ``args`` along ``tangents``."""
    plus = f(*_axpy(eps, tangents, args))
    minus = f(*_axpy(-eps, tangents, args))
    lp, td = tree_flatten(plus)
    lm, _ = tree_flatten(minus)
    return tree_unflatten(td, [(_as_number_array(p) - _as_number_array(m)) / (2 * eps)
                               for p, m in zip(lp, lm)])


def check_grads(f, args, order=1, modes=("fwd", "rev"), atol=1e-6, rtol=1e-5, eps=1e-6,
                seed=0, backend=None):
    """Check ``f``'s derivatives at ``args`` (a tuple) against finite differences.

    For random ``v`` (shaped like ``args``) and ``u`` (shaped like the output), checks
    ``<u, jvp(f)(v)>``, ``<vjp(f)(u), v>`` and the finite-difference value agree; forward
    and reverse must also agree with each other to tight tolerance. ``order=2`` repeats the
    check on the derivative functions. Raises ``AssertionError`` naming what differs.

    >>> import numpy as np
    >>> check_grads(lambda x: np.sin(x) * x, (np.linspace(0.1, 1, 4),), order=2)
    """
    args = tuple(args)
    if backend is not None:
        with use_backend(backend):
            return check_grads(f, args, order, modes, atol, rtol, eps, seed)
    rng = np.random.default_rng(seed)
    v = _random_like(args, rng)
    out = f(*args)
    u = _random_like(out, rng)
    fd = _inner(u, numerical_jvp(f, args, v, eps))
    scale = atol + rtol * (abs(fd) + _norm(u) * _norm(v))
    results = {}
    if "fwd" in modes:
        primal_out, t_out = jvp(f, args, v)
        _assert_close(primal_out, out, "jvp primal output", atol, rtol)
        results["fwd"] = _inner(u, t_out)
    if "rev" in modes:
        primal_out, pullback = vjp(f, *args)
        _assert_close(primal_out, out, "vjp primal output", atol, rtol)
        results["rev"] = _inner(pullback(u), v)
    for mode, val in results.items():
        if not abs(val - fd) <= scale:
            raise AssertionError(f"{mode}-mode derivative {val!r} differs from finite "
                                 f"differences {fd!r} (tolerance {scale:.3g})")
    if "fwd" in results and "rev" in results:
        tight = 1e-9 * (1 + abs(results["fwd"])) if np.result_type(
            *tree_flatten(args)[0]) in (np.float64, np.complex128) else scale
        if not abs(results["fwd"] - results["rev"]) <= tight + 1e-3 * scale:
            raise AssertionError(f"forward {results['fwd']!r} and reverse {results['rev']!r} "
                                 f"disagree: <u, J v> identity broken")
    if order > 1:
        if "fwd" in modes:
            def f_jvp(*a):
                return jvp(f, a, v)[1]
            check_grads(f_jvp, args, order - 1, modes, atol, rtol, eps, seed + 1)
        if "rev" in modes:
            def f_vjp(*a):
                return vjp(f, *a)[1](u)
            check_grads(f_vjp, args, order - 1, modes, atol, rtol, eps, seed + 2)


def _assert_close(a, b, what, atol, rtol):
    la, ta = tree_flatten(a)
    lb, tb = tree_flatten(b)
    if ta != tb:
        raise AssertionError(f"{what}: structure {ta} differs from {tb}")
    for x, y in zip(la, lb):
        if np.shape(x) != np.shape(y):
            raise AssertionError(f"{what}: shape {np.shape(x)} differs from {np.shape(y)}")
        np.testing.assert_allclose(_as_number_array(x), _as_number_array(y),
                                   rtol=max(rtol, 1e-6), atol=atol, err_msg=what)


# -- Hypothesis strategies --------------------------------------------------------------------
def floats_in(low, high, avoid=None, gap=0.1):
    """Finite floats in ``[low, high]``, at least ``gap`` away from ``avoid``."""
    from hypothesis import strategies as st
    s = st.floats(low, high, allow_nan=False, allow_infinity=False)
    if avoid is not None:
        s = s.filter(lambda x: abs(x - avoid) >= gap)
    return s


def arrays_in(shape, low=-2.0, high=2.0, avoid=None, gap=0.1, dtype=np.float64):
    """Arrays of ``shape`` with elements from `floats_in`."""
    from hypothesis.extra import numpy as hnp
    return hnp.arrays(dtype, shape, elements=floats_in(low, high, avoid, gap)
                      .map(lambda x: float(np.asarray(x, dtype))))


def broadcastable_shapes(num_shapes, max_dims=3, max_side=3):
    """Tuples of ``num_shapes`` mutually broadcastable shapes."""
    from hypothesis.extra import numpy as hnp
    return hnp.mutually_broadcastable_shapes(num_shapes=num_shapes, max_dims=max_dims,
                                             max_side=max_side).map(lambda r: r.input_shapes)


def case_arguments(case, shapes=None):
    """A strategy of argument tuples for a registry test ``Case``."""
    from hypothesis import strategies as st
    n = len(case.domain)
    if shapes is None:
        shapes = broadcastable_shapes(n) if case.shapes == "broadcast" else st.just(case.shapes)
    else:
        shapes = st.just(shapes)

    def one(shape, lo, hi):
        if not getattr(case, "unique", False):
            return arrays_in(shape, lo, hi, case.avoid, case.gap)
        size = int(np.prod(shape, dtype=np.int64))
        # distinct elements: a random ranking plus a jitter inside each rank's slot
        return st.tuples(st.permutations(range(size)), arrays_in((size,), 0.1, 0.9)).map(
            lambda pj: (lo + (hi - lo) * (np.asarray(pj[0]) + pj[1]) / size).reshape(shape))

    def draw_args(shape_tuple):
        return st.tuples(*[one(s, lo, hi) for s, (lo, hi) in zip(shape_tuple, case.domain)])

    args = shapes.flatmap(draw_args)
    if case.distinct:
        args = args.filter(lambda a: bool(np.all(np.abs(a[0] - a[1]) >= case.gap)))
    return args


FIXED_SHAPES = {1: ((2, 3),), 2: ((2, 3), (3,)), 3: ((2, 1), (2, 3), (3,))}


def fixed_case_arguments(case, rng, shapes=None, scalar=False):
    """Argument arrays for a registry test ``Case`` on fixed shapes (``shapes``, the case's
    own, or broadcasting ones: `FIXED_SHAPES`, or all scalars), drawn from ``rng`` inside
    the case's domain and away from its singular points."""
    n = len(case.domain)
    if shapes is None:
        shapes = case.shapes if case.shapes != "broadcast" else (
            ((),) * n if scalar else FIXED_SHAPES[n])
    args = []
    for s, (lo, hi) in zip(shapes, case.domain):
        x = rng.uniform(lo, hi, size=s)
        if case.unique:
            x = (lo + (hi - lo) * (rng.permutation(x.size) + 0.5) / max(x.size, 1)).reshape(s)
        if case.avoid is not None:
            x = np.where(np.abs(x - case.avoid) < case.gap, case.avoid + case.gap * 1.5, x)
        args.append(np.asarray(x, np.float64))
    if case.distinct:
        args[1] = args[1] + np.where(np.abs(args[0] - args[1]) < case.gap, 3 * case.gap, 0.0)
    return tuple(args)
