"""The vector tape: one precompiled Numba loop runs long op lists over small arrays.

Design notes
------------
`tape` runs unrolled scalar programs; this module does the same for arrays. An op list is
encoded once, in Python, into fixed-width int64 instructions over one float64 value
buffer, and run by one loop (`loop_source`: `_run_py`'s own instructions, the template,
plus a branch per elementwise primitive), compiled once per machine and kept in the
kernel disk cache: a program of
10^4 array ops costs its encoding (a few microseconds per op) and no Numba compile.

* Buffer. Every Var lives at an offset of one flat float64 buffer (C order); booleans are
  stored as 0.0 / 1.0. Constants come first, written once at encode time and never
  overwritten; then inputs, then regions handed out by a size-keyed free list as values
  die (liveness computed once), so a long chain over one shape reuses a few regions.
* Views. ``reshape``, identities (``stop_gradient``, custom rules), same-storage
  ``convert``, and ``broadcast_to`` / ``transpose`` whose result is contiguous alias
  their operand's offset. Other broadcasts and transposes are *views* (offset +
  strides) that cost nothing until read: an elementwise op reads a scalar broadcast with
  stride 0; a reduction or concatenation folds the view into its own strided copy;
  anything else materialises it once.
* Elementwise operands are read with stride 1 (same size as the result) or 0 (one
  element); any other broadcast goes through one strided copy (up to 6 dims) to scratch.
* Reductions: reduced axes trailing -> a contiguous block reduce (sums pairwise, in
  NumPy's order, so they usually agree bit for bit); leading -> column reduce (NumPy's
  sequential order); otherwise a strided copy puts them last first.
* matmul is explicit loops (BLAS would need SciPy inside Numba), gather / scatter_add
  read int64 tables stored beside the code.

Elementwise arithmetic (+ - * /, sqrt, square, abs, sign, neg, maximum/minimum with
NumPy's NaN and signed-zero rules, comparisons, logical ops, where) is bit-for-bit
NumPy's. Transcendental functions (exp, log, tan, tanh, pow, arctan2, ...) call the C
library inside Numba, while NumPy uses its own SIMD (SVML) loops on AVX-512 machines:
they may differ in the last bit or two, as the other compiled backends do.
"""
from __future__ import annotations

import math
import threading

import numpy as np

MAX_RANK = 6
W = 10                     # fields per instruction: op, out, n, a, sa, b, sb, c, sc, x

# Opcodes: the loop's own instructions, then one per elementwise primitive (`opcodes`).
COPY, COPYND, RROWS, RCOLS, MATMUL, GATHER, SCATTER, TOBOOL, CUMSUM = range(9)
_N_OWN = 9

# reduction kinds (field sb of RROWS / RCOLS)
K_SUM_PW, K_SUM, K_MAX, K_MIN, K_PROD = range(5)

# how this backend runs the primitives that are not elementwise or views
_REDUCE = {"reduce_sum": K_SUM, "reduce_max": K_MAX, "reduce_min": K_MIN,
           "reduce_prod": K_PROD}
_OWN = {"convert", "matmul", "concatenate", "gather", "scatter_add", "cumsum"}

_F64, _BOOL = np.dtype(np.float64), np.dtype(np.bool_)


# -- the interpreter loop ------------------------------------------------------------------
def _pairwise_py(buf, a, n):
    """NumPy's pairwise summation of buf[a:a+n] (numpy/_core/src/umath/loops_utils.h)."""
    if n < 8:
        res = 0.0
        for i in range(n):
            res += buf[a + i]
        return res
    if n <= 128:
        r0 = buf[a]
        r1 = buf[a + 1]
        r2 = buf[a + 2]
        r3 = buf[a + 3]
        r4 = buf[a + 4]
        r5 = buf[a + 5]
        r6 = buf[a + 6]
        r7 = buf[a + 7]
        stop = n - n % 8
        i = 8
        while i < stop:
            r0 += buf[a + i]
            r1 += buf[a + i + 1]
            r2 += buf[a + i + 2]
            r3 += buf[a + i + 3]
            r4 += buf[a + i + 4]
            r5 += buf[a + i + 5]
            r6 += buf[a + i + 6]
            r7 += buf[a + i + 7]
            i += 8
        res = ((r0 + r1) + (r2 + r3)) + ((r4 + r5) + (r6 + r7))
        while i < n:
            res += buf[a + i]
            i += 1
        return res
    n2 = n // 2
    n2 -= n2 % 8
    return _pairwise(buf, a, n2) + _pairwise(buf, a + n2, n - n2)   # compiled: itself


def _run_py(code, aux, itab, buf):
    for k in range(code.shape[0] // 10):
        p = k * 10
        op = code[p]
        o = code[p + 1]
        n = code[p + 2]
        a = code[p + 3]
        sa = code[p + 4]
        b = code[p + 5]
        sb = code[p + 6]
        if op == 0:               # copy
            for i in range(n):
                buf[o + i] = buf[a + i * sa]
        elif op == 1:               # strided copy: 6 dims, source and destination strides
            x = code[p + 9]
            d0, d1, d2, d3, d4, d5 = aux[x], aux[x + 1], aux[x + 2], aux[x + 3], \
                aux[x + 4], aux[x + 5]
            s0, s1, s2, s3, s4, s5 = aux[x + 6], aux[x + 7], aux[x + 8], aux[x + 9], \
                aux[x + 10], aux[x + 11]
            t0, t1, t2, t3, t4, t5 = aux[x + 12], aux[x + 13], aux[x + 14], aux[x + 15], \
                aux[x + 16], aux[x + 17]
            for i0 in range(d0):
                a0 = a + i0 * s0
                o0 = o + i0 * t0
                for i1 in range(d1):
                    a1 = a0 + i1 * s1
                    o1 = o0 + i1 * t1
                    for i2 in range(d2):
                        a2 = a1 + i2 * s2
                        o2 = o1 + i2 * t2
                        for i3 in range(d3):
                            a3 = a2 + i3 * s3
                            o3 = o2 + i3 * t3
                            for i4 in range(d4):
                                a4 = a3 + i4 * s4
                                o4 = o3 + i4 * t4
                                for i5 in range(d5):
                                    buf[o4 + i5 * t5] = buf[a4 + i5 * s5]
        elif op == 2:               # n rows of b contiguous elements -> n values
            for j in range(n):
                r = a + j * b
                if sb == 0:
                    buf[o + j] = _pairwise(buf, r, b)
                elif sb == 1:
                    s = 0.0
                    for i in range(b):
                        s += buf[r + i]
                    buf[o + j] = s
                elif sb == 2:
                    s = buf[r]
                    for i in range(1, b):
                        v = buf[r + i]
                        if not (s > v or s != s):
                            s = v
                    buf[o + j] = s
                elif sb == 3:
                    s = buf[r]
                    for i in range(1, b):
                        v = buf[r + i]
                        if not (s < v or s != s):
                            s = v
                    buf[o + j] = s
                else:
                    s = 1.0
                    for i in range(b):
                        s *= buf[r + i]
                    buf[o + j] = s
        elif op == 3:               # b rows of n contiguous elements, summed down columns
            if sb == 4:
                for j in range(n):
                    buf[o + j] = 1.0
            elif sb <= 1:
                for j in range(n):
                    buf[o + j] = 0.0
            else:
                for j in range(n):
                    buf[o + j] = buf[a + j]
            for i in range(0 if sb <= 1 or sb == 4 else 1, b):
                r = a + i * n
                if sb <= 1:
                    for j in range(n):
                        buf[o + j] += buf[r + j]
                elif sb == 2:
                    for j in range(n):
                        s = buf[o + j]
                        v = buf[r + j]
                        if not (s > v or s != s):
                            buf[o + j] = v
                elif sb == 3:
                    for j in range(n):
                        s = buf[o + j]
                        v = buf[r + j]
                        if not (s < v or s != s):
                            buf[o + j] = v
                else:
                    for j in range(n):
                        buf[o + j] *= buf[r + j]
        elif op == 4:               # batched op(A) @ op(B), output contiguous
            x = code[p + 9]
            nb, mm, kk, nn = aux[x], aux[x + 1], aux[x + 2], aux[x + 3]
            sab, sai, sak = aux[x + 4], aux[x + 5], aux[x + 6]
            sbb, sbk, sbj = aux[x + 7], aux[x + 8], aux[x + 9]
            for t in range(nb):
                for i in range(mm):
                    orow = o + (t * mm + i) * nn
                    for j in range(nn):
                        buf[orow + j] = 0.0
                    arow = a + t * sab + i * sai
                    for q in range(kk):
                        av = buf[arow + q * sak]
                        brow = b + t * sbb + q * sbk
                        for j in range(nn):
                            buf[orow + j] += av * buf[brow + j * sbj]
        elif op == 5:               # gather: n positions from itab[x:]
            x = code[p + 9]
            for i in range(n):
                buf[o + i] = buf[a + itab[x + i]]
        elif op == 6:               # scatter_add: b values to positions itab[x:], n outputs
            x = code[p + 9]
            for i in range(n):
                buf[o + i] = 0.0
            for i in range(b):
                buf[o + itab[x + i]] += buf[a + i]
        elif op == 7:               # to_bool
            for i in range(n):
                buf[o + i] = 1.0 if buf[a + i * sa] != 0.0 else 0.0
        elif op == 8:               # cumsum: n rows of b contiguous elements, in order
            if b > 0:
                for j in range(n):
                    r = a + j * b
                    q = o + j * b
                    s = buf[r]
                    buf[q] = s
                    for i in range(1, b):
                        s += buf[r + i]
                        buf[q + i] = s
        # ELEMENTWISE: one branch per elementwise primitive, generated (loop_source)

_opcodes = {}


def opcodes():
    """Elementwise primitive name -> opcode (rebuilt when primitives are added)."""
    from ..primitives import REGISTRY
    if _opcodes.get("n") != len(REGISTRY):
        names = [p.name for p in REGISTRY.values()
                 if p.kind == "elementwise" and p.scalar is not None]
        _opcodes.clear()
        _opcodes.update(table={n: _N_OWN + i for i, n in enumerate(names)}, n=len(REGISTRY))
    return _opcodes["table"]


def supported():
    """Names of the primitives this backend runs."""
    from ..primitives import REGISTRY
    return set(opcodes()) | set(_REDUCE) | _OWN | {
        p.name for p in REGISTRY.values() if p.kind == "view" or p.identity}


def declined():
    """Names of the primitives left to the other tiers (their ``tapes`` field is False)."""
    from ..primitives import REGISTRY
    return {p.name for p in REGISTRY.values() if not p.tapes}


_MARK = "        # ELEMENTWISE: one branch per elementwise primitive, generated (loop_source)\n"


def loop_source():
    """The loop's source: `_run_py`'s own instructions, then one branch per elementwise
    primitive with its ``scalar`` expression, generated from the registry."""
    import inspect
    from ..primitives import REGISTRY
    from .tape import scalar_body
    branches = []
    for name, k in opcodes().items():
        prim = REGISTRY[name]
        loads = [f"e{j} = buf[{r} + i * s{r}]" for j, r in enumerate("abc"[:prim.nin])]
        branches.append(f"        elif op == {k}:               # {name}")
        if prim.nin == 3:
            branches += ["            c = code[p + 7]", "            sc = code[p + 8]"]
        branches.append("            for i in range(n):")
        branches += [f"                {x}" for x in loads]
        branches.append("                buf[o + i] = "
                        + scalar_body(prim, [f"e{j}" for j in range(prim.nin)]))
    run = inspect.getsource(_run_py).replace("def _run_py(", "def kernel(")
    assert _MARK in run
    run = run.replace(_MARK, "\n".join(branches) + "\n")
    pairwise = inspect.getsource(_pairwise_py).replace("def _pairwise_py(", "def _pairwise(")
    deco = "@njit(cache=True, error_model='numpy')\n"
    return ("import numpy as np\nfrom numba import njit\n\n\n" + deco + pairwise + "\n\n"
            + deco + run)


_loop = []
_loop_lock = threading.Lock()


def run_loop():
    """The compiled interpreter loop (Numba is imported on first use, not with jvpvjp;
    its machine code is in the kernel disk cache after the first time on a machine)."""
    if not _loop or _loop[0][0] != len(opcodes()):
        with _loop_lock:
            if not _loop or _loop[0][0] != len(opcodes()):
                from .numba_backend import precompiled
                z = np.zeros(0, np.int64)
                fn = precompiled(loop_source(), z, z, z, np.zeros(1))
                _loop[:] = [(len(opcodes()), fn)]
    return _loop[0][1]


def warm_up():
    """Load (or, once per machine, compile) the loop now, so no call waits for it."""
    run_loop()


# -- what the tape runs --------------------------------------------------------------------
def _value_ok(v):
    return v.dtype in (_F64, _BOOL) and len(v.shape) <= MAX_RANK


def supports(ol):
    """Op lists of float64 / bool values (int64 only as constant gather / scatter_add
    position tables, in bounds) over at most 6 dims, made of the ops the tape runs."""
    for v in ol.invars:
        if not _value_ok(v):
            return False
    table_ok = set()
    for v, c in ol.consts.items():
        if not _value_ok(v):
            if v.dtype.kind not in "iu" or len(v.shape) > 32:
                return False
            table_ok.add(v)        # checked at each use below
    tables = {}
    table, names = opcodes(), supported()
    for op in ol.ops:
        out = op.outvar
        if not _value_ok(out):
            return False
        name = op.prim.name
        if name not in names:
            return False
        ins = op.invars
        if name == "gather" or name == "scatter_add":
            x, idx = ins
            if idx not in table_ok or not _value_ok(x):
                return False
            if name == "scatter_add" and (out.dtype != _F64):
                return False
            size = x.size if name == "gather" else out.size
            lo = -size if name == "gather" else 0
            t = ol.consts[idx]
            key = (id(idx), lo, size)
            if key not in tables:
                t = np.asarray(t)
                tables[key] = t.size == 0 or (int(t.min()) >= lo and int(t.max()) < size)
            if not tables[key]:
                return False
            continue
        for v in ins:
            if v in table_ok:       # an integer table anywhere else
                return False
        if name in table and name != "where" and not _boolean(op.prim):
            if out.dtype != _F64:      # arithmetic on booleans: NumPy's rules differ
                return False
        elif name == "matmul":
            if out.dtype != _F64 or ins[0].dtype != _F64 or ins[1].dtype != _F64:
                return False
        elif name in ("reduce_max", "reduce_min"):
            axes = op.params["axes"]
            if out.size and any(ins[0].shape[ax] == 0 for ax in axes):
                return False
    for v in list(ol.outvars) + [g.var for g in ol.guards]:
        if v in table_ok or not _value_ok(v):
            return False
    return True


# -- encoding ------------------------------------------------------------------------------
def _boolean(prim):
    """An elementwise primitive with a boolean result (comparisons, logical ops)."""
    return np.dtype(prim.abstract_eval(*[((), _F64)] * prim.nin)[1]) == _BOOL


def _contig_strides(shape):
    st, acc = [0] * len(shape), 1
    for i in range(len(shape) - 1, -1, -1):
        st[i] = acc
        acc *= shape[i]
    return st


def _is_contig(shape, strides):
    acc = 1
    for i in range(len(shape) - 1, -1, -1):
        d = shape[i]
        if d != 1:
            if strides[i] != acc:
                return False
            acc *= d
    return True


def _simplify_dims(dims, src, dst):
    """Drop unit dims and merge dims that are contiguous in both source and destination."""
    d2, s2, t2 = [], [], []
    for d, s, t in zip(dims, src, dst):
        if d == 1:
            continue
        if d2 and s2[-1] == s * d and t2[-1] == t * d:
            d2[-1] *= d
            s2[-1] = s
            t2[-1] = t
        else:
            d2.append(d)
            s2.append(s)
            t2.append(t)
    return d2, s2, t2


class _Region:
    __slots__ = ("off", "size", "refs")

    def __init__(self, off, size):
        self.off, self.size, self.refs = off, size, 1


class VectorTapeKernel:
    """Runs an op list on the shared vector interpreter loop; same calling convention as
    the other kernels (inputs in, outputs then guard values out)."""

    def __init__(self, ol):
        self.oplist = ol
        self._code = []
        self._aux = []
        self._tables = []
        self._table_at = {}
        self._n_table = 0
        self._free = {}
        self._top = 0
        # loc[v] = (offset, strides or None (dense), region or None (constant))
        self._loc = loc = {}
        consts = []
        for v, c in ol.consts.items():
            if v.dtype.kind in "iu":
                continue
            loc[v] = (self._top, None, None)
            self._top += v.size
            consts.append(np.asarray(c, np.float64).reshape(-1))
        self.n_const = self._top
        self._const_vals = np.concatenate(consts) if consts else np.zeros(0)
        self._in_plan = []
        for v in ol.invars:
            r = self._alloc(v.size)
            loc[v] = (r.off, None, r)
            self._in_plan.append((r.off, v.size, v.shape == ()))
        self._encode_ops(ol)
        results = list(ol.outvars) + [g.var for g in ol.guards]
        plan = []
        for v in results:
            off = self._dense(v)
            kind = (0 if v.dtype == _F64 else 1) + (2 if v.shape != () else 0)
            plan.append((off, v.size, v.shape, kind))
        self._out_plan = plan
        self.code = np.array(self._code, np.int64)
        self.aux = np.array(self._aux, np.int64)
        self.itab = (np.concatenate(self._tables) if self._tables
                     else np.zeros(0, np.int64)).astype(np.int64, copy=False)
        self.n_slots = max(self._top, 1)
        self.n_instructions = len(self._code) // W
        del self._code, self._aux, self._tables, self._table_at, self._free, self._loc
        self._buf = self._fresh_buffer()
        # the loop, bound at the first call (encoding imports no Numba); opcodes are only
        # ever appended as primitives are added, so a newer loop runs this code too
        self._loop = None
        self._lock = threading.Lock()

    # -- regions -------------------------------------------------------------------------
    def _alloc(self, size):
        lst = self._free.get(size)
        if lst:
            r = lst.pop()
            r.refs = 1
            return r
        r = _Region(self._top, size)
        self._top += size
        return r

    def _release(self, r):
        if r is not None:
            r.refs -= 1
            if r.refs == 0:
                self._free.setdefault(r.size, []).append(r)

    def _emit(self, op, o, n, a=0, sa=0, b=0, sb=0, c=0, sc=0, x=0):
        self._code.extend((op, o, n, a, sa, b, sb, c, sc, x))

    def _copy_nd(self, dims, src_off, src_strides, dst_off, dst_strides):
        d, s, t = _simplify_dims(dims, src_strides, dst_strides)
        if not d:
            self._emit(COPY, dst_off, 1, src_off, 0)
            return
        if len(d) == 1 and t[0] == 1 and s[0] in (0, 1):
            self._emit(COPY, dst_off, d[0], src_off, s[0])
            return
        pad = MAX_RANK - len(d)
        x = len(self._aux)
        self._aux.extend([1] * pad + d + [0] * pad + s + [0] * pad + t)
        self._emit(COPYND, dst_off, 0, src_off, 0, x=x)

    def _dense(self, v):
        """The offset of ``v`` laid out densely, materialising a view once."""
        off, st, reg = self._loc[v]
        if st is None:
            return off
        r = self._alloc(v.size)
        self._copy_nd(v.shape, off, st, r.off, _contig_strides(v.shape))
        self._loc[v] = (r.off, None, r)
        self._release(reg)
        return r.off

    def _strides(self, v):
        off, st, _ = self._loc[v]
        return off, (_contig_strides(v.shape) if st is None else st)

    def _view(self, out, off, strides, reg):
        if strides is not None and _is_contig(out.shape, strides):
            strides = None
        if reg is not None:
            reg.refs += 1
        self._loc[out] = (off, strides, reg)

    def _operand(self, v, shape, n, scratch):
        """(offset, stride) reading ``v`` broadcast to ``shape`` (size ``n``) elementwise."""
        off, st, reg = self._loc[v]
        size = v.size
        if size == 1 or (st is not None and not any(st)):
            return off, 0
        if size == n and (st is None or v.shape == shape):
            return (off if st is None else self._dense(v)), 1
        # a real broadcast: one strided copy to scratch
        src = _contig_strides(v.shape) if st is None else st
        lead = len(shape) - len(v.shape)
        bst = [0] * lead + [s if d == e else 0
                            for s, d, e in zip(src, v.shape, shape[lead:])]
        r = self._alloc(n)
        scratch.append(r)
        self._copy_nd(shape, off, bst, r.off, _contig_strides(shape))
        return r.off, 1

    def _table(self, v, size):
        key = (v, size)
        x = self._table_at.get(key)
        if x is None:
            t = np.asarray(self.oplist.consts[v]).reshape(-1).astype(np.int64)
            t = np.where(t < 0, t + size, t)
            x = self._table_at[key] = self._n_table
            self._tables.append(t)
            self._n_table += t.size
        return x

    # -- ops -----------------------------------------------------------------------------
    def _encode_ops(self, ol):
        last = {}
        for i, op in enumerate(ol.ops):
            for v in op.invars:
                last[v] = i
        forever = len(ol.ops)
        for v in list(ol.outvars) + [g.var for g in ol.guards]:
            last[v] = forever
        loc, emit = self._loc, self._emit
        table = opcodes()
        for v in ol.invars:
            if v not in last:          # an unread input: its region is free at once
                self._release(loc[v][2])
        for i, op in enumerate(ol.ops):
            name = op.prim.name
            out = op.outvar
            ins = op.invars
            scratch = []
            kind = table.get(name)
            if kind is not None:           # elementwise: operands broadcast to the output
                n = out.size
                fields = []
                for v in ins:
                    fields.extend(self._operand(v, out.shape, n, scratch))
                r = self._alloc(n)
                loc[out] = (r.off, None, r)
                emit(kind, r.off, n, *fields)
            elif name == "convert":
                x = ins[0]
                if not (out.dtype == _BOOL and x.dtype != _BOOL):
                    self._view(out, *loc[x])           # same storage: an alias
                else:
                    n = out.size
                    a, sa = self._operand(x, out.shape, n, scratch)
                    r = self._alloc(n)
                    loc[out] = (r.off, None, r)
                    emit(TOBOOL, r.off, n, a, sa)
            elif op.prim.identity:         # stop_gradient, custom rules: the value of x
                self._view(out, *loc[ins[0]])
            elif name == "reshape":
                x = ins[0]
                off, st, reg = loc[x]
                if st is not None and not any(st):      # still one repeated element
                    self._view(out, off, [0] * len(out.shape), reg)
                else:
                    if st is not None:
                        self._dense(x)
                    off, _, reg = loc[x]
                    self._view(out, off, None, reg)
            elif name == "broadcast_to":
                x = ins[0]
                off, st = self._strides(x)
                lead = len(out.shape) - len(x.shape)
                bst = [0] * lead + [s if d == e else 0
                                    for s, d, e in zip(st, x.shape, out.shape[lead:])]
                self._view(out, off, bst, loc[x][2])
            elif name == "transpose":
                x = ins[0]
                off, st = self._strides(x)
                self._view(out, off, [st[p] for p in op.params["perm"]], loc[x][2])
            elif name in _REDUCE:
                self._reduce(op, _REDUCE[name], scratch)
            elif name == "matmul":
                self._matmul(op)
            elif name == "cumsum":
                self._cumsum(op, scratch)
            elif name == "concatenate":
                r = self._alloc(out.size)
                loc[out] = (r.off, None, r)
                axis = op.params["axis"]
                dst = _contig_strides(out.shape)
                start = 0
                for x in ins:
                    off, st = self._strides(x)
                    self._copy_nd(x.shape, off, st, r.off + start * dst[axis], dst)
                    start += x.shape[axis]
            elif name == "gather":
                x, idx = ins
                a = self._dense(x)
                n = out.size
                r = self._alloc(n)
                loc[out] = (r.off, None, r)
                emit(GATHER, r.off, n, a, x=self._table(idx, x.size))
            elif name == "scatter_add":
                x, idx = ins
                a = self._dense(x)
                n = out.size
                r = self._alloc(n)
                loc[out] = (r.off, None, r)
                emit(SCATTER, r.off, n, a, 0, x.size, x=self._table(idx, n))
            else:       # supports() keeps this out
                raise ValueError(f"the vector tape does not run {name}")
            for r in scratch:
                self._release(r)
            for v in ins:
                if last.get(v) == i and v in loc:
                    self._release(loc[v][2])
                    last[v] = -1        # once, however often the op reads it
            if out not in last:        # never read
                self._release(loc[out][2])

    def _reduce(self, op, kind, scratch):
        (x,), out = op.invars, op.outvar
        axes = set(op.params["axes"])
        shape = x.shape
        n = out.size
        m = math.prod(shape[ax] for ax in axes)
        off, st, _ = self._loc[x]
        pattern = [ax in axes for ax, d in enumerate(shape) if d != 1]
        r = self._alloc(n)
        self._loc[out] = (r.off, None, r)
        if st is None and pattern == sorted(pattern):      # reduced axes trailing
            self._emit(RROWS, r.off, n, off, 0, m, K_SUM_PW if kind == K_SUM else kind)
            return
        if st is None and pattern == sorted(pattern, reverse=True):     # leading
            self._emit(RCOLS, r.off, n, off, 0, m, kind)
            return
        # a strided copy puts the reduced axes last, then rows
        off, st = self._strides(x)
        perm = [ax for ax in range(len(shape)) if ax not in axes] + sorted(axes)
        dims = [shape[p] for p in perm]
        t = self._alloc(x.size)
        scratch.append(t)
        self._copy_nd(dims, off, [st[p] for p in perm], t.off, _contig_strides(dims))
        self._emit(RROWS, r.off, n, t.off, 0, m, kind)

    def _cumsum(self, op, scratch):
        (x,), out = op.invars, op.outvar
        axis, shape = op.params["axis"], x.shape
        n, m = x.size, shape[axis]
        rows = n // m if m else 0
        r = self._alloc(n)
        self._loc[out] = (r.off, None, r)
        if axis == len(shape) - 1:
            self._emit(CUMSUM, r.off, rows, self._dense(x), 0, m)
            return
        # the axis last by a strided copy, the running sums, and back
        off, st = self._strides(x)
        perm = [ax for ax in range(len(shape)) if ax != axis] + [axis]
        dims = [shape[p] for p in perm]
        t, u = self._alloc(n), self._alloc(n)
        scratch.extend((t, u))
        self._copy_nd(dims, off, [st[p] for p in perm], t.off, _contig_strides(dims))
        self._emit(CUMSUM, u.off, rows, t.off, 0, m)
        dst = _contig_strides(shape)
        self._copy_nd(dims, u.off, _contig_strides(dims), r.off, [dst[p] for p in perm])

    def _matmul(self, op):
        (xa, xb), out = op.invars, op.outvar
        ta, tb = op.params.get("ta", False), op.params.get("tb", False)
        a, b = self._dense(xa), self._dense(xb)
        sa_, sb_ = xa.shape, xb.shape
        mm, kk = (sa_[-1], sa_[-2]) if ta else (sa_[-2], sa_[-1])
        nn = sb_[-2] if tb else sb_[-1]
        nb = math.prod(sa_[:-2])
        r = self._alloc(out.size)
        self._loc[out] = (r.off, None, r)
        x = len(self._aux)
        self._aux.extend((nb, mm, kk, nn,
                          mm * kk, 1 if ta else kk, mm if ta else 1,
                          kk * nn, 1 if tb else nn, kk if tb else 1))
        self._emit(MATMUL, r.off, out.size, a, 0, b, 0, x=x)

    # -- calls ---------------------------------------------------------------------------
    def _fresh_buffer(self):
        buf = np.empty(self.n_slots)
        buf[:self.n_const] = self._const_vals
        return buf

    def __call__(self, *args):
        if self._lock.acquire(False):
            try:
                return self._run(self._buf, args)
            finally:
                self._lock.release()
        return self._run(self._fresh_buffer(), args)   # another thread holds the buffer

    def _run(self, buf, args):
        for (off, n, scalar), x in zip(self._in_plan, args):
            if scalar:
                buf[off] = x
            else:
                buf[off:off + n] = np.ravel(x)
        loop = self._loop
        if loop is None:
            loop = self._loop = run_loop()
        loop(self.code, self.aux, self.itab, buf)
        res = []
        for off, n, shape, kind in self._out_plan:
            if kind == 0:
                res.append(buf[off])                       # a fresh np.float64
            elif kind == 1:
                res.append(buf[off] != 0.0)                # np.bool_
            elif kind == 2:
                res.append(buf[off:off + n].reshape(shape).copy())
            else:
                res.append((buf[off:off + n] != 0.0).reshape(shape))
        return tuple(res)


def _compile(ol):
    if not supports(ol):
        raise ValueError("the vector tape runs float64/bool op lists of elementwise, shape, "
                         "reduction, matmul, gather and scatter_add ops (at most 6 dims)")
    return VectorTapeKernel(ol)


from . import register_backend  # noqa: E402

register_backend("vtape", _compile)
