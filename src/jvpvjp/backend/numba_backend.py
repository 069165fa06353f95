"""Generate one Numba function per op list.

Design notes
------------
* The generated code is array-level NumPy that Numba compiles: every op becomes one line
  from its primitive's ``lower`` rule. Values of shape ``()`` are Numba scalars.
* Elementwise ops whose result is read once by another elementwise op are inlined into it,
  so a chain like ``tanh(x * w + b)`` is one array expression, which Numba fuses into a
  single loop. From rank ``config.loop_rank`` on, elementwise ops become explicit loop
  nests instead; consecutive ones of one shape share a nest, and sums of their values
  accumulate inside it. Matmul goes to BLAS; reductions and scatter to small cached
  helpers; large transcendental ops and reductions to NumPy, from object mode.
* Array constants are passed as arguments (never printed into the source), scalar constants
  are typed literals (so float32 programs stay float32).
* The source is written to ``config.cache_dir`` under the hash of its text and compiled
  under that file's name, so Numba's ``cache=True`` keeps the machine code across
  processes. Files are written atomically (temporary file + rename); a file whose text
  differs from the source is rewritten, never trusted (see "the disk cache" below).
"""
from __future__ import annotations

import hashlib
import importlib.util
import math
import os
import re
import sys
import tempfile
import threading
import warnings
from collections import Counter

import numpy as np

from numba.core.errors import NumbaError

from .. import config
from ..primitives import flat_as, typed
from ..simplify import simplify
from . import InterpreterKernel, register_backend, register_jacobian_backend
from .numba_helpers import HELPERS
from .opaque import register_for
from .vmath import FUNCTIONS as VMATH

def _dtype_name(dtype):
    return "bool_" if dtype == np.bool_ else dtype.name


def _element(op, args):
    """The expression of one element of ``op`` inside a loop nest."""
    loop = op.prim.loop
    if callable(loop):
        return loop(args, op)
    if loop is not None and op.outvar.dtype.kind == "f":
        return loop.format(*args)
    if not op.prim.fuses:
        return op.prim.scalar.format(*args)
    return op.prim.lower(args, op)


def _result_layout(op, layout):
    name = op.prim.name
    if name == "transpose":
        src = layout.get(op.invars[0], "C")
        if op.params["perm"] == (1, 0) and src in "CF":
            return "F" if src == "C" else "C"
        return "A"
    if name == "broadcast_to":
        return "A"
    return "C"


def _blas():
    """Whether Numba's ``@`` may be used: it calls BLAS through SciPy, and raises an
    ImportError at compile time without it."""
    if config.numba_blas is not None:
        return config.numba_blas
    return importlib.util.find_spec("scipy") is not None


def _numpy_expression(op, args, expr):
    """The NumPy call for a large op better left to NumPy (run from object mode), or None."""
    out, name = op.outvar, op.prim.name
    if _array_loop(op, args) is not None:
        return None
    if name == "matmul" and not _blas():
        ops = [f"np.swapaxes({a}, -1, -2)" if op.params.get(t, False) else a
               for a, t in zip(args, ("ta", "tb"))]
        return f"np.ascontiguousarray(np.matmul({ops[0]}, {ops[1]}), dtype=np.{out.dtype.name})"
    if out.dtype.kind != "f" or op.invars[0].size < config.numpy_ufunc_threshold:
        return None
    cast = f"dtype=np.{out.dtype.name}"
    # transcendental ufuncs that NumPy runs several times faster than Numba's scalar loops
    # (the Numba wheels have no SVML), and reductions (NumPy's pairwise SIMD loops beat
    # Numba's strictly ordered ones): on large arrays they call NumPy from object mode
    if op.prim.numpy_faster and out.ndim > 0:
        return f"np.ascontiguousarray({expr}, {cast})"
    if op.prim.numpy_name is not None:
        call = f"{op.prim.numpy_name}({args[0]}, axis={op.params['axes']!r})"
        if out.ndim == 0:
            return f"np.{out.dtype.name}({call})"
        return f"np.ascontiguousarray({call}, {cast})"
    return None


def _array_loop(op, args):
    """The primitive's compiled whole-array loop for ``op`` outside loop nests, or None."""
    if op.prim.array_loop and op.outvar.dtype.kind == "f" and op.outvar.ndim > 0:
        return op.prim.array_loop.format(*args)
    return None


def _literal(value):
    """A scalar constant as kernel text of its dtype (bare where Numba types the literal
    so: float64, int64; see `primitives.typed`)."""
    value = np.asarray(value)
    if value.dtype == np.bool_:
        return repr(bool(value))
    name = value.dtype.name
    v = value.item()
    if value.dtype.kind == "f":
        if math.isnan(v):
            return typed("np.nan", value.dtype)
        if math.isinf(v):
            return typed(f"{'-' if v < 0 else ''}np.inf", value.dtype)
        return typed(repr(v), value.dtype)
    if value.dtype == np.int64:
        return f"({v!r})"
    return f"np.{name}({v!r})"


# -- loop nests ---------------------------------------------------------------------------
# Elementwise ops (and casts) over arrays of rank >= config.loop_rank, and the sums,
# products, maxima and minima of such values, are computed inside explicit loop nests, one
# nest per pass over an iteration space. The plan is a schedule by stages: an op joins the
# nest of its inputs unless it reads a reduction (or any value) that is only complete after
# that nest, in which case it runs in the next pass. So producer -> reduction chains and
# sibling reductions over one space share one loop, and elementwise consumers of a
# reduction's result fuse into the next pass (as XLA's loop fusion does). A value read by a
# later pass is stored, or recomputed there when that costs less than storing and loading
# it (`Primitive.cost`; at most _RECOMPUTE units of work per element).
_RECOMPUTE = 3
# A reduction along the innermost loop of a nest keeps this many partial results, one per
# position modulo _LANES, so that the loop has no serial dependence and LLVM vectorises
# it (exp, log, ... inside it included, see `vmath`); the partials are combined in order
# at the end. The order is fixed by the shapes alone: results are deterministic.
_LANES = 16
# Intermediate arrays of at least _SCRATCH_MIN bytes that only loop nests, products and
# reductions read are scratch arrays kept across calls (one set per thread, at most _SCRATCH_BYTES per
# kernel): large fresh allocations cost a page fault per 4 KiB page on first touch here
# (about 3 us each), while each extra kernel argument costs Numba's dispatcher about
# 0.1 us, more than a small allocation.
_SCRATCH_MIN = 32 << 10
_SCRATCH_BYTES = 64 << 20


def _accumulates(op):
    """A reduction computed inside the loop nest over its operand."""
    x = op.invars[0] if op.invars else None
    return (op.prim.accumulate is not None and op.outvar.dtype.kind == "f"
            and x is not None and x.dtype == op.outvar.dtype
            and x.ndim >= max(1, config.loop_rank))


def _contraction(op, arrays=("a", "b"), idx=("j0", "j1"), out="t"):
    """The lines computing one element of a product inside a loop nest (its primitive's
    ``loop`` rule), or None when the product is better left to BLAS."""
    if op.prim.kind != "product" or not callable(op.prim.loop):
        return None
    return op.prim.loop(list(arrays), op, list(idx), out)


def _cost(op):
    """One element's cost, in adds."""
    if op.prim.kind == "product":         # a multiply-add per element of the contraction
        a = op.invars[0].shape
        return 2 * (a[-2] if op.params.get("ta") else a[-1])
    return op.prim.cost


def _loop_space(op, consts):
    """The iteration space (a shape) of the loop nest ``op`` is computed in, or None."""
    if op.prim.kind == "reduction":
        return op.invars[0].shape if _accumulates(op) else None
    if op.prim.kind == "product":
        return op.outvar.shape if _contraction(op) is not None else None
    out = op.outvar
    if not op.prim.in_loops or out.ndim < max(1, config.loop_rank):
        return None
    if op.prim.whole_operands and op.prim.view_index is not None and op.prim.view_index(
            op, [f"j{d}" for d in range(out.ndim)], consts) is not None:
        return None           # read through where it is read (`through_views`), never built
    if op.prim.numpy_faster and out.size >= config.numpy_ufunc_threshold and \
            out.dtype.kind == "f" and (op.prim.loop is None or op.prim.array_loop):
        return None           # NumPy's SIMD loop, from object mode (see _numpy_expression),
        #                       or the primitive's own whole-array loop (_array_loop)
    return out.shape


def _reads_whole(op, k):
    """Whether a loop nest computing ``op`` reads its operand k whole, not where it writes
    (a product's operands, a gather's source): complete before the nest."""
    return op.prim.kind == "product" or k in op.prim.whole_operands


def _plan(ol, producer_index):
    """(stage of each op, loop space of each op or None). An op outside loops runs at the
    stage its inputs are complete; a loop op at the stage its nest can start; a loop op's
    result is complete one stage later (after its nest)."""
    ops = ol.ops
    stage, space, done = [0] * len(ops), [None] * len(ops), {}
    for i, op in enumerate(ops):
        sp = _loop_space(op, ol.consts)
        space[i] = sp
        st = 0
        for k, v in enumerate(op.invars):
            p = producer_index.get(v)
            if sp is not None and p is not None and space[p] == sp and \
                    not _reads_whole(op, k) and ops[p].prim.kind != "reduction":
                st = max(st, stage[p])          # fused into the same nest (or a later one)
            else:
                st = max(st, done.get(v, 0))
        stage[i] = st
        done[op.outvar] = st + (sp is not None)
    return stage, space


class Scratch(tuple):
    """An argument of a generated kernel that its caller provides: a work array of this
    (shape, dtype), allocated zeroed once and reused across calls (one per thread, see
    `NumbaKernel`)."""
    __slots__ = ()

    def allocate(self):
        return np.zeros(self[0], self[1])


class Out(tuple):
    """An argument of a generated kernel that receives output ``position`` (shape, dtype,
    position): small array results are written into arrays the caller passes, as Numba
    takes about 0.4 us to allocate and box each array it returns (see `NumbaKernel`)."""
    __slots__ = ()


_OUT_MAX = 4096      # elements: larger outputs are `Out` arguments only when a loop nest
#                      stores them there directly (a copy into one would cost a pass)


def generate_source(ol, name="kernel", cache=True, scratch=True, outputs=True):
    """(source, array constants in argument order) for op list ``ol``. With ``scratch``,
    intermediate arrays that only loops, products and reductions read are not allocated
    by the kernel: they are trailing `Scratch` arguments, listed after the constants. With
    ``outputs``, small array outputs are written into trailing `Out` arguments, listed
    last; the kernel returns the other outputs, in order."""
    names = {}
    for i, v in enumerate(ol.invars):
        names[v] = f"x{i}"
    array_consts = []
    for v, c in ol.consts.items():
        if v.shape == ():
            names[v] = _literal(c)
        else:
            names[v] = f"k{len(array_consts)}"
            array_consts.append(np.ascontiguousarray(c))
    ops = ol.ops
    for i, op in enumerate(ops):
        names[op.outvar] = f"v{i}"

    uses = {}
    consumers = {}
    for i, op in enumerate(ops):
        for v in op.invars:
            uses[v] = uses.get(v, 0) + 1
            consumers.setdefault(v, []).append(i)
    pinned = set(ol.outvars) | {g.var for g in ol.guards}
    index = {op.outvar: i for i, op in enumerate(ops)}
    stage, space = _plan(ol, index)
    in_loop = [sp is not None for sp in space]
    pointwise = [in_loop[i] and op.prim.kind != "reduction" for i, op in enumerate(ops)]
    # Ops run by NumPy from object mode take named arguments computed in compiled code
    # rather than NumPy temporaries built in object mode.
    to_numpy = {i for i, op in enumerate(ops) if not in_loop[i]
                and _numpy_expression(op, ["_"] * len(op.invars), "_")}
    # Memory layout of each array value as Numba types it: "C", "F" or "A" (any).
    layout = {v: "C" for v in list(ol.invars) + list(ol.consts)}

    # single-use elementwise results outside loops folded into the expression reading them
    inlined = {}
    for i, op in enumerate(ops):
        out = op.outvar
        if in_loop[i] or i in to_numpy or not op.prim.fusible or uses.get(out, 0) != 1 \
                or out in pinned or _array_loop(op, ["_"]):
            continue
        c = consumers[out][0]
        if ops[c].prim.fusible and c not in to_numpy:
            inlined[out] = op
    scalars = {}     # var -> name of its scalar inside the current loop nest
    seen_through = {}    # (view, its indices) -> its operand's indices (`through_views`)

    def render(v, out_shape=None):
        """Expression for v; with out_shape, as a scalar inside loops over out_shape."""
        op = inlined.get(v)
        if op is not None:
            args = [render(a, out_shape) for a in op.invars]
            return op.prim.lower(args, op) if out_shape is None else _element(op, args)
        if out_shape is not None and v in scalars:
            return scalars[v]
        if out_shape is None or v.shape == ():
            return names[v]
        lead = len(out_shape) - len(v.shape)
        idx = [f"j{lead + d}" if n == out_shape[lead + d] and n != 1 else "0"
               for d, n in enumerate(v.shape)]
        v, idx = through_views(v, idx)
        return f"{names[v]}[{', '.join(idx)}]" if idx else names[v]

    def through_views(v, idx):
        """The value a loop reads for element ``idx`` of ``v``, and where: views and gathers
        of constant positions computed outside loops are looked through
        (`Primitive.view_index`), not built."""
        while True:
            i = index.get(v)
            if i is None or in_loop[i] or v in inlined or ops[i].prim.view_index is None:
                return v, idx
            x = ops[i].invars[0]
            if x.dtype != v.dtype or x in scalars or x in inlined:
                return v, idx
            key = (v, tuple(idx))         # (a value is read at the same indices many times)
            if key not in seen_through:
                seen_through[key] = ops[i].prim.view_index(ops[i], idx, ol.consts)
            if seen_through[key] is None:
                return v, idx
            v, idx = x, seen_through[key]

    # -- which loop values each nest computes, and which are stored ------------------------
    nests = {}                       # (stage, space) -> op indices computed there
    for i in range(len(ops)):
        if in_loop[i]:
            nests.setdefault((stage[i], space[i]), []).append(i)
    stored = {i for i in range(len(ops)) if pointwise[i] and ops[i].outvar in pinned}
    for i, op in enumerate(ops):      # read outside loops, or by a nest of another space
        for k, v in enumerate(op.invars):     # (or whole)
            p = index.get(v)
            if p is not None and pointwise[p] and (not in_loop[i] or space[i] != space[p]
                                                   or _reads_whole(op, k)):
                stored.add(p)

    def chain(p, have):
        """The ops to compute again in a nest computing ``have`` to have p there, or None
        if that costs more than _RECOMPUTE."""
        todo, cost = [p], _cost(ops[p])
        for v in ops[p].invars:
            q = index.get(v)
            if q is not None and pointwise[q] and q not in have and q not in stored:
                sub = chain(q, have)
                if sub is None:
                    return None
                todo += sub
                cost += sum(_cost(ops[r]) for r in sub)
        return todo if cost <= _RECOMPUTE else None

    computed = {key: set(members) for key, members in nests.items()}
    for key in sorted(nests, key=lambda k: (k[0], nests[k][0])):
        for i in sorted(computed[key]):
            for k, v in enumerate(ops[i].invars):
                if _reads_whole(ops[i], k):
                    continue                    # (stored: complete before the nest)
                p = index.get(v)
                if p is None or not pointwise[p] or p in computed[key] or p in stored:
                    continue
                again = chain(p, computed[key])
                if again is None:
                    stored.add(p)
                else:
                    computed[key].update(again)

    def needed(key):
        """The ops of a nest whose values are used: stored, reductions, or read there."""
        want = set()
        for i in sorted(computed[key], reverse=True):
            if i in stored or not pointwise[i] or i in want:
                want.add(i)
            if i in want:
                for v in ops[i].invars:
                    p = index.get(v)
                    if p is not None and p in computed[key]:
                        want.add(p)
        return sorted(want)

    # Where code runs, in the order it is written: a stage's ops outside loops, in op
    # order, then its loop nests, in `order`. A scratch array is free again once every
    # reader of its value has run (`last_read`), for a later nest to reuse.
    order = sorted(nests, key=lambda k: (k[0], nests[k][0]))
    members_of = {key: needed(key) for key in order}
    at_of = {key: (key[0], 1, n) for n, key in enumerate(order)}
    runs_at = {}
    for key in order:
        for i in members_of[key]:
            runs_at.setdefault(i, []).append(at_of[key])

    def positions(i):
        out = ops[i].outvar
        if out in inlined:                  # evaluated where its one reader is
            return positions(consumers[out][0])
        return runs_at.get(i, []) if in_loop[i] else [(stage[i], 0, i)]

    def last_read(i):
        return max((p for c in consumers.get(ops[i].outvar, []) for p in positions(c)),
                   default=(-1,))

    def only_loops_read(i):
        """Whether op i's value may live in scratch: no output, and read only by ops whose
        results never alias their operands (loop nests, products, reductions: they write
        new arrays), so no result of the kernel ever aliases it."""
        return ops[i].outvar not in pinned and all(
            in_loop[c] or ops[c].prim.kind in ("product", "reduction")
            for c in consumers.get(ops[i].outvar, []))

    # A large array output computed element by element may take the array of a value of
    # its shape and dtype that dies in the same nest (`donor`): read there only at the
    # element being computed, and only before the output's element is stored. The
    # donor's array is then allocated new, not scratch (it leaves the kernel), and the
    # output needs no array of its own: one fresh array fewer to fill per call, and one
    # pass reads and writes the same memory (a softmax's gradient: 2.6 -> 2.0 ms at 1e6).
    donor, donors = {}, set()
    for key in order:
        here, members = at_of[key], members_of[key]
        for i in members:
            out = ops[i].outvar
            if i not in stored or out not in pinned or out.size <= _OUT_MAX or \
                    out.shape != key[1]:
                continue
            for v in dict.fromkeys(v for c in members if c <= i for v in ops[c].invars):
                p = index.get(v)
                if p is None or p in computed[key] or p not in stored or p in donors or \
                        not only_loops_read(p) or v in inlined or \
                        (v.shape, v.dtype) != (out.shape, out.dtype):
                    continue
                # (a product or a gather reads operands anywhere, not at the element
                # computed)
                if last_read(p) <= here and all(
                        c <= i and not any(_reads_whole(ops[c], k) for k, u in
                                           enumerate(ops[c].invars) if u is v)
                        for c in consumers.get(v, []) if c in members):
                    donor[i] = p
                    donors.add(p)
                    break

    body = []
    passes = 0
    work = []                 # Scratch specs, in argument order
    busy = []                 # per scratch array: where its current value is last read
    work_bytes = [0]
    # Array outputs are written into trailing `Out` arguments (see below): the small ones,
    # and large ones a loop nest computes over their own shape. A loop value that is one is
    # stored there directly, not into an array of its own copied there at the end:
    # out_slot[var] is the position of its first Out argument. (Callers reuse Out arrays
    # across calls when nothing else holds them: a large output then costs no fresh
    # memory, whose first touch costs a page fault per 4 KiB here.) A donor of a large
    # output (above) is stored in the output's Out argument.
    out_slot, slots = {}, 0
    for v in list(ol.outvars) + [g.var for g in ol.guards]:
        p = index.get(v)
        if outputs and v.shape != () and (v.size <= _OUT_MAX or (
                p is not None and pointwise[p] and space[p] == v.shape)):
            out_slot.setdefault(v, slots)
            slots += 1
    donee_slot = {p: out_slot[ops[i].outvar] for i, p in donor.items()
                  if ops[i].outvar in out_slot}
    direct = set()            # the outputs stored directly

    def array(target, shape, dtype, fill=None, internal=False, at=None, until=None):
        """The line(s) giving ``target`` an array: a scratch one if ``internal``, else new.
        A scratch array whose last reader came before ``at`` (the position of the nest
        asking) is reused; ``target``'s value is last read at ``until``."""
        size = int(np.prod(shape, dtype=np.int64)) * np.dtype(dtype).itemsize
        if scratch and internal and _SCRATCH_MIN <= size:
            spec = Scratch((tuple(shape), np.dtype(dtype)))
            free = [k for k, w in enumerate(work) if w == spec and busy[k] < at]
            if free:
                k = free[0]
            elif work_bytes[0] + size <= _SCRATCH_BYTES:
                work_bytes[0] += size
                work.append(spec)
                busy.append(None)
                k = len(work) - 1
            else:
                k = None
            if k is not None:
                busy[k] = until
                line = f"    {target} = w{k}"
                return line + (f"\n    {target}.fill({fill})" if fill is not None else "")
        if fill is not None:
            return f"    {target} = _full({tuple(shape)!r}, {fill})"
        return f"    {target} = _empty({tuple(shape)!r}, {_dtype_name(np.dtype(dtype))!r})"

    def emit_nest(key):
        nonlocal passes
        members = members_of[key]
        if not members:
            return
        shape = key[1]
        here = at_of[key]
        passes += int(np.prod(shape, dtype=np.int64)) > 1   # a 1-element nest reads no array
        last = len(shape) - 1
        reductions = [i for i in members if not pointwise[i]]
        lanes = {i for i in reductions if last in ops[i].params["axes"]
                 and shape[last] >= 2 * _LANES}
        for i in members:
            if i in stored:
                out = ops[i].outvar
                if i in donor:
                    body.append(f"    v{i} = v{donor[i]}")
                    if donor[i] in donee_slot:
                        direct.add(out)
                elif i in donee_slot:
                    body.append(f"    v{i} = o{donee_slot[i]}")
                elif out in out_slot and out.shape == tuple(shape):
                    body.append(f"    v{i} = o{out_slot[out]}")
                    direct.add(out)
                else:
                    body.append(array(f"v{i}", shape, out.dtype, at=here, until=last_read(i),
                                      internal=only_loops_read(i) and i not in donors))
        kept = {}
        # A lane reduction keeping only outer dimensions (all of them, or a prefix: the sum
        # of each row) accumulates into 16 partials in the stack frame, reset where its
        # reduced loops begin and combined where they end.
        local = {i for i in lanes if set(ops[i].params["axes"]) ==
                 set(range(len(shape) - len(ops[i].params["axes"]), len(shape)))}
        resets = {}
        for i in reductions:
            op = ops[i]
            dt = op.outvar.dtype
            ident = typed(op.prim.accumulate[0], dt)
            kept[i] = [d for d in range(len(shape)) if d not in op.params["axes"]]
            kshape = tuple(shape[d] for d in kept[i])
            if i in local:
                if kshape:
                    body.append(array(f"v{i}", kshape, dt, internal=only_loops_read(i),
                                      at=here, until=last_read(i)))
                resets.setdefault(len(kshape), []).append(
                    f"a{i} = _local({_LANES}, {ident})")
            elif i in lanes:
                body.append(array(f"a{i}", kshape + (_LANES,), dt, ident, internal=True,
                                  at=here, until=here))
            elif kshape:
                body.append(array(f"v{i}", kshape, dt, ident, internal=only_loops_read(i),
                                  at=here, until=last_read(i)))
            else:
                body.append(f"    v{i} = {ident}")
        for i in members:          # operands read whole, as vectors (views, when C-ordered;
            for k in ops[i].prim.whole_operands if pointwise[i] else ():   # 0-d: a scalar)
                x = ops[i].invars[k]
                vec = f"_full((1,), {render(x)})" if x.shape == () else f"_flat({render(x)})"
                body.append(f"    g{i}_{k} = {vec}")
        for d, n in enumerate(shape):
            body.extend(f"    {'    ' * d}{line}" for line in resets.get(d, ()))
            if d == last and lanes:
                body.append(f"    {'    ' * d}for jb in range(0, {n}, {_LANES}):")
                body.append(f"    {'    ' * (d + 1)}for jl in range(min({_LANES}, {n} - jb)):")
                body.append(f"    {'    ' * (d + 2)}j{d} = jb + jl")
            else:
                body.append(f"    {'    ' * d}for j{d} in range({n}):")
        pad = "    " * (len(shape) + 1 + (1 if lanes else 0))
        idx = ", ".join(f"j{d}" for d in range(len(shape)))
        for i in members:
            op = ops[i]
            if not pointwise[i]:
                x = render(op.invars[0], shape)
                if i in local:
                    target = f"a{i}[jl]"
                elif i in lanes:
                    target = f"a{i}[{''.join(f'j{d}, ' for d in kept[i])}jl]"
                elif kept[i]:
                    target = f"v{i}[{', '.join(f'j{d}' for d in kept[i])}]"
                else:
                    target = f"v{i}"
                body.append(f"{pad}{target} = {op.prim.accumulate[1].format(target, x)}")
                continue
            block = _contraction(op, [render(v) for v in op.invars],
                                 [f"j{d}" for d in range(len(shape))], f"t{i}")
            if block is not None:
                body.extend(pad + line for line in block)
            else:
                args = [f"g{i}_{k}" if k in op.prim.whole_operands else render(v, shape)
                        for k, v in enumerate(op.invars)]
                body.append(f"{pad}t{i} = {_element(op, args)}")
            scalars[op.outvar] = f"t{i}"
            if i in stored:
                body.append(f"{pad}v{i}[{idx}] = t{i}")
        scalars.clear()
        def combine(i, pad, lane, target):
            """Lines setting ``target`` to reduction i's partials (``lane`` formats the
            position of one) combined in lane order."""
            step = ops[i].prim.accumulate[1].format(f"s{i}", lane.format("l"))
            body.extend([f"{pad}s{i} = {lane.format(0)}", f"{pad}for l in range(1, {_LANES}):",
                         f"{pad}    s{i} = {step}", f"{pad}{target} = s{i}"])

        for i in sorted(local, key=lambda i: -len(kept[i])):   # innermost first
            depth = len(kept[i])
            at = f"[{', '.join(f'j{d}' for d in range(depth))}]" if depth else ""
            combine(i, "    " * (depth + 1), f"a{i}[{{}}]", f"v{i}{at}")
        for i in sorted(lanes - local):   # the partial results, combined in lane order
            kshape = tuple(shape[d] for d in kept[i])
            k = "".join(f"q{d}, " for d in range(len(kshape)))
            if kshape:
                body.append(array(f"v{i}", kshape, ops[i].outvar.dtype,
                                  internal=only_loops_read(i), at=here, until=last_read(i)))
            for d, n in enumerate(kshape):
                body.append(f"    {'    ' * d}for q{d} in range({n}):")
            combine(i, "    " * (len(kshape) + 1), f"a{i}[{k}{{}}]",
                    f"v{i}[{k[:-2]}]" if kshape else f"v{i}")

    last_stage = max(stage, default=0)
    views = {}                 # body line -> the view value it builds
    for st in range(last_stage + 1):
        for i, op in enumerate(ops):
            if in_loop[i] or stage[i] != st or op.outvar in inlined:
                continue
            out = op.outvar
            args = [render(v) for v in op.invars]
            layout[out] = _result_layout(op, layout)
            # (NumPy, run from object mode, takes any layout, and our intrinsics are not
            # callable there: its arguments as they are)
            numpy_expr = _numpy_expression(op, args, op.prim.lower(args, op)) \
                if i in to_numpy else None
            if numpy_expr is None:
                if op.prim.contiguous_args:
                    args = [f"_contiguous({a})" if v.shape and layout.get(v, "C") == "A"
                            else a for a, v in zip(args, op.invars)]
                expr = _array_loop(op, args) or op.prim.lower(args, op)
                if isinstance(expr, tuple):      # statements, then the value's expression
                    lines, expr = expr
                    body.extend(f"    {line.format(out=f'cat{i}')}" for line in lines)
                    expr = expr.format(out=f"cat{i}")
            if op.prim.view_index is not None:
                views[len(body)] = f"v{i}"       # dropped below if only loops read it
            if numpy_expr is not None:
                passes += 1
                dims = ", ".join([":"] * (out.ndim - 1) + ["::1"])
                typ = f"{out.dtype.name}[{dims}]" if out.ndim else out.dtype.name
                body.append(f"    with objmode(v{i}='{typ}'):")
                body.append(f"        v{i} = {numpy_expr}")
            else:
                body.append(f"    v{i} = {expr}")
        for key in order:
            if key[0] == st:
                emit_nest(key)

    rets, outs, returned = [], [], set()
    for position, v in enumerate(list(ol.outvars) + [g.var for g in ol.guards]):
        ref = names[v]
        if v in out_slot:
            if v in direct and out_slot[v] == len(outs):      # already there
                outs.append(Out((v.shape, v.dtype, position)))
                continue
            # element by element: a slice assignment costs Numba about 0.17 s to compile
            idx = [f"i{d}" for d in range(v.ndim)]
            for d, n in enumerate(v.shape):
                body.append(f"    {'    ' * d}for i{d} in range({n}):")
            src, at = through_views(v, idx)
            body.append(f"    {'    ' * v.ndim}o{len(outs)}[{', '.join(idx)}] = "
                        f"{names[src]}{'[' + ', '.join(at) + ']' if at else ''}")
            outs.append(Out((v.shape, v.dtype, position)))
            continue
        i = index.get(v)
        if v.shape != () and (v in ol.invars or v in ol.consts or v in returned or
                              (i is not None and ops[i].prim.kind == "view")):
            ref = f"{ref}.copy()"     # never an alias of another (C order, whatever its layout)
        returned.add(v)
        rets.append(ref)
    body = _without_unread(body, views, rets)
    # constants only dropped lines read (a gather's positions) are not passed
    read = set(re.findall(r"\bk\d+\b", "\n".join(body + rets)))
    kept = [i for i in range(len(array_consts)) if f"k{i}" in read]
    if any(line.lstrip().startswith("for j") for line in body):
        body.insert(0, "    wide_vectors()")     # loops use the CPU's widest vectors
    params = [names[v] for v in ol.invars] + [f"k{i}" for i in kept] + \
        [f"w{i}" for i in range(len(work))] + [f"o{i}" for i in range(len(outs))]
    lines = [
        "import numpy as np",
        "from numba import njit, objmode",
        f"from jvpvjp.backend.numba_helpers import {', '.join(HELPERS)}",
        f"from jvpvjp.backend.vmath import {', '.join(VMATH)}",
        "",
        "",
        f"# passes over arrays: {passes}",
        f"@njit(cache={bool(cache)}, error_model='numpy', no_cfunc_wrapper=True)",
        f"def {name}({', '.join(params)}):",
        *body,
        f"    return ({''.join(r + ', ' for r in rets)})",
        "",
    ]
    return "\n".join(lines), [array_consts[i] for i in kept] + work + outs


_NAME = re.compile(r"\bv\d+\b")


def _without_unread(body, views, rets):
    """``body`` without the lines building views or gathers (``views``: line -> value)
    that no other line nor the returned values read: loop nests read through them
    (`through_views`)."""
    reads = Counter(_NAME.findall("\n".join(body + rets)))
    for line, name in views.items():
        reads[name] -= 1                        # its own assignment
    dropped = set()
    for line in sorted(views, reverse=True):    # a view read only by a dropped view too
        if reads[views[line]] == 0:
            dropped.add(line)
            reads.subtract(_NAME.findall(body[line].split("=", 1)[1]))
    return [b for k, b in enumerate(body) if k not in dropped]


def passes_of(source):
    """The number of passes over arrays a generated kernel makes (loop nests and NumPy
    calls), from the line `generate_source` writes."""
    for line in source.splitlines():
        if line.startswith("# passes over arrays: "):
            return int(line.rsplit(" ", 1)[1])
    return None


_modules = {}
_lock = threading.Lock()
_PYTHON_EXACT = {np.dtype(np.int64), np.dtype(np.bool_)}


def _fingerprint():
    """Kernels run code their text does not hold: the helpers and vectorised functions they
    import, the routines they call through symbols (`opaque`), and Numba itself. Machine
    code compiled against other versions of these must not be loaded (it could compute
    something else, or call a symbol that no longer exists): their text is hashed into
    every kernel's name."""
    from . import numba_arrays, numba_helpers, opaque, vmath
    import numba
    h = hashlib.sha256(numba.__version__.encode())
    for module in (numba_arrays, numba_helpers, opaque, vmath):
        with open(module.__file__, "rb") as f:
            h.update(f.read())
    return h.hexdigest()


_FINGERPRINT = _fingerprint()


def _digest(source):
    """The name of a generated source in the disk cache: a hash of its text and of the code
    it runs outside its text."""
    return hashlib.sha256((_FINGERPRINT + source).encode()).hexdigest()[:24]


def _atomic_write(path, text):
    """Write ``text`` to ``path`` so that a reader sees the old file or the new one, never
    a part (temporary file in the same directory + rename; concurrent writers are safe)."""
    d = os.path.dirname(path)
    fd, tmp = tempfile.mkstemp(dir=d, prefix=".tmp-", suffix=".tmp")
    try:
        try:
            os.fchmod(fd, 0o644)     # mkstemp makes 0600 files: a shared cache needs reads
        except (AttributeError, OSError):
            pass
        with os.fdopen(fd, "wb") as f:
            f.write(text.encode() if isinstance(text, str) else text)
        os.replace(tmp, path)
    except BaseException:
        try:
            os.unlink(tmp)
        except OSError:
            pass
        raise


def _load_from_disk(source, digest):
    """Load the kernel of ``source`` from ``config.cache_dir/kernels/k_<digest>.py``, so that
    Numba caches its machine code in ``kernels/__pycache__``. Raises if the directory is
    unusable (the caller then compiles without the disk cache)."""
    directory = os.path.join(config.cache_dir, "kernels")
    os.makedirs(directory, exist_ok=True)
    path = os.path.join(directory, f"k_{digest}.py")
    if _read_bytes(path) != source.encode():   # missing, truncated, garbled or foreign
        _unlink(os.path.join(directory, f"k_{digest}.ok"))
        _atomic_write(path, source)
    # Compiled from our own text under the file's name (Numba locates its cache, and stamps
    # it, by that file): no import machinery, so no stale or garbled .pyc is ever read.
    import types
    modname = f"jvpvjp_kernel_{digest}"
    module = types.ModuleType(modname)
    module.__file__ = path
    exec(compile(source, path, "exec"), module.__dict__)
    sys.modules[modname] = module
    fn = module.kernel
    _guard_module(module, os.path.join(directory, f"k_{digest}.ok"))
    _unconfirmed[id(fn)] = (fn, module, directory, digest)
    return fn


def _load(source, digest):
    register_for(source)
    problem = None
    if config.cache_dir:
        try:
            return _load_from_disk(source, digest)
        except Warning:
            raise
        except Exception as e:   # OSError, or Numba's "cannot cache function ...: no locator"
            problem = e
    src = source.replace("cache=True", "cache=False")
    namespace = {}
    exec(compile(src, f"<jvpvjp kernel {digest}>", "exec"), namespace)
    if problem is not None:     # warned only once the program is known to load without it
        _warn_once("unavailable", f"jvpvjp: the kernel disk cache in {config.cache_dir!r} "
                   f"cannot be used ({_describe(problem)}); compiling without it")
    return namespace["kernel"]


def _compiled(source):
    """The ``kernel`` of a generated module, loaded once per process per source text."""
    digest = _digest(source)
    with _lock:
        fn = _modules.get(digest)
        if fn is None:
            fn = _modules[digest] = _load(source, digest)
    return fn


# -- the disk cache: never wrong, never a crash -----------------------------------------------
# * Numba reads its index (.nbi) and data (.nbc) files on a kernel's first call. Every Numba
#   dispatcher of a loaded module (and the helpers it calls) has its cache guarded: an entry
#   that fails to load (truncated, garbled) or holds code of another function or signature
#   (a foreign file, or the index race below) is deleted and compiled again, with one
#   RuntimeWarning per process. Only cache reading runs there, never the user's program.
# * Numba's index update is a read-modify-write: two processes saving different overloads of
#   one function at once can leave the index pointing at the other overload's data (wrong
#   results). Saves are serialised across processes with a lock file next to the index.
# * Safety net: if a freshly loaded kernel's first call fails while it has cache files, they
#   are deleted and the module executed again; an error that persists is the program's own.
# * A kernel whose first call succeeded with Numba's cache on writes ``k_<digest>.ok``:
#   `on_disk` tells from it, without Numba, that loading the kernel will not compile.
_MARKER = "jvpvjp kernel cache marker 1"
_unconfirmed = {}     # id(kernel) -> (kernel, module, kernels directory, digest): not called yet
_warned = set()
_warn_lock = threading.Lock()


def on_disk(source):
    """Whether the machine code of the kernel generated as ``source`` is in the disk cache
    (loading it then takes milliseconds, not a compile). Cheap: reads two small files."""
    if not config.cache_dir:
        return False
    digest = _digest(source)
    directory = os.path.join(config.cache_dir, "kernels")
    try:
        with open(os.path.join(directory, f"k_{digest}.ok"), "rb") as f:
            lines = f.read(65536).decode().splitlines()
        if len(lines) < 3 or lines[0] != _MARKER or lines[1] != digest:
            return False
        if _read_bytes(os.path.join(directory, f"k_{digest}.py")) != source.encode():
            return False
        return all(os.path.isfile(os.path.join(directory, name)) for name in lines[2:])
    except (OSError, ValueError):
        return False


def _read_bytes(path):
    try:
        with open(path, "rb") as f:
            return f.read()
    except OSError:
        return None


def _unlink(path):
    """Delete a file; whether it is gone."""
    try:
        os.unlink(path)
    except FileNotFoundError:
        pass
    except OSError:
        return False
    return True


def _describe(error):
    text = str(error).strip()
    return f"{type(error).__name__}: {text.splitlines()[0]}" if text else type(error).__name__


def _warn_once(key, message):
    """One RuntimeWarning per process and kind of problem, shown at the user's call."""
    with _warn_lock:
        if key in _warned:
            return
        _warned.add(key)
    import numba
    inside = (os.path.dirname(numba.__file__), os.path.dirname(os.path.dirname(__file__)))
    frame, level = sys._getframe(1), 2
    while frame is not None and frame.f_code.co_filename.startswith(inside):
        frame, level = frame.f_back, level + 1
    warnings.warn(message, RuntimeWarning, stacklevel=level if frame is not None else 2)


def _cache_base(disp):
    """Path prefix of a dispatcher's Numba cache files (``<base>.nbi``, ``<base>.<n>.nbc``),
    or None if it has no disk cache (or this Numba lays caches out differently)."""
    from numba.core.caching import Cache
    cache = getattr(disp, "_cache", None)
    if not isinstance(cache, Cache):
        return None
    try:
        return os.path.join(cache.cache_path, cache._impl.filename_base)
    except (AttributeError, TypeError):
        return None


def _own_dispatchers(module):
    from numba.core.dispatcher import Dispatcher
    return [v for v in list(vars(module).values()) if isinstance(v, Dispatcher)
            and getattr(v.py_func, "__module__", None) == module.__name__]


def _guard_module(module, marker):
    """Guard the disk caches of a kernel module's dispatchers and of the helpers it calls."""
    from numba.core.dispatcher import Dispatcher
    own = set(map(id, _own_dispatchers(module)))
    for v in list(vars(module).values()):
        if isinstance(v, Dispatcher):
            _guard_dispatcher(v, marker if id(v) in own else None)


def _guard_dispatcher(disp, marker):
    cache = getattr(disp, "_cache", None)
    base = _cache_base(disp)
    if base is None or getattr(cache, "_jvpvjp_guarded", False):
        return
    load, save = cache.load_overload, cache.save_overload
    cache.load_overload = lambda sig, ctx: _checked_load(disp, load, base, marker, sig, ctx)
    cache.save_overload = lambda sig, data: _locked_save(save, base, sig, data)
    cache._jvpvjp_guarded = True


def _checked_load(disp, load, base, marker, sig, target_context):
    """Numba's cache lookup, with an entry that cannot be right deleted (a miss instead)."""
    try:
        cres = load(sig, target_context)
    except Warning:
        raise
    except Exception as e:     # pickle errors, EOFError, ValueError, ...: the files are bad
        problem = _describe(e)
    else:
        if cres is None or _entry_matches(disp, sig, cres):
            return cres
        problem = "it holds code compiled for another function or signature"
    _remove_entry(base, marker)
    _warn_once("corrupt", f"jvpvjp: removed a corrupt entry from the kernel disk cache "
               f"({base}.nbi: {problem}); compiling it again")
    return None


def _entry_matches(disp, sig, cres):
    """Whether a loaded compile result is this function's, for this signature (Numba files
    overloads under the signature but never checks what it reads back)."""
    try:
        from numba.core import sigutils
        args = tuple(sigutils.normalize_signature(sig)[0])
        fndesc, fn = cres.fndesc, disp.py_func
        return (tuple(cres.signature.args) == args and fndesc.qualname == fn.__qualname__
                and fndesc.modname == fn.__module__)
    except Exception:     # cannot tell: trust Numba
        return True


def _locked_save(save, base, sig, data):
    """Numba's cache save, serialised across processes; a failure costs the entry only."""
    problem = None
    for attempt in range(2):
        fd = _lock_file(base + ".lock")
        try:
            save(sig, data)
            return
        except Warning:
            raise
        except Exception as e:
            problem = e
        finally:
            _unlock_file(fd)
        if isinstance(problem, OSError):
            break
        _remove_entry(base, None)    # the index went bad since it was read: start afresh
    _warn_once("unwritable", f"jvpvjp: could not save a compiled kernel to the disk cache "
               f"({base}: {_describe(problem)}); it will be compiled again next time")


def _remove_entry(base, marker):
    """Delete the index and data files under ``base`` (and the kernel's marker)."""
    import glob
    if marker is not None:
        _unlink(marker)
    fd = _lock_file(base + ".lock")
    try:
        for p in [base + ".nbi"] + glob.glob(glob.escape(base) + ".*.nbc"):
            _unlink(p)
    finally:
        _unlock_file(fd)


def _lock_file(path, timeout=20.0):
    """An exclusive lock on ``path`` (created): its descriptor, or None where locks are not
    to be had (no fcntl, read-only directory, held too long by another process)."""
    try:
        import fcntl
    except ImportError:
        return None
    try:
        os.makedirs(os.path.dirname(path), exist_ok=True)
        fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
    except OSError:
        return None
    import time
    deadline = time.monotonic() + timeout
    while True:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            return fd
        except BlockingIOError:
            if time.monotonic() > deadline:
                break
            time.sleep(0.002)
        except OSError:
            break
    os.close(fd)
    return None


def _unlock_file(fd):
    if fd is not None:
        os.close(fd)     # releases the lock


def _confirm(fn):
    """After the first successful call of a kernel loaded with its disk cache: write the
    marker `on_disk` reads, if Numba's cache now holds the kernel."""
    entry = _unconfirmed.pop(id(fn), None)
    if entry is None or entry[0] is not fn:
        return
    _, module, directory, digest = entry
    try:
        names = []
        for disp in _own_dispatchers(module):
            base = _cache_base(disp)
            if base is not None and os.path.isfile(base + ".nbi"):
                names.append(os.path.relpath(base + ".nbi", directory))
            elif disp is fn:
                return     # not cached (no cache, or Numba could not save it)
        _atomic_write(os.path.join(directory, f"k_{digest}.ok"),
                      "\n".join([_MARKER, digest] + sorted(names)) + "\n")
    except Exception:     # the marker only saves time: never an error
        pass


def _forget(fn):
    _unconfirmed.pop(id(fn), None)


def _reload(source, fn):
    """The first call of ``fn``, fresh from the disk cache, failed before its code ran: if
    the kernel has cache files, delete them and execute its module again. Returns the new
    kernel, or None if the cache cannot be to blame."""
    digest = _digest(source)
    with _lock:
        current = _modules.get(digest)
        if current is not None and current is not fn and id(fn) not in _unconfirmed:
            return current       # another thread reloaded it already
        entry = _unconfirmed.pop(id(fn), None)
        if entry is None or entry[0] is not fn:
            return None
        overloads = getattr(fn, "overloads", None)
        if overloads:            # it compiled (or loaded) and ran: the error is the program's
            return None
        _, module, directory, _ = entry
        import glob
        caches = {os.path.dirname(b) for b in map(_cache_base, _own_dispatchers(module))
                  if b is not None} | {os.path.join(directory, "__pycache__")}
        files = {p for c in caches for p in glob.glob(os.path.join(glob.escape(c),
                                                                   f"k_{digest}.*"))
                 if not p.endswith(".lock")}
        if not files:
            return None
        _unlink(os.path.join(directory, f"k_{digest}.ok"))
        if all(_unlink(p) for p in files):
            new = _load(source, digest)
        else:                    # cannot delete them: do without the disk cache
            namespace = {}
            exec(compile(source.replace("cache=True", "cache=False"),
                         f"<jvpvjp kernel {digest}>", "exec"), namespace)
            new = namespace["kernel"]
        _modules[digest] = new
        return new


def _from_cache_code(error):
    """Whether ``error`` was raised while Numba read a disk cache."""
    from numba.core import caching
    path = os.path.splitext(caching.__file__)[0]
    tb = error.__traceback__
    while tb is not None:
        if os.path.splitext(tb.tb_frame.f_code.co_filename)[0] == path:
            return True
        tb = tb.tb_next
    return False


def precompiled(source, *example):
    """The ``kernel`` of generated ``source`` that an interpreter calls directly (the tapes'
    loops): loaded as kernels are (disk cache, damaged entries compiled again) and called
    once here with ``example``, where Numba compiles it or loads its machine code. Processes
    sharing a disk cache take turns here (a lock file per source), so the first compiles
    and the others, started at the same time (test workers, Dask workers, a process
    pool), load its machine code instead of each compiling it again."""
    fn = _compiled(source)
    lock = _lock_file(os.path.join(config.cache_dir, "kernels", f"k_{_digest(source)}.lock"),
                      timeout=120.0) if config.cache_dir else None
    try:
        fn = _first_call(fn, source, example)
    finally:
        _unlock_file(lock)
    _confirm(fn)
    return fn


def _first_call(fn, source, example):
    try:
        fn(*example)
    except Warning:
        raise
    except Exception as e:
        new = _reload(source, fn) if _unconfirmed else None
        if new is None:
            raise
        fn = new
        fn(*example)
        _warn_once("corrupt", f"jvpvjp: the kernel disk cache in {config.cache_dir!r} "
                   f"had a corrupt entry ({_describe(e)}); removed it and compiled again")
    return fn


class NumbaKernel:
    """Calls a generated, compiled function; scalar outputs get their exact dtype back."""

    def __init__(self, ol):
        self.oplist = ol
        self.source, consts = generate_source(ol, cache=bool(config.cache_dir))
        self.consts = [c for c in consts if not isinstance(c, (Scratch, Out))]
        self.scratch = [c for c in consts if isinstance(c, Scratch)]
        self.outs = [c for c in consts if isinstance(c, Out)]
        self._local = threading.local()
        self.fn = _compiled(self.source)
        # Numba returns scalars as Python floats/ints/bools: outputs get their NumPy scalar
        # type back (guard values need not).
        self._scalar_out = [(i, v.dtype.type) for i, v in enumerate(ol.outvars)
                            if v.shape == () and v.dtype not in _PYTHON_EXACT]
        self._fresh = True    # not called yet: its first success confirms the cache entry

    def __call__(self, *args):
        outs = [np.empty(shape, dtype) for shape, dtype, _ in self.outs]
        try:
            res = self.fn(*args, *self.tail(), *outs)
        except Warning:
            raise
        except Exception as e:
            fn = _reload(self.source, self.fn) if _unconfirmed else None
            if fn is None:
                if isinstance(e, (NumbaError, ImportError)):  # ImportError: a library Numba needs
                    return self._fall_back(e, args)
                raise
            self.fn = fn     # the first call of a kernel fresh from a bad disk cache: again
            try:
                res = fn(*args, *self.tail(), *outs)
            except Warning:
                raise
            except Exception as e2:
                _forget(fn)
                if isinstance(e2, (NumbaError, ImportError)) or _from_cache_code(e2):
                    return self._fall_back(e2, args)
                raise
            _confirm(fn)
            self._fresh = False
            _warn_once("corrupt", f"jvpvjp: the kernel disk cache in {config.cache_dir!r} "
                       f"had a corrupt entry ({_describe(e)}); removed it and compiled again")
        else:
            if self._fresh:
                _confirm(self.fn)
                self._fresh = False
        if outs:
            res = list(res)
            for (_, _, position), o in zip(self.outs, outs):
                res.insert(position, o)
        if self._scalar_out:
            res = list(res)
            for i, t in self._scalar_out:
                res[i] = t(res[i])
        return res


    def tail(self):
        """The arguments after the inputs: the constants, then this thread's scratch."""
        try:
            return self._local.tail
        except AttributeError:
            tail = self._local.tail = self.consts + [w.allocate() for w in self.scratch]
            return tail

    def _fall_back(self, error, args):
        # A program Numba cannot compile still runs, on the interpreter, and says why once.
        warnings.warn(f"jvpvjp: Numba could not compile this program ({type(error).__name__}:"
                      f" {str(error).splitlines()[0] if str(error) else ''}); running it on "
                      f"the NumPy interpreter instead", RuntimeWarning, stacklevel=3)
        interp = InterpreterKernel(self.oplist)
        self.outs = []
        self.fn = lambda *a: interp(*a[:len(self.oplist.invars)])
        return self.fn(*args)


register_backend("numba", NumbaKernel)


def generate_jacobian_source(first, second, spec, cache=True):
    """Source of a module whose ``kernel`` runs ``first`` once and ``second`` once per seed
    element in a compiled loop (see `JacobianSpec`), and the array constants it takes, then
    its `Scratch` arguments. The work arrays of both programs, the arrays ``second`` writes
    its results into (`Out`) and the block of seeds are scratch: kept across calls (one
    set per thread), so a Jacobian allocates its result and nothing per block."""
    src1, consts1 = generate_source(first, name="first", cache=cache, outputs=False)
    src2, consts2 = generate_source(second, name="second", cache=cache)
    header, body1 = src1.split("\n\n\n", 1)
    body2 = src2.split("\n\n\n", 1)[1]
    arrays1 = [c for c in consts1 if not isinstance(c, Scratch)]
    arrays2 = [c for c in consts2 if not isinstance(c, (Scratch, Out))]
    work1 = [c for c in consts1 if isinstance(c, Scratch)]
    work2 = [c for c in consts2 if isinstance(c, Scratch)]
    outs2 = [c for c in consts2 if isinstance(c, Out)]
    xs = [f"x{i}" for i in range(len(first.invars))]
    a_s = [f"a{i}" for i in range(len(arrays1))] + [f"wa{i}" for i in range(len(work1))]
    b_s = [f"b{i}" for i in range(len(arrays2))] + [f"wb{i}" for i in range(len(work2))] + \
        [f"u{k}" for k in range(len(outs2))]
    work = work1 + work2 + [Scratch((o[0], o[1])) for o in outs2]
    out_at = {o[2]: k for k, o in enumerate(outs2)}
    returned = [g for g in range(len(second.outvars) + len(second.guards)) if g not in out_at]

    def result(g):
        """Result g of ``second``: its Out array, or its place in the tuple returned."""
        return f"u{out_at[g]}" if g in out_at else f"o[{returned.index(g)}]"

    res = [f"r[{spec.n_known + i}]" for i in range(spec.n_res)]
    rows, ncols = spec.outputs
    seeds = [f"S{s}" for s in range(len(spec.seeds))] if spec.block > 1 else []
    if seeds:
        work += [Scratch(((spec.block,) + shape, np.dtype(dtype)))
                 for shape, dtype in spec.seeds] + [Scratch(((1,), np.dtype(np.int64)))]
        seeds.append("D")
    params = xs + [f"a{i}" for i in range(len(arrays1))] + \
        [f"b{i}" for i in range(len(arrays2))] + [f"wa{i}" for i in range(len(work1))] + \
        [f"wb{i}" for i in range(len(work2))] + [f"u{k}" for k in range(len(outs2))] + seeds
    lines = [f"@njit(cache={bool(cache)}, error_model='numpy', no_cfunc_wrapper=True)",
             f"def kernel({', '.join(params)}):",
             f"    r = first({''.join(x + ', ' for x in xs + a_s)})"]
    for k, (shape, dtype) in enumerate(rows):
        size = int(np.prod(shape, dtype=np.int64))
        lines.append(f"    J{k} = _full(({size}, {ncols}), {typed('0.0', dtype)})")
    if spec.block > 1:
        lines += _block_loop(spec, res, b_s, result)
    else:
        lines += _seed_loop(spec, res, b_s, result)
    n_first = spec.n_known + spec.n_res
    rets = [f"J{k}" for k in range(len(rows))] + \
        [f"r[{i}]" for i in range(spec.n_known)] + \
        [f"r[{n_first + g}]" for g in range(len(first.guards))]
    lines.append(f"    return ({''.join(r + ', ' for r in rets)})")
    source = "\n\n\n".join([header, body1.rstrip("\n"), body2.rstrip("\n"),
                             "\n".join(lines)]) + "\n"
    return source, arrays1 + arrays2 + work


def _sizes(avals):
    return [int(np.prod(s, dtype=np.int64)) for s, _ in avals]


def _block_loop(spec, res, b_s, result):
    """Driver lines for a batched ``second``: ``block`` seed elements per call. The seed
    blocks are scratch arrays, zero between calls: each block's ones are reset after it;
    a call that stops on an error leaves the flag ``D`` set, and the next call clears them
    all first."""
    bk, lines = spec.block, []
    sizes = _sizes(spec.seeds)
    starts = np.cumsum([0] + sizes).tolist()
    total = starts[-1]
    for s, (shape, dtype) in enumerate(spec.seeds):
        lines.append(f"    S{s}f = _flat(S{s})")
    lines.append("    if D[0] != 0:")
    for s, (shape, dtype) in enumerate(spec.seeds):
        lines.append(f"        for q in range({bk * sizes[s]}):")
        lines.append(f"            S{s}f[q] = {typed('0.0', dtype)}")
    lines.append("    D[0] = 1")
    call = f"second({''.join(x + ', ' for x in res + [f'S{s}' for s in range(len(sizes))] + b_s)})"

    def set_seeds(value, pad):
        out = []
        for s in range(len(sizes)):
            cond = "if" if s == 0 else "elif"
            out.append(f"{pad}{cond} c < {starts[s + 1]}:")
            out.append(f"{pad}    S{s}f[cl * {sizes[s]} + c - {starts[s]}] = {value(s)}")
        return out

    lines.append(f"    for c0 in range(0, {total}, {bk}):")
    lines.append(f"        n = min({bk}, {total} - c0)")
    lines.append("        for cl in range(n):")
    lines.append("            c = c0 + cl")
    lines += set_seeds(lambda s: typed("1.0", spec.seeds[s][1]), "            ")
    lines.append(f"        o = {call}")
    rsizes = _sizes(spec.results)
    # (element loops: a slice assignment costs Numba about 0.2 s of compile time each)
    for g, size in enumerate(rsizes):         # once per block, not per row
        lines.append(f"        G{g} = {flat_as(result(g), (bk, size))}")
    if spec.mode == "fwd":
        lines.append("        for cl in range(n):")
        for k, size in enumerate(rsizes):
            lines.append(f"            for i in range({size}):")
            lines.append(f"                J{k}[i, c0 + cl] = G{k}[cl, i]")
    else:
        lo = np.cumsum([0] + rsizes).tolist()
        lines.append("        for cl in range(n):")
        lines.append("            c = c0 + cl")
        for k in range(len(sizes)):
            lines.append(f"            {'if' if k == 0 else 'elif'} c < {starts[k + 1]}:")
            for g, size in enumerate(rsizes):
                lines.append(f"                for i in range({size}):")
                lines.append(f"                    J{k}[c - {starts[k]}, {lo[g]} + i] = "
                             f"G{g}[cl, i]")
    lines.append("        for cl in range(n):")
    lines.append("            c = c0 + cl")
    lines += set_seeds(lambda s: typed("0.0", spec.seeds[s][1]), "            ")
    lines.append("    D[0] = 0")
    return lines


def _seed_loop(spec, res, b_s, result):
    """Driver lines for an unbatched ``second``: one call per seed element."""
    lines = []
    for s, (shape, dtype) in enumerate(spec.seeds):
        if shape == ():
            lines.append(f"    s{s} = {typed('0.0', dtype)}")
        else:
            size = int(np.prod(shape, dtype=np.int64))
            lines.append(f"    s{s}f = _full({size}, {typed('0.0', dtype)})")
            lines.append(f"    s{s} = _shaped(s{s}f, {shape!r})")
    call = f"second({''.join(x + ', ' for x in res + [f's{s}' for s in range(len(spec.seeds))] + b_s)})"
    cols = spec.seeds if spec.mode == "fwd" else spec.results
    offsets = np.cumsum([0] + [int(np.prod(c, dtype=np.int64)) for c, _ in cols]).tolist()

    def store(target, value, shape, pad):
        """Lines storing ``value`` at ``target(None)``, or element i of it at ``target("i")``
        when it is an array (element by element: see `_block_loop`)."""
        if shape == ():
            return [f"{pad}{target(None)} = {value}"]
        return [f"{pad}o_ = _flat({value})",
                f"{pad}for i in range({int(np.prod(shape, dtype=np.int64))}):",
                f"{pad}    {target('i')} = o_[i]"]

    for s, (shape, dtype) in enumerate(spec.seeds):
        one, zero = typed("1.0", dtype), typed("0.0", dtype)
        scalar = shape == ()
        pad = "    " if scalar else "        "
        if scalar:
            lines.append(f"    s{s} = {one}")
        else:
            lines.append(f"    for j in range({int(np.prod(shape, dtype=np.int64))}):")
            lines.append(f"{pad}s{s}f[j] = {one}")
        lines.append(f"{pad}o = {call}")
        j = "0" if scalar else "j"
        if spec.mode == "fwd":
            for k, (oshape, _) in enumerate(spec.results):
                lines += store(lambda i, k=k: f"J{k}[{i or 0}, {offsets[s]} + {j}]",
                               result(k), oshape, pad)
        else:
            for g, (gshape, _) in enumerate(spec.results):
                lines += store(lambda i, g=g: f"J{s}[{j}, {offsets[g]}{' + ' + i if i else ''}]",
                               result(g), gshape, pad)
        # reset after reading: an output may be the seed itself (f(x) = x)
        lines.append(f"{pad}s{s} = {zero}" if scalar else f"{pad}s{s}f[j] = {zero}")
    return lines


class NumbaJacobianKernel(NumbaKernel):
    """A Jacobian whose seed loop is compiled with the two programs it calls."""

    def __init__(self, first, second, spec):
        self.first, self.second, self.spec = first, second, spec
        self.oplist = first
        self.source, consts = generate_jacobian_source(
            simplify(first), simplify(second), spec, cache=bool(config.cache_dir))
        self.consts = [c for c in consts if not isinstance(c, Scratch)]
        self.scratch = [c for c in consts if isinstance(c, Scratch)]
        self.outs, self._local = [], threading.local()
        self.fn = _compiled(self.source)
        known = first.outvars[:spec.n_known]
        self._scalar_out = [(len(spec.outputs[0]) + i, v.dtype.type)
                            for i, v in enumerate(known)
                            if v.shape == () and v.dtype not in _PYTHON_EXACT]
        self._fresh = True

    def _fall_back(self, error, args):
        from . import JacobianLoop
        warnings.warn(f"jvpvjp: Numba could not compile this Jacobian ({type(error).__name__}:"
                      f" {str(error).splitlines()[0] if str(error) else ''}); running it on "
                      f"the NumPy interpreter instead", RuntimeWarning, stacklevel=3)
        loop = JacobianLoop(InterpreterKernel(self.first), InterpreterKernel(self.second),
                            self.spec)
        self.fn = lambda *a: loop(*a[:len(self.first.invars)])
        return self.fn(*args)


def _compile_jacobian(first, second, spec):
    from . import tape
    for ol in (first, second):    # long scalar programs run on the tape: generic loop
        if len(ol.ops) >= config.tape_threshold and tape.supports(ol):
            return None
    return NumbaJacobianKernel(first, second, spec)


register_jacobian_backend("numba", _compile_jacobian)
