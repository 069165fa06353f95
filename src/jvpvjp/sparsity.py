"""Sparsity patterns of op lists, and the colourings that compress sparse derivatives.

Design notes
------------
* Index-set propagation (as in ADOL-C and CasADi): every value of an op list gets the set
  of differentiated input elements each of its elements depends on, a boolean matrix kept
  as CSR rows (`Deps`). An op's output rows are unions of operand rows, paired by the op's
  structure (`local_pairs`): broadcasting for elementwise ops, the element moved for views
  and shape ops, the reduced elements for reductions, the rows and columns of a product.
  A primitive with its own structure says so on its row (the ``sparsity`` field: gather,
  scatter_add, matmul, the custom-rule op); anything else is taken as dense, a superset,
  never a missed entry. Patterns are structural: an entry is kept even where its value
  happens to be zero at this point, except where a matrix product reads a constant of the
  program (a banded matrix stored dense), whose zeros are zeros at every call.
* Patterns belong to a traced path: a path through a guard has its own op list and its own
  pattern, so a data-dependent pattern is guarded like everything else.
* Colourings: columns that share no row (forward mode) or rows that share no column
  (reverse mode) are seeded together, greedily, largest degree first; Hessians use a star
  colouring (Gebremedhin, Manne and Pothen, "What color is your Jacobian?", 2005), which
  lets a symmetric matrix be recovered from fewer sweeps than a distance-2 colouring.
"""
from __future__ import annotations

import numpy as np

_I64 = np.int64


class Deps:
    """CSR rows of a boolean matrix: which of ``n_cols`` input elements each element of a
    value depends on."""

    __slots__ = ("indptr", "indices", "n_cols")

    def __init__(self, indptr, indices, n_cols):
        self.indptr, self.indices, self.n_cols = indptr, indices, n_cols

    @staticmethod
    def empty(n_rows, n_cols):
        return Deps(np.zeros(n_rows + 1, _I64), np.zeros(0, _I64), n_cols)

    @staticmethod
    def identity(n, n_cols, offset=0):
        return Deps(np.arange(n + 1, dtype=_I64), np.arange(offset, offset + n, dtype=_I64),
                    n_cols)

    @property
    def n_rows(self):
        return len(self.indptr) - 1

    @property
    def nnz(self):
        return int(self.indptr[-1])

    def rows(self):
        """Row index of every stored entry."""
        return np.repeat(np.arange(self.n_rows, dtype=_I64), np.diff(self.indptr))


def _gather_rows(d, src):
    """(row ids into the new matrix, columns) for rows ``src`` of ``d`` (one per pair)."""
    src = np.asarray(src, _I64)
    counts = d.indptr[src + 1] - d.indptr[src]
    total = int(counts.sum())
    if total == 0:
        return np.zeros(0, _I64), np.zeros(0, _I64)
    ends = np.cumsum(counts)
    pos = np.arange(total, dtype=_I64) - np.repeat(ends - counts, counts) \
        + np.repeat(d.indptr[src], counts)
    return np.repeat(np.arange(len(src), dtype=_I64), counts), d.indices[pos]


def compose(n_out, n_cols, parts):
    """The rows of a value from ``parts``: (out positions, operand positions, operand Deps)
    triples, each pairing output element o with operand element i."""
    keys = []
    for o, i, d in parts:
        o = np.asarray(o, _I64).reshape(-1)
        i = np.asarray(i, _I64).reshape(-1)
        if o.size == 0 or d.nnz == 0:
            continue
        which, cols = _gather_rows(d, i)
        keys.append(o[which] * n_cols + cols)
    if not keys:
        return Deps.empty(n_out, n_cols)
    key = np.unique(np.concatenate(keys))
    rows, cols = key // n_cols, key % n_cols
    indptr = np.zeros(n_out + 1, _I64)
    np.cumsum(np.bincount(rows, minlength=n_out), out=indptr[1:])
    return Deps(indptr, cols, n_cols)


def _where(op):
    from .tracing import format_where
    return f" at {format_where(op.where)}" if op.where else ""


class PatternTooDense(ValueError):
    """The pattern of some value would hold more entries than `MAX_ENTRIES`."""


MAX_ENTRIES = 50_000_000


def _dense(op, deps, n_cols):
    """Every output element depends on everything any float operand depends on."""
    cols = [deps[v].indices for v in op.invars if v in deps]
    if not cols:
        return Deps.empty(op.outvar.size, n_cols)
    cols = np.unique(np.concatenate(cols))
    n = op.outvar.size
    if n * cols.size > MAX_ENTRIES:
        raise PatternTooDense(
            f"the derivative of {op.prim.name}{_where(op)} "
            f"is dense ({n} x {cols.size}); a sparse Jacobian would not save work: use "
            f"jacfwd / jacrev")
    return Deps(np.arange(n + 1, dtype=_I64) * cols.size, np.tile(cols, n), n_cols)


def _codes(v):
    return np.arange(v.size, dtype=_I64).reshape(v.shape)


def _broadcast_positions(v, shape):
    """For each element of ``shape``, the element of operand ``v`` broadcasting reads."""
    return np.broadcast_to(_codes(v), shape).reshape(-1)


def local_pairs(op, values):
    """The structure of one op: a list of (operand index, out positions, operand
    positions), or None for dense. ``values`` holds the constants of the program."""
    prim, out = op.prim, op.outvar
    if prim.sparsity is not None:
        return prim.sparsity(op, values)
    kind = prim.kind
    allo = np.arange(out.size, dtype=_I64)
    if kind == "elementwise" or prim.pointwise:
        return [(k, allo, _broadcast_positions(v, out.shape)) for k, v in enumerate(op.invars)]
    if kind == "view":
        src = np.asarray(prim.impl(_codes(op.invars[0]), **op.params)).reshape(-1)
        return [(0, allo, src)]
    if kind == "reduction":
        x = op.invars[0]
        axes = tuple(a % x.ndim for a in op.params.get("axes", tuple(range(x.ndim))))
        kept = tuple(1 if i in axes else d for i, d in enumerate(x.shape))
        dst = np.broadcast_to(np.arange(out.size, dtype=_I64).reshape(kept), x.shape)
        return [(0, dst.reshape(-1), np.arange(x.size, dtype=_I64))]
    if prim.name == "concatenate":
        offsets = np.cumsum([0] + [v.size for v in op.invars])
        coded = prim.impl(*[_codes(v) + o for v, o in zip(op.invars, offsets[:-1])],
                          **op.params).reshape(-1)
        which = np.searchsorted(offsets, coded, side="right") - 1
        return [(k, allo[which == k], coded[which == k] - offsets[k])
                for k in range(len(op.invars))]
    return None


def propagate(ol, input_deps, n_cols):
    """Deps of every value of ``ol`` from ``input_deps`` (Var -> Deps for the inputs that
    carry any); returns the dict (values without dependence are absent)."""
    values = dict(ol.consts)
    deps = {v: d for v, d in input_deps.items() if d.nnz}
    for op in ol.ops:
        if not op.prim.differentiable or op.outvar.dtype.kind not in "fc" or \
                not any(v in deps for v in op.invars):
            continue
        pairs = local_pairs(op, values)
        if pairs is None:
            d = _dense(op, deps, n_cols)
        else:
            d = compose(op.outvar.size, n_cols,
                        [(o, i, deps[op.invars[k]]) for k, o, i in pairs
                         if op.invars[k] in deps])
            if d.nnz > MAX_ENTRIES:
                raise PatternTooDense(
                    f"the derivative of {op.prim.name}"
                    f"{_where(op)} holds {d.nnz} entries, more "
                    f"than {MAX_ENTRIES}: too dense for a sparse Jacobian; use jacfwd / "
                    f"jacrev")
        if d.nnz:
            deps[op.outvar] = d
    return deps


def oplist_pairs(ol, seeded, outputs):
    """(out positions, seeded-input positions) of sub-program ``ol``: output element o of
    the concatenated ``outputs`` (indices into ol.outvars) depends on element i of the
    concatenated inputs with ``seeded[k]`` (the custom-rule op's structure)."""
    sizes = [v.size if s else 0 for v, s in zip(ol.invars, seeded)]
    n = int(sum(sizes))
    offsets = np.cumsum([0] + sizes)
    init = {v: Deps.identity(v.size, n, int(offsets[k]))
            for k, (v, s) in enumerate(zip(ol.invars, seeded)) if s and v.size}
    deps = propagate(ol, init, max(n, 1))
    rows, cols, start = [], [], 0
    for k in outputs:
        v = ol.outvars[k]
        d = deps.get(v)
        if d is None and v in init:
            d = init[v]
        if d is not None:
            rows.append(d.rows() + start)
            cols.append(d.indices)
        start += v.size
    if not rows:
        return np.zeros(0, _I64), np.zeros(0, _I64)
    return np.concatenate(rows), np.concatenate(cols)


def split_positions(positions, sizes):
    """Positions into a concatenation of pieces of ``sizes``: (piece, position in it)."""
    offsets = np.cumsum([0] + list(sizes))
    which = np.searchsorted(offsets, positions, side="right") - 1
    return which, positions - offsets[which]


# -- per-primitive structure (the ``sparsity`` fields) ---------------------------------------
def _const_value(op, k, values):
    v = op.invars[k]
    return values.get(v)


def gather_pairs(op, values):
    idx = _const_value(op, 1, values)
    if idx is None:
        return None       # positions computed at run time: any element may be read
    x = op.invars[0]
    idx = np.asarray(idx, _I64).reshape(-1)
    idx = np.where(idx < 0, idx + x.size, idx)
    return [(0, np.arange(op.outvar.size, dtype=_I64), idx)]


def scatter_add_pairs(op, values):
    idx = _const_value(op, 1, values)
    if idx is None:
        return None
    idx = np.asarray(idx, _I64).reshape(-1)
    idx = np.where(idx < 0, idx + op.outvar.size, idx)
    return [(0, idx, np.arange(op.invars[0].size, dtype=_I64))]


def matmul_pairs(op, values):
    """out[..., i, j] depends on a[..., i, k] and b[..., k, j] for every k, except where the
    other factor is a constant of the program and zero there."""
    a, b = op.invars
    ta, tb = op.params.get("ta", False), op.params.get("tb", False)
    out = op.outvar
    if a.ndim < 2 or b.ndim < 2:
        return None
    batch = out.shape[:-2]
    ca, cb = _codes(a), _codes(b)
    if ta:
        ca = np.swapaxes(ca, -1, -2)
    if tb:
        cb = np.swapaxes(cb, -1, -2)
    va, vb = values.get(a), values.get(b)
    nza = np.ones(ca.shape, bool) if va is None else np.asarray(va) != 0
    nzb = np.ones(cb.shape, bool) if vb is None else np.asarray(vb) != 0
    if ta and va is not None:
        nza = np.swapaxes(nza, -1, -2)
    if tb and vb is not None:
        nzb = np.swapaxes(nzb, -1, -2)
    M, K = ca.shape[-2:]
    N = cb.shape[-1]
    ca = np.broadcast_to(ca, batch + (M, K)).reshape(-1, M, K)
    cb = np.broadcast_to(cb, batch + (K, N)).reshape(-1, K, N)
    nza = np.broadcast_to(nza, batch + (M, K)).reshape(-1, M, K)
    nzb = np.broadcast_to(nzb, batch + (K, N)).reshape(-1, K, N)
    oa, ia, ob, ib = [], [], [], []
    for s in range(ca.shape[0]):
        o = (s * M * N + np.arange(M * N, dtype=_I64)).reshape(M, N)
        ks, js = np.nonzero(nzb[s])            # a[i, k] meets a nonzero b[k, j]
        oa.append(o[:, js].reshape(-1))
        ia.append(ca[s][:, ks].reshape(-1))
        is_, ks = np.nonzero(nza[s])           # b[k, j] meets a nonzero a[i, k]
        ob.append(o[is_, :].reshape(-1))
        ib.append(cb[s][ks, :].reshape(-1))
    cat = np.concatenate
    return [(0, cat(oa), cat(ia)), (1, cat(ob), cat(ib))]


# -- colourings -------------------------------------------------------------------------------
def _csr(rows, cols, n_rows):
    order = np.lexsort((cols, rows))
    rows, cols = rows[order], cols[order]
    indptr = np.zeros(n_rows + 1, _I64)
    np.cumsum(np.bincount(rows, minlength=n_rows), out=indptr[1:])
    return indptr, cols


def color_columns(rows, cols, shape):
    """Greedy colouring of the columns: no two columns of one colour share a row (a
    distance-2 colouring of the column intersection graph), largest degree first.
    Returns (colours per column, number of colours)."""
    m, n = shape
    r_ptr, r_cols = _csr(rows, cols, m)           # row -> columns
    c_ptr, c_rows = _csr(cols, rows, n)           # column -> rows
    color = np.full(n, -1, _I64)
    order = np.argsort(-np.diff(c_ptr), kind="stable")
    n_colors = 0
    for j in order:
        rs = c_rows[c_ptr[j]:c_ptr[j + 1]]
        if rs.size == 0:
            color[j] = 0
            n_colors = max(n_colors, 1)
            continue
        nb = np.concatenate([r_cols[r_ptr[r]:r_ptr[r + 1]] for r in rs])
        used = color[nb]
        used = used[used >= 0]
        c = _smallest_free(used)
        color[j] = c
        n_colors = max(n_colors, c + 1)
    return color, n_colors


def _smallest_free(used):
    if used.size == 0:
        return 0
    taken = np.zeros(int(used.max()) + 2, bool)
    taken[used] = True
    return int(np.argmin(taken))


def star_coloring(rows, cols, n):
    """A star colouring of the adjacency graph of a symmetric pattern (diagonal entries
    ignored): a proper colouring in which every path on four vertices has three colours.
    Greedy, largest degree first; each new colour is checked against the paths that end
    or pass next to the vertex being coloured."""
    off = rows != cols
    ptr, adj = _csr(rows[off], cols[off], n)
    nbrs = [adj[ptr[v]:ptr[v + 1]] for v in range(n)]
    color = np.full(n, -1, _I64)
    order = np.argsort(-np.diff(ptr), kind="stable")
    for v in order:
        forbidden = set()
        nv = nbrs[v]
        cn = color[nv]
        forbidden.update(cn[cn >= 0].tolist())
        colored_nbrs = nv[cn >= 0]
        by_color = {}
        for w in colored_nbrs:
            by_color.setdefault(int(color[w]), []).append(w)
        for w in colored_nbrs:
            cw = color[w]
            for x in nbrs[w]:
                if x == v or color[x] < 0:
                    continue
                # v - w - x - y alternating if v takes color(x) and some y has color(w)
                ys = nbrs[x]
                if np.any((color[ys] == cw) & (ys != w)):
                    forbidden.add(int(color[x]))
            # w1 - v - w - x alternating if color(w1) == color(w) and v takes color(x)
            if len(by_color[int(cw)]) > 1:
                cx = color[nbrs[w]]
                forbidden.update(cx[(cx >= 0) & (nbrs[w] != v)].tolist())
        c = 0
        while c in forbidden:
            c += 1
        color[v] = c
    return color, int(color.max()) + 1 if n else 0


def check_star(rows, cols, color):
    """Whether ``color`` lets every entry of the symmetric pattern be read directly."""
    return recover_symmetric_positions(rows, cols, color) is not None


def recover_symmetric_positions(rows, cols, color):
    """For each entry (i, j): (row of B = H S to read, colour column) such that
    H[i, j] = B[row, col], or None when some entry cannot be read directly."""
    n_colors = int(color.max()) + 1 if color.size else 0
    key = rows * max(n_colors, 1) + color[cols]
    uniq, counts = np.unique(key, return_counts=True)
    alone = dict(zip(uniq.tolist(), (counts == 1).tolist()))
    direct = np.array([alone[k] for k in key.tolist()], bool)
    other = rows != cols
    key_t = cols * max(n_colors, 1) + color[rows]
    direct_t = np.array([alone.get(k, False) for k in key_t.tolist()], bool)
    ok = direct | (other & direct_t)
    if not ok.all():
        return None
    src_row = np.where(direct, rows, cols)
    src_col = np.where(direct, color[cols], color[rows])
    return src_row, src_col
