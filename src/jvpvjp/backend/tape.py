"""The tape interpreter: one precompiled Numba loop runs long scalar op lists.

Design notes
------------
Generated code compiles in time that grows with the op list (seconds per thousand scalar
ops through Numba), so an unrolled Python loop over scalars of 10^4 to 10^6 steps cannot
go through `numba_backend`. Such op lists are encoded instead as integer opcodes and slot
indices into one float64 buffer, and run by `_run`, compiled once and cached on disk. The
derivative programs are op lists too, so forward, tangent and adjoint sweeps all run on the
same loop. Booleans are stored as 0.0 / 1.0.
"""
from __future__ import annotations

import threading

import numpy as np

# Opcodes: frequent ones first, since the dispatch is a chain of comparisons.
_OPS = ["add", "mul", "sub", "div", "muladd", "mulsub", "neg", "sin", "cos", "exp", "log",
        "tanh", "square", "sqrt", "pow", "copy", "tan", "arcsin", "arccos", "arctan", "sinh",
        "cosh", "abs", "sign", "log1p", "expm1", "arctan2", "maximum", "minimum", "lt", "le",
        "gt", "ge", "eq", "ne", "logical_and", "logical_or", "logical_xor", "logical_not",
        "where", "to_bool"]
OPCODE = {name: i for i, name in enumerate(_OPS)}
_IDENTITY = {"stop_gradient", "reshape", "broadcast_to", "transpose"}


def _run_py(code, a, b, c, out, buf):
    for i in range(code.shape[0]):
        op = code[i]
        x = buf[a[i]]
        y = buf[b[i]]
        if op == 0:
            r = x + y
        elif op == 1:
            r = x * y
        elif op == 2:
            r = x - y
        elif op == 3:
            r = x / y
        elif op == 4:
            r = x + y * buf[c[i]]
        elif op == 5:
            r = x - y * buf[c[i]]
        elif op == 6:
            r = -x
        elif op == 7:
            r = np.sin(x)
        elif op == 8:
            r = np.cos(x)
        elif op == 9:
            r = np.exp(x)
        elif op == 10:
            r = np.log(x)
        elif op == 11:
            r = np.tanh(x)
        elif op == 12:
            r = x * x
        elif op == 13:
            r = np.sqrt(x)
        elif op == 14:
            r = x ** y
        elif op == 15:
            r = x
        elif op == 16:
            r = np.tan(x)
        elif op == 17:
            r = np.arcsin(x)
        elif op == 18:
            r = np.arccos(x)
        elif op == 19:
            r = np.arctan(x)
        elif op == 20:
            r = np.sinh(x)
        elif op == 21:
            r = np.cosh(x)
        elif op == 22:
            r = abs(x)
        elif op == 23:
            r = np.sign(x)
        elif op == 24:
            r = np.log1p(x)
        elif op == 25:
            r = np.expm1(x)
        elif op == 26:
            r = np.arctan2(x, y)
        elif op == 27:
            r = max(x, y) if x == x and y == y else x + y
        elif op == 28:
            r = min(x, y) if x == x and y == y else x + y
        elif op == 29:
            r = 1.0 if x < y else 0.0
        elif op == 30:
            r = 1.0 if x <= y else 0.0
        elif op == 31:
            r = 1.0 if x > y else 0.0
        elif op == 32:
            r = 1.0 if x >= y else 0.0
        elif op == 33:
            r = 1.0 if x == y else 0.0
        elif op == 34:
            r = 1.0 if x != y else 0.0
        elif op == 35:
            r = 1.0 if (x != 0.0 and y != 0.0) else 0.0
        elif op == 36:
            r = 1.0 if (x != 0.0 or y != 0.0) else 0.0
        elif op == 37:
            r = 1.0 if ((x != 0.0) != (y != 0.0)) else 0.0
        elif op == 38:
            r = 1.0 if x == 0.0 else 0.0
        elif op == 39:
            r = y if x != 0.0 else buf[c[i]]
        else:
            r = 1.0 if x != 0.0 else 0.0
        buf[out[i]] = r


_loop = []
_loop_lock = threading.Lock()


def run_loop():
    """The compiled interpreter loop (Numba is imported on first use, not with jvpvjp)."""
    if not _loop:
        with _loop_lock:
            if not _loop:
                from numba import njit
                _loop.append(njit(cache=True, error_model="numpy")(_run_py))
    return _loop[0]


def warm_up():
    """Load (or, once per machine, compile) the loop now, so no call waits for it."""
    z = np.zeros(1, np.int64)
    run_loop()(np.zeros(1, np.int32), z, z, z, z, np.zeros(1))


class _Fusion:
    def __init__(self):
        self.skip, self.into = set(), {}


def _fusable_products(ol):
    """Products read only by one add (either side) or as the subtrahend of one sub: the
    pair becomes one muladd / mulsub instruction (rounded as the two ops are: no FMA)."""
    uses = {}
    for op in ol.ops:
        for v in op.invars:
            uses[v] = uses.get(v, 0) + 1
    for v in list(ol.outvars) + [g.var for g in ol.guards]:
        uses[v] = uses.get(v, 0) + 2
    product = {op.outvar: op for op in ol.ops
               if op.prim.name == "mul" and op.outvar.dtype == np.float64}
    f = _Fusion()
    for op in ol.ops:
        if op.prim.name not in ("add", "sub") or op.outvar.dtype != np.float64:
            continue
        sides = (1, 0) if op.prim.name == "add" else (1,)
        for i in sides:
            m = product.get(op.invars[i])
            if m is not None and uses.get(m.outvar) == 1 and id(m) not in f.skip and \
                    all(v.dtype == np.float64 for v in tuple(m.invars) + (op.invars[1 - i],)):
                f.skip.add(id(m))
                f.into[id(op)] = (op.invars[1 - i], tuple(m.invars))
                break
    return f


def supports(ol):
    """Scalar float64/bool op lists made of the opcodes above."""
    def ok(v):
        return v.shape == () and v.dtype in (np.float64, np.bool_)
    if not all(ok(v) for v in ol.invars) or not all(ok(v) for v in ol.consts):
        return False
    for op in ol.ops:
        if not ok(op.outvar):
            return False
        name = op.prim.name
        if name in OPCODE or name in _IDENTITY:
            continue
        if name == "convert" and all(ok(v) for v in op.invars):
            continue
        return False
    return True


class TapeKernel:
    """Runs an op list on the shared interpreter loop; same calling convention as the
    generated kernels (inputs in, outputs then guard values out)."""

    def __init__(self, ol):
        self.oplist = ol
        slot = {}
        init = []
        for v in list(ol.invars) + list(ol.consts):
            slot[v] = len(init)
            init.append(float(ol.consts[v]) if v in ol.consts else 0.0)
        zero = len(init)
        init.append(0.0)
        code, a, b, c, out = [], [], [], [], []
        fused = _fusable_products(ol)
        for op in ol.ops:
            if id(op) in fused.skip:
                continue
            name = op.prim.name
            product = fused.into.get(id(op))
            if product is not None:     # x + y * z or x - y * z as one instruction
                other, (y, z) = product
                slot[op.outvar] = len(init)
                init.append(0.0)
                code.append(OPCODE["muladd" if name == "add" else "mulsub"])
                a.append(slot[other])
                b.append(slot[y])
                c.append(slot[z])
                out.append(slot[op.outvar])
                continue
            if name in _IDENTITY or name == "convert":
                if name == "convert" and op.outvar.dtype == np.bool_ and \
                        op.invars[0].dtype != np.bool_:
                    name = "to_bool"
                else:
                    name = "copy"
            args = [slot[v] for v in op.invars] + [zero] * (3 - len(op.invars))
            slot[op.outvar] = len(init)
            init.append(0.0)
            code.append(OPCODE[name])
            a.append(args[0])
            b.append(args[1])
            c.append(args[2])
            out.append(slot[op.outvar])
        self.code = np.asarray(code, np.int32)
        self.a, self.b, self.c = (np.asarray(x, np.int64) for x in (a, b, c))
        self.out = np.asarray(out, np.int64)
        # Every slot but the constants (and the zero slot) is written before it is read.
        self.n_slots = len(init)
        self.const_slots = np.asarray([slot[v] for v in ol.consts] + [zero], np.int64)
        self.const_vals = np.asarray([init[i] for i in self.const_slots], np.float64)
        self.in_slots = [slot[v] for v in ol.invars]
        results = list(ol.outvars) + [g.var for g in ol.guards]
        self.out_slots = np.asarray([slot[v] for v in results], np.int64)
        self.out_types = [v.dtype.type for v in results]

    def __call__(self, *args):
        buf = np.empty(self.n_slots)
        buf[self.const_slots] = self.const_vals
        for s, x in zip(self.in_slots, args):
            buf[s] = x
        run_loop()(self.code, self.a, self.b, self.c, self.out, buf)
        vals = buf[self.out_slots]
        return tuple(t(v) for t, v in zip(self.out_types, vals))


def _compile(ol):
    if not supports(ol):
        raise ValueError("the tape backend runs scalar float64 op lists only")
    return TapeKernel(ol)


from . import register_backend  # noqa: E402

register_backend("tape", _compile)
