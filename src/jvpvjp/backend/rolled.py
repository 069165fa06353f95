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
  registers; the rest are loads at ``base + j * stride``. A result is stored only when
  something reads it from memory (every repetition's, or the last one's after the loop).
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
    inner one); one that overlaps a taken stretch keeps the largest free piece of its
    repetitions."""
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


def body_source(signature, stores):
    """A Numba function ``kernel(n, base, step, buf)`` running ``n`` repetitions; op k's
    results are stored as ``stores[k]`` says: ``"all"``, ``"last"`` (only the last
    repetition's, after the loop) or ``"none"``."""
    carried = sorted({q for _, srcs in signature for s in srcs if s and s[0] == "last"
                      for q in (s[1],)})
    lines = ["import math", "import numpy as np", "from numba import njit", "", "",
             "@njit(cache=True, error_model='numpy', fastmath=False)",
             "def kernel(n, base, step, buf):"]
    for k, (_, srcs) in enumerate(signature):
        cols = [c for c, s in enumerate(srcs) if s is None] + [3] * (stores[k] != "none")
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
        if stores[k] == "all":
            lines.append(f"        buf[i{k}_3 + j * s{k}_3] = v{k}")
    for k, how in enumerate(stores):
        if how == "last":
            lines.append("    if n > 0:")
            lines.append(f"        buf[i{k}_3 + (n - 1) * s{k}_3] = v{k}")
    lines += ["    return 0", ""]
    return "\n".join(lines)


_bodies = {}
_bodies_lock = threading.Lock()


def compiled_body(signature, stores=None):
    """The compiled loop for a body signature and which results it stores (default: all);
    built once per process, its machine code from the kernel disk cache after the first
    time on a machine."""
    stores = ("all",) * len(signature) if stores is None else tuple(stores)
    key = (signature, stores)
    fn = _bodies.get(key)
    if fn is None:
        with _bodies_lock:
            fn = _bodies.get(key)
            if fn is None:
                from .numba_backend import precompiled
                z = np.zeros((len(signature), 4), np.int64)
                fn = precompiled(body_source(signature, stores), 0, z, z, np.zeros(1))
                _bodies[key] = fn
    return fn


def _store(read):
    """How a loop stores one op's results, given which of them are read."""
    if read[:-1].any():
        return "all"
    return "last" if read[-1] else "none"


def _slots_read(t, table, plans):
    """Which slots some instruction reads from memory, or the kernel returns: only those
    results a loop stores (the rest stay in registers; an unrolled loop's sweeps read
    back few of their values)."""
    read = np.zeros(t.n_slots, bool)
    read[t.out_slots] = True
    on_tape = np.ones(len(table), bool)
    for lo, _, hi, *_ in plans:
        on_tape[lo:hi] = False
    for col in (1, 2, 3):        # the tape's loop loads every operand column
        read[table[on_tape, col]] = True
    for lo, p, hi, signature, base, stride in plans:
        j = np.arange((hi - lo) // p)
        for k, (_, sources) in enumerate(signature):
            for c, src in enumerate(sources):
                if src is None:
                    read[base[k, c] + j * stride[k, c]] = True
                elif src[0] == "last":               # loaded once, before the loop
                    read[base[k, c]] = True
    return read


class RolledKernel:
    """The tape kernel of an op list with its periodic stretches run as compiled loops
    (the same calling convention, the same bits)."""

    def __init__(self, ol):
        self.oplist = ol
        self.tape = t = tape.encoded(ol)
        self._local = threading.local()
        table = np.stack([t.code.astype(np.int64), t.a, t.b, t.c, t.out], axis=1)
        self.steps = []         # (fn, its arguments before the buffer)
        self.rolled_ops = 0
        plans = [(lo, p, hi) + body_plan(table, lo, p) for lo, p, hi in segments(table)]
        read = _slots_read(t, table, plans)
        at = 0
        loop = tape.run_loop()
        for lo, p, hi, signature, base, stride in plans:
            if lo > at:
                self.steps.append((loop, self._slices(at, lo)))
            n = (hi - lo) // p
            stores = [_store(read[b + np.arange(n) * s])
                      for b, s in zip(base[:, 3].tolist(), stride[:, 3].tolist())]
            self.steps.append((compiled_body(signature, stores), (n, base, stride)))
            self.rolled_ops += hi - lo
            at = hi
        if at < len(t.code):
            self.steps.append((loop, self._slices(at, len(t.code))))

    def _slices(self, lo, hi):
        t = self.tape
        return t.code[lo:hi], t.a[lo:hi], t.b[lo:hi], t.c[lo:hi], t.out[lo:hi]

    def _buffer(self):
        """This thread's buffer, constants in place. Kept across calls: every other slot
        is written before it is read (inputs by the call, the rest by the instructions),
        and outputs leave as scalars, so nothing a caller holds aliases it. A long
        program's buffer is megabytes: a fresh one per call cost page faults, and the
        constants (one per step of an unrolled loop, often) a scatter."""
        buf = getattr(self._local, "buf", None)
        if buf is None:
            t = self.tape
            buf = self._local.buf = np.empty(t.n_slots)
            buf[t.const_slots] = t.const_vals
        return buf

    def __call__(self, *args):
        t = self.tape
        buf = self._buffer()
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
