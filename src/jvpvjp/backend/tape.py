"""The tape interpreter: one precompiled Numba loop runs long scalar op lists.

Design notes
------------
Generated code compiles in time that grows with the op list (seconds per thousand scalar
ops through Numba), so an unrolled Python loop over scalars of 10^4 to 10^6 steps cannot
go through `numba_backend`. Such op lists are encoded instead as integer opcodes and slot
indices into one float64 buffer, and run by one loop generated from the registry
(`loop_source`), compiled once and cached in the kernel disk cache. The
derivative programs are op lists too, so forward, tangent and adjoint sweeps all run on the
same loop. Booleans are stored as 0.0 / 1.0.
"""
from __future__ import annotations

import threading

import numpy as np

from . import once_per_oplist

_F64 = np.dtype(np.float64)
# The tape's own instructions; every elementwise primitive with a ``scalar`` expression
# follows, in registry order (`opcodes`).
_INTERNAL = {"muladd": "x + y * buf[c[i]]", "mulsub": "x - y * buf[c[i]]", "copy": "x",
             "to_bool": "1.0 if x != 0.0 else 0.0"}


def scalar_body(prim, args):
    """The float64 expression of elementwise ``prim`` on scalar operands ``args`` (names
    or loads), as both tapes store values: booleans as 0.0 / 1.0."""
    expr = prim.scalar.format(*args)
    if np.dtype(prim.abstract_eval(*[((), _F64)] * prim.nin)[1]) == np.bool_:
        return f"1.0 if {expr} else 0.0"
    return expr


_opcodes = {}


def opcodes():
    """Name -> opcode of everything the tape runs (rebuilt when primitives are added)."""
    from ..primitives import REGISTRY
    if _opcodes.get("n") != len(REGISTRY):
        names = list(_INTERNAL) + [p.name for p in REGISTRY.values()
                                   if p.kind == "elementwise" and p.scalar is not None]
        _opcodes["table"] = {n: i for i, n in enumerate(names)}   # (one assignment each:
        _opcodes["n"] = len(REGISTRY)                             # readers never see none)
    return _opcodes["table"]


def loop_source():
    """The interpreter loop's source: one branch per opcode (Numba turns the chain into a
    jump table), generated from the registry so that a new primitive needs no edit here."""
    from ..primitives import REGISTRY
    lines = ["import numpy as np", "from numba import njit", "", "",
             "@njit(cache=True, error_model='numpy')",
             "def kernel(code, a, b, c, out, buf):",
             "    for i in range(code.shape[0]):",
             "        op = code[i]",
             "        x = buf[a[i]]",
             "        y = buf[b[i]]"]
    for name, k in opcodes().items():
        if name in _INTERNAL:
            expr = _INTERNAL[name]
        else:
            expr = scalar_body(REGISTRY[name], ("x", "y", "buf[c[i]]"))
        lines += [f"        {'if' if k == 0 else 'elif'} op == {k}:    # {name}",
                  f"            r = {expr}"]
    lines += ["        else:      # never emitted", "            r = np.nan",
              "        buf[out[i]] = r", ""]
    return "\n".join(lines)


_loop = []
_loop_lock = threading.Lock()


def run_loop():
    """The compiled interpreter loop (Numba is imported on first use, not with jvpvjp;
    its machine code is in the kernel disk cache after the first time on a machine)."""
    if not _loop or _loop[0][0] != len(opcodes()):
        with _loop_lock:
            if not _loop or _loop[0][0] != len(opcodes()):
                from .numba_backend import precompiled
                z = np.zeros(1, np.int64)
                fn = precompiled(loop_source(), np.zeros(1, np.int32), z, z, z, z,
                                 np.zeros(1))
                _loop[:] = [(len(opcodes()), fn)]
    return _loop[0][1]


def warm_up():
    """Load (or, once per machine, compile) the loop now, so no call waits for it."""
    run_loop()


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
    """Scalar float64/bool op lists made of the tape's opcodes (`opcodes`)."""
    def ok(v):
        return v.shape == () and v.dtype in (np.float64, np.bool_)
    if not all(ok(v) for v in ol.invars) or not all(ok(v) for v in ol.consts):
        return False
    table = opcodes()
    for op in ol.ops:
        if not ok(op.outvar):
            return False
        name = op.prim.name
        if name in table or op.prim.kind == "view":
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
        table = opcodes()
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
                code.append(table["muladd" if name == "add" else "mulsub"])
                a.append(slot[other])
                b.append(slot[y])
                c.append(slot[z])
                out.append(slot[op.outvar])
                continue
            if op.prim.kind == "view" or name == "convert":
                if name == "convert" and op.outvar.dtype == np.bool_ and \
                        op.invars[0].dtype != np.bool_:
                    name = "to_bool"
                else:
                    name = "copy"
            args = [slot[v] for v in op.invars] + [zero] * (3 - len(op.invars))
            slot[op.outvar] = len(init)
            init.append(0.0)
            code.append(table[name])
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
        # the loop, bound at the first call (encoding imports no Numba); opcodes are only
        # ever appended as primitives are added, so a newer loop runs this code too
        self._loop = None

    def __call__(self, *args):
        buf = np.empty(self.n_slots)
        buf[self.const_slots] = self.const_vals
        for s, x in zip(self.in_slots, args):
            buf[s] = x
        loop = self._loop
        if loop is None:
            loop = self._loop = run_loop()
        loop(self.code, self.a, self.b, self.c, self.out, buf)
        vals = buf[self.out_slots]
        return tuple(t(v) for t, v in zip(self.out_types, vals))


@once_per_oplist
def encoded(ol):
    """The `TapeKernel` of ``ol``, encoded once (the rolled tape starts from it)."""
    return TapeKernel(ol)


def _compile(ol):
    if not supports(ol):
        raise ValueError("the tape backend runs scalar float64 op lists only")
    return encoded(ol)


from . import register_backend  # noqa: E402

register_backend("tape", _compile)
