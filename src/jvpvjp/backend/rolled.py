"""Rolled tape: long scalar programs whose instructions repeat run as compiled loops.

Design notes
------------
* Tracing a Python loop unrolls it: N copies of its body, and the derivative program adds
  N copies of the body's tangent or adjoint. Encoded for the scalar tape
  (`tape.TapeKernel`: opcode and operand slots per instruction, each slot written once),
  such a stretch is *periodic*: with period p the opcodes repeat and every operand slot
  moves by a fixed stride per repetition (values' slots advance, constants' stay put or
  advance through a table). `segments` finds these stretches with a vectorised scan.
* A stretch runs as a loop over its repetitions in the original order, so it computes
  exactly what the tape computes, to the bit. Its body is generated straight-line code:
  operands produced earlier in the same repetition, or by the previous repetition, stay in
  registers; the rest are loads at ``base + j * stride``. Every result is also stored, as
  the tape stores it, for the instructions outside the loop.
* The body's code depends only on its opcodes and where its operands come from (a
  register or memory); slots and strides are arguments. So a body is compiled once, in
  well under a second, whatever the trace length, and it is shared by every program with
  that loop and across processes (the kernel disk cache). The compile time is that of the
  loop body: a 10^6-step unrolled loop costs what a 10-step one does.
* What does not repeat runs on the tape's interpreter loop, on its slice of the
  instructions. The kernel is a short list of such calls.
"""
from __future__ import annotations

import threading

import numpy as np

from . import tape

# A stretch must be at least this long, and repeat at least this often, to be rolled: a
# loop costs a call (about 0.4 us, and one more for the tape's slice after it) and saves
# a few ns per instruction, so shorter ones are left to the tape's loop.
MIN_OPS = 384
MIN_REPEATS = 4
MAX_PERIOD = 128


def _runs(mask):
    """(start, end) of the runs of True in a boolean array."""
    if not mask.size:
        return np.zeros(0, np.int64), np.zeros(0, np.int64)
    d = np.diff(np.concatenate(([0], mask.view(np.int8), [0])))
    return np.flatnonzero(d == 1), np.flatnonzero(d == -1)


def segments(table, max_period=MAX_PERIOD):
    """Periodic stretches of an encoded tape: a list of ``(start, period, end)``, sorted
    and disjoint. ``table`` is an (N, 5) int64 array: opcode, a, b, c, out.

    Instructions t, t + p, t + 2p fit one affine pattern when their opcodes agree and
    their operand slots have equal differences; a stretch of ``n`` repetitions of period
    ``p`` from ``s`` needs that for every t in [s, s + (n - 2) p). For each period the
    opcodes are compared over the whole table, the slots only where opcodes agree, one
    column at a time, and not where a divisor of the period was found (a multiple of a
    period is a period too). Candidates are taken largest first (an outer loop beats its
    inner one);
    one that overlaps a taken stretch keeps the largest free piece of its repetitions."""
    n_ins = table.shape[0]
    code = table[:, 0]
    candidates = []
    found = np.zeros(n_ins, np.int32)     # the shortest period found periodic there
    for p in range(1, min(max_period, n_ins // MIN_REPEATS) + 1):
        same = code[p:] == code[:-p]
        at = np.flatnonzero(same[:-p] & same[p:])
        if at.size < MIN_OPS - 2 * p:
            continue
        q = found[at]         # a multiple of a period found there adds nothing
        at = at[(q == 0) | (p % np.maximum(q, 1) != 0)]
        if at.size < MIN_OPS - 2 * p:
            continue
        for col in range(1, table.shape[1]):
            x0, x1, x2 = table[at, col], table[at + p, col], table[at + 2 * p, col]
            at = at[x2 - x1 == x1 - x0]
        if at.size < MIN_OPS - 2 * p:
            continue
        ok = np.zeros(n_ins - 2 * p, bool)
        ok[at] = True
        for s, e in zip(*_runs(ok)):
            reps = (e - s) // p + 2
            if reps >= MIN_REPEATS and reps * p >= MIN_OPS:
                candidates.append((int(reps * p), p, int(s), int(reps)))
                piece = found[s:s + reps * p]
                piece[piece == 0] = p
    candidates.sort(key=lambda c: (-c[0], c[1], c[2]))
    used = np.zeros(n_ins, bool)
    taken = []
    for _, p, s, reps in candidates:
        free = ~used[s:s + reps * p]
        if not free.all():            # the largest free piece, on the period
            starts, ends = _runs(free)
            if not starts.size:
                continue
            i = int(np.argmax(ends - starts))
            lo = s + -(-int(starts[i]) // p) * p
            reps = (s + int(ends[i]) - lo) // p
            s = lo
        if reps >= MIN_REPEATS and reps * p >= MIN_OPS:
            used[s:s + reps * p] = True
            taken.append((s, p, s + reps * p))
    return sorted(taken)


# -- the loop bodies -----------------------------------------------------------------------
_NIN = {"muladd": 3, "mulsub": 3, "copy": 1, "to_bool": 1}


def _expression(name):
    """The body expression of opcode ``name`` over operands x, y, z."""
    if name in tape._INTERNAL:
        return tape._INTERNAL[name].replace("buf[c[i]]", "z")
    from ..primitives import REGISTRY
    return tape.scalar_body(REGISTRY[name], ("x", "y", "z"))


def _arity(name):
    if name in _NIN:
        return _NIN[name]
    from ..primitives import REGISTRY
    return REGISTRY[name].nin


def body_plan(table, lo, p):
    """The loop of the stretch from ``lo`` with period ``p``: its signature (opcodes, and
    for each operand a register it is in or None for a load), bases and strides."""
    names = {k: n for n, k in tape.opcodes().items()}
    first, second = table[lo:lo + p], table[lo + p:lo + 2 * p]
    base = first[:, 1:].copy()
    stride = second[:, 1:] - first[:, 1:]
    outs = [(int(b), int(s)) for b, s in zip(base[:, 3], stride[:, 3])]
    now = {o: q for q, o in enumerate(outs)}
    last = {(b - s, s): q for q, (b, s) in enumerate(outs)}
    ops, written = [], set()       # written: slots this repetition has written so far
    for k in range(p):
        name = names[int(first[k, 0])]
        sources = []
        for col in range(_arity(name)):
            slot = (int(base[k, col]), int(stride[k, col]))
            q = now.get(slot)
            if q is not None and q < k:              # this repetition's value
                sources.append(("now", q))
            elif slot in last and slot[0] not in written:
                # the previous repetition's (before the loop: read from memory once; not
                # a slot this repetition has written by then)
                sources.append(("last", last[slot]))
            else:
                sources.append(None)
        ops.append((name, tuple(sources)))
        written.add(outs[k][0])
    return tuple(ops), base, stride


def body_source(signature):
    """A Numba function ``kernel(n, base, step, buf)`` running ``n`` repetitions."""
    p = len(signature)
    carried = sorted({q for _, srcs in signature for s in srcs if s and s[0] == "last"
                      for q in (s[1],)})
    lines = ["import math", "import numpy as np", "from numba import njit", "", "",
             "@njit(cache=True, error_model='numpy', fastmath=False)",
             "def kernel(n, base, step, buf):"]
    for k, (_, srcs) in enumerate(signature):
        cols = [c for c, s in enumerate(srcs) if s is None] + [3]
        for c in cols:
            lines.append(f"    i{k}_{c} = base[{k}, {c}]")
            lines.append(f"    s{k}_{c} = step[{k}, {c}]")
    for q in carried:     # the repetition before the first: its results are in memory
        lines.append(f"    v{q} = buf[base[{q}, 3] - step[{q}, 3]] if n > 0 else 0.0")
    lines.append("    for j in range(n):")
    for q in carried:
        lines.append(f"        l{q} = v{q}")
    for k, (name, srcs) in enumerate(signature):
        operands = []
        for c, s in enumerate(srcs):
            if s is None:
                operands.append(f"buf[i{k}_{c} + j * s{k}_{c}]")
            elif s[0] == "now":
                operands.append(f"v{s[1]}")
            else:
                operands.append(f"l{s[1]}")
        operands += ["0.0"] * (3 - len(operands))
        lines.append(f"        x, y, z = {', '.join(operands)}")
        lines.append(f"        v{k} = {_expression(name)}")
        lines.append(f"        buf[i{k}_3 + j * s{k}_3] = v{k}")
    lines += ["    return 0", ""]
    del p
    return "\n".join(lines)


_bodies = {}
_bodies_lock = threading.Lock()


def compiled_body(signature):
    """The compiled loop for a body signature (built once per process; its machine code
    comes from the kernel disk cache after the first time on a machine)."""
    fn = _bodies.get(signature)
    if fn is None:
        with _bodies_lock:
            fn = _bodies.get(signature)
            if fn is None:
                from .numba_backend import precompiled
                p = len(signature)
                z = np.zeros((p, 4), np.int64)
                fn = precompiled(body_source(signature), 0, z, z, np.zeros(1))
                _bodies[signature] = fn
    return fn


class RolledKernel:
    """The tape kernel of an op list with its periodic stretches run as compiled loops
    (the same calling convention, the same bits)."""

    def __init__(self, ol):
        self.oplist = ol
        self.tape = t = tape.encoded(ol)
        table = np.stack([t.code.astype(np.int64), t.a, t.b, t.c, t.out], axis=1)
        self.steps = []         # (fn, its arguments before the buffer)
        self.rolled_ops = 0
        at = 0
        loop = tape.run_loop()
        for lo, p, hi in segments(table):
            if lo > at:
                self.steps.append((loop, self._slices(at, lo)))
            signature, base, stride = body_plan(table, lo, p)
            self.steps.append((compiled_body(signature), ((hi - lo) // p, base, stride)))
            self.rolled_ops += hi - lo
            at = hi
        if at < len(t.code):
            self.steps.append((loop, self._slices(at, len(t.code))))

    def _slices(self, lo, hi):
        t = self.tape
        return t.code[lo:hi], t.a[lo:hi], t.b[lo:hi], t.c[lo:hi], t.out[lo:hi]

    def __call__(self, *args):
        t = self.tape
        buf = np.empty(t.n_slots)
        buf[t.const_slots] = t.const_vals
        for s, x in zip(t.in_slots, args):
            buf[s] = x
        for fn, a in self.steps:
            fn(*a, buf)
        vals = buf[t.out_slots]
        return tuple(k(v) for k, v in zip(t.out_types, vals))


def _compile(ol):
    if not tape.supports(ol):
        raise ValueError("the rolled tape runs scalar float64 op lists only")
    return RolledKernel(ol)


from . import register_backend  # noqa: E402

register_backend("rolled", _compile)
