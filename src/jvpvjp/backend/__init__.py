"""Backends turn an op list into a kernel: ``kernel(*inputs) -> tuple of outputs``.

One interface, chosen by name: ``"numba"`` generates one Python function per op list,
compiles it with Numba (and caches it on disk); long scalar op lists go instead to
``"tape"``, one precompiled interpreter loop (no compile time per program), long array op
lists to ``"vtape"``, its counterpart over arrays; ``"numpy"``
interprets the op list with the primitives' NumPy implementations (no compile time; also
the reference in tests).

Jacobians have a second entry point, `compile_jacobian`: a first kernel computes what every
column (or row) shares, then a loop runs the linear part once per basis vector. Every
backend gets the generic loop, which calls two compiled kernels from Python; the Numba
backend compiles the loop itself, so a column costs its arithmetic and no dispatch.
"""
from __future__ import annotations

import functools

import numpy as np

from .. import config
from ..oplist import gc_paused


class InterpreterKernel:
    """Runs an op list with the primitives' NumPy implementations: no compile, no Numba.

    The op list is flattened once into (impl, argument slots, params) steps over one list
    of values, so a call pays a NumPy call per op and nothing else (no tracing machinery:
    `transforms.eval_oplist` does the same through `bind`, for inlining)."""

    def __init__(self, ol):
        self.oplist = ol
        slot = {v: i for i, v in enumerate(ol.invars)}
        self.consts = []
        for v, c in ol.consts.items():
            slot[v] = len(slot)
            self.consts.append(np.asarray(c))
        steps = []
        for op in ol.ops:
            ins = tuple(slot[v] for v in op.invars)
            # arity as a code: unary and binary ops without params skip building lists
            code = len(ins) if not op.params and len(ins) in (1, 2) else 0
            steps.append((code, op.prim.impl, ins[0] if ins else 0,
                          ins[1] if len(ins) > 1 else 0, ins, op.params))
            slot[op.outvar] = len(slot)
        self.steps = steps
        self.results = [slot[v] for v in list(ol.outvars) + [g.var for g in ol.guards]]
        self.n_in = len(ol.invars)

    def __call__(self, *args):
        env = [a if type(a) is np.ndarray else np.asarray(a) for a in args[:self.n_in]]
        env += self.consts
        append = env.append
        with np.errstate(all="ignore"):
            for code, impl, a, b, ins, params in self.steps:
                if code == 2:
                    append(impl(env[a], env[b]))
                elif code == 1:
                    append(impl(env[a]))
                else:
                    append(impl(*[env[i] for i in ins], **params))
        return tuple([env[i] for i in self.results])


_BACKENDS = {}


def register_backend(name, compile_fn):
    _BACKENDS[name] = compile_fn


@gc_paused
def compile_oplist(ol, backend=None):
    """Build ``ol`` on one backend; the kernel returns its outputs followed by its guard
    values. ``backend`` defaults to ``config.backend`` ("auto" means "numba" here: tiering
    is `tiers.Tiered`'s job). Long programs asked of "numba" go to a precompiled tape when
    one runs them, so they never become one giant Numba function."""
    name = backend or config.backend
    if name == "auto":
        name = "numba"
    if name in ("numba", "tape", "vtape", "rolled"):   # the NumPy interpreter stays the unrewritten reference
        ol = simplified(ol)
    if name == "numba" and len(ol.ops) >= config.tape_threshold:
        from . import tape
        if tape.supports(ol):      # long scalar program: the tape, repeats as compiled loops
            name = "rolled"
        elif len(ol.ops) > config.compile_max_ops:
            from . import vector_tape
            if vector_tape.supports(ol):
                name = "vtape"
    if name not in _BACKENDS and name in ("numba", "tape", "vtape", "rolled"):
        from . import numba_backend, rolled, tape, vector_tape  # noqa: F401  (they register themselves)
    try:
        return _BACKENDS[name](ol)
    except KeyError:
        raise ValueError(f"unknown backend {name!r}; choose one of "
                         f"{sorted(set(_BACKENDS) | {'auto', 'numba', 'tape', 'vtape', 'rolled'})}") from None


register_backend("numpy", InterpreterKernel)


def once_per_oplist(fn):
    """``fn(ol)`` computed once per op list object: a kernel that moves up the tiers is
    built from one op list several times (a tape, then compiled code). The result is kept
    on the op list itself, so it goes when the op list goes (a table beside it would keep
    both alive: results refer to their op lists)."""
    name = f"_once_{fn.__name__}"

    def wrapper(ol):
        result = ol.__dict__.get(name)
        if result is None:
            result = fn(ol)
            ol.__dict__[name] = result
        return result
    return functools.wraps(fn)(wrapper)


@once_per_oplist
def simplified(ol):
    """``simplify(ol)``; the same object for the same op list."""
    from ..simplify import simplify
    return simplify(ol)


def oplist_on_disk(ol):
    """Whether ``compile_oplist(ol, "numba")`` would load a Numba kernel from the disk
    cache rather than compile one (imports Numba: call it off the caller's thread)."""
    if not config.cache_dir:
        return False
    from . import numba_backend
    ol = simplified(ol)
    if len(ol.ops) >= config.tape_threshold:
        return False
    return numba_backend.on_disk(numba_backend.generate_source(ol, cache=True)[0])


class JacobianSpec:
    """How a Jacobian kernel seeds and collects its linear part.

    ``first`` returns ``n_known`` outputs (values and aux), then ``n_res`` residuals, then
    guard values. ``second`` takes the residuals and one seed per entry of ``seeds`` and
    returns one array per entry of ``results`` (``(shape, dtype)`` pairs). In forward mode
    the seeds are input tangents and the results output tangents: output k's Jacobian is
    ``(results[k].size, sum of seed sizes)``, one column per seed element. In reverse mode
    the seeds are output cotangents and the results input cotangents: output k's Jacobian
    is ``(seeds[k].size, sum of result sizes)``, one row per seed element.

    With ``block`` > 1, ``second`` is batched (`batching.batch_oplist`): every seed and
    result has a leading axis of ``block``, and one call handles ``block`` seed elements
    (the last block padded with zero seeds).
    """

    def __init__(self, mode, n_known, n_res, seeds, results, block=1):
        if mode not in ("fwd", "rev"):
            raise ValueError(f"mode must be 'fwd' or 'rev', got {mode!r}")
        self.mode, self.n_known, self.n_res, self.block = mode, n_known, n_res, block
        self.seeds = [(tuple(s), np.dtype(d)) for s, d in seeds]
        self.results = [(tuple(s), np.dtype(d)) for s, d in results]

    @property
    def n_seed_elements(self):
        return sum(int(np.prod(s, dtype=np.int64)) for s, _ in self.seeds)

    @property
    def outputs(self):
        """(shape, dtype) of the outputs whose Jacobians are built, and the column count."""
        rows = self.results if self.mode == "fwd" else self.seeds
        cols = self.seeds if self.mode == "fwd" else self.results
        return rows, sum(int(np.prod(s, dtype=np.int64)) for s, _ in cols)



class JacobianLoop:
    """The generic Jacobian kernel: the linear part called from Python once per seed.
    Returns ``(jacobians..., known outputs..., guard values...)``."""

    def __init__(self, first, second, spec):
        self.first, self.second, self.spec = first, second, spec

    def __call__(self, *args):
        spec = self.spec
        r = self.first(*args)
        known = list(r[:spec.n_known])
        res = list(r[spec.n_known:spec.n_known + spec.n_res])
        guards = list(r[spec.n_known + spec.n_res:])
        rows, ncols = spec.outputs
        jacs = [np.zeros((int(np.prod(s, dtype=np.int64)), ncols), d) for s, d in rows]
        if spec.block > 1:
            self._blocks(res, jacs)
        else:
            self._one_by_one(res, jacs)
        return tuple(jacs) + tuple(known) + tuple(guards)

    def _blocks(self, res, jacs):
        spec, bk = self.spec, self.spec.block
        seeds = [np.zeros((bk,) + s, d) for s, d in spec.seeds]
        flats = [x.reshape(bk, -1) for x in seeds]
        owner = np.repeat(np.arange(len(seeds)), [f.shape[1] for f in flats])
        start = np.concatenate([[0], np.cumsum([f.shape[1] for f in flats])])
        total = spec.n_seed_elements
        for c0 in range(0, total, bk):
            n = min(bk, total - c0)
            for cl in range(n):
                s = owner[c0 + cl]
                flats[s][cl, c0 + cl - start[s]] = 1
            outs = [np.reshape(o, (bk, -1)) for o in self.second(*res, *seeds)]
            if spec.mode == "fwd":
                for J, o in zip(jacs, outs):
                    J[:, c0:c0 + n] = o[:n].T
            else:
                block = np.concatenate(outs, axis=1) if outs else np.zeros((bk, 0))
                for cl in range(n):
                    k = owner[c0 + cl]
                    jacs[k][c0 + cl - start[k], :] = block[cl]
            for x in seeds:
                x[...] = 0

    def _one_by_one(self, res, jacs):
        spec = self.spec
        seeds = [np.zeros(s, d) for s, d in spec.seeds]

        def call():
            return self.second(*res, *[as_kernel_arg(x, x.shape) for x in seeds])

        for k, seed in enumerate(seeds):
            flat = seed.reshape(-1)
            for j in range(flat.size):
                flat[j] = 1
                outs = call()       # may return the seed itself (f(x) = x): read it first
                if spec.mode == "fwd":
                    col = sum(s.size for s in seeds[:k]) + j
                    for J, o in zip(jacs, outs):
                        J[:, col] = np.ravel(o)
                else:
                    jacs[k][j, :] = np.concatenate([np.ravel(o) for o in outs]) if outs \
                        else np.zeros(0)
                flat[j] = 0


_JACOBIAN_BACKENDS = {}


def register_jacobian_backend(name, compile_fn):
    _JACOBIAN_BACKENDS[name] = compile_fn


@gc_paused
def compile_jacobian(first, second, spec, backend=None):
    """A kernel for a Jacobian: ``kernel(*known inputs of first) -> (jacobians..., known
    outputs..., guard values...)``, one ``(rows, columns)`` matrix per output."""
    name = backend or config.backend
    if name == "auto":
        name = "numba"
    if name == "numba":
        from . import numba_backend  # noqa: F401  (registers itself)
    fn = _JACOBIAN_BACKENDS.get(name)
    if fn is not None:
        kernel = fn(first, second, spec)
        if kernel is not None:
            return kernel
    return JacobianLoop(compile_oplist(first, backend), compile_oplist(second, backend), spec)


def as_kernel_arg(x, shape):
    """Scalars go to kernels as NumPy scalars, arrays as arrays."""
    return x[()] if shape == () and isinstance(x, np.ndarray) else x
