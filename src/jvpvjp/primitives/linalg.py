"""Matrix multiplication: one strict primitive, op(a) @ op(b) for (..., m, k) @ (..., k, n)
with equal batch dimensions, where op transposes the last two axes when the flag ``ta`` /
``tb`` is set (as BLAS's gemm does). `numpy_api.matmul` reduces NumPy's 1-D and
broadcasting cases to it. The flags let reverse mode multiply by transposes without
materialising them: a transposed operand costs nothing in BLAS, a transposed copy does."""
from __future__ import annotations

import numpy as np

from ..sparsity import matmul_pairs
from . import OPAQUE, Case, Primitive, batch_all, flat_as, item_shape, typed


def _core(shape, t):
    return (shape[-1], shape[-2]) if t else (shape[-2], shape[-1])


def _abstract(a, b, ta=False, tb=False):
    (sa, da), (sb, db) = a, b
    if da != db or da.kind not in "fc":
        raise TypeError(f"matmul needs two floating arrays of one dtype, got {da} and {db}")
    if len(sa) < 2 or len(sa) != len(sb) or sa[:-2] != sb[:-2] or \
            _core(sa, ta)[1] != _core(sb, tb)[0]:
        raise ValueError(f"matmul: shapes {sa} and {sb} are not aligned")
    return sa[:-2] + (_core(sa, ta)[0], _core(sb, tb)[1]), da


def _swapped(x, t):
    return np.swapaxes(x, -1, -2) if t else x


def _impl(a, b, ta=False, tb=False):
    return np.matmul(_swapped(np.asarray(a), ta), _swapped(np.asarray(b), tb))


def _jvp(primals, tangents, out, ta=False, tb=False):
    (a, b), (da, db) = primals, tangents
    terms = ([matmul(da, b, ta=ta, tb=tb)] if da is not None else []) + \
            ([matmul(a, db, ta=ta, tb=tb)] if db is not None else [])
    if not terms:
        return None
    return terms[0] if len(terms) == 1 else terms[0] + terms[1]


def _vjp(ct, primals, out, needs, ta=False, tb=False):
    # out = A @ B with A = op(a), B = op(b): ct_A = ct @ B^T, ct_B = A^T @ ct, and a
    # transposed operand takes the transpose of its cotangent.
    a, b = primals
    ca = cb = None
    if needs[0]:
        ca = matmul(b, ct, ta=tb, tb=True) if ta else matmul(ct, b, tb=not tb)
    if needs[1]:
        cb = matmul(ct, a, ta=True, tb=ta) if tb else matmul(a, ct, ta=not ta)
    return (ca, cb)


def _lower(args, op):
    a, b = args
    ta, tb = op.params.get("ta", False), op.params.get("tb", False)
    if op.outvar.ndim == 2:
        return f"({a}{'.T' if ta else ''} @ {b}{'.T' if tb else ''})"
    (sa, _), (sb, _) = op.invars[0].aval, op.invars[1].aval
    batch = int(np.prod(sa[:-2], dtype=np.int64))
    return (f"_shaped(_batched_matmul_{'t' if ta else 'n'}{'t' if tb else 'n'}("
            f"{op.invars[0].dtype.name!r}, "
            f"{flat_as(a, (batch, sa[-2], sa[-1]))}, "
            f"{flat_as(b, (batch, sb[-2], sb[-1]))}), "
            f"{op.outvar.shape!r})")


# Products of at most this many multiply-adds are computed inside the kernel's loop nests,
# element by element (their bias and activation fuse in): BLAS's call costs about 0.2 us,
# a product this small less.
LOOP_MACS = 256


def _loop(arrays, op, idx, out):
    """The lines giving ``out`` the element ``idx`` of a small 2-D product inside a loop
    nest, or None (BLAS)."""
    if op.outvar.ndim != 2 or op.outvar.dtype.kind != "f":
        return None
    ta, tb = op.params.get("ta", False), op.params.get("tb", False)
    m, k = _core(op.invars[0].shape, ta)
    n = _core(op.invars[1].shape, tb)[1]
    if m * n * k > LOOP_MACS:
        return None
    (a, b), (i, j) = arrays, idx
    ea = f"{a}[q, {i}]" if ta else f"{a}[{i}, q]"
    eb = f"{b}[{j}, q]" if tb else f"{b}[q, {j}]"
    return [f"{out} = {typed('0.0', op.outvar.dtype)}", f"for q in range({k}):",
            f"    {out} += {ea} * {eb}"]


def _batching(args, batched, size, ta=False, tb=False):
    from .shape import reshape, transpose
    a, b = args
    ba, bb = batched
    if ba and bb:      # equal batch dimensions, as the primitive needs
        return matmul(a, b, ta=ta, tb=tb)
    item_a, item_b = item_shape(a, ba), item_shape(b, bb)
    if ba and len(item_a) == 2 and not ta:
        # stack the slices' rows: one (size * m, k) @ (k, n) product
        m, k = item_a
        p = matmul(reshape(a, shape=(size * m, k)), b, tb=tb)
        return reshape(p, shape=(size, m, p.shape[-1]))
    if bb and len(item_b) == 2:
        n = item_b[0] if tb else item_b[1]
        m = item_a[1] if ta else item_a[0]
        if n == 1:
            # matrix-vector products side by side: one (m, k) @ (k, size) product
            vecs = reshape(b, shape=(size, item_b[0] * item_b[1]))
            p = matmul(a, vecs, ta=ta, tb=True)                  # (m, size)
            return reshape(transpose(p, perm=(1, 0)), shape=(size, m, 1))
        cols = transpose(b, perm=(2, 0, 1) if tb else (1, 0, 2))     # (k, size, n)
        k = cols.shape[0]
        p = matmul(a, reshape(cols, shape=(k, size * n)), ta=ta)       # (m, size * n)
        return transpose(reshape(p, shape=(m, size, n)), perm=(1, 0, 2))
    return matmul(batch_all(a, ba, size), batch_all(b, bb, size), ta=ta, tb=tb)


def _one_hot(hot, k, args, op):
    """A matrix times a block of one-hot columns (or one-hot rows times a matrix) is a
    gather of the matrix's columns (rows), each scaled by its hot value: the dense product
    only adds zeros to ``A[i, r] * scale``."""
    from .shape import gather, reshape
    a = args[1 - k]
    ta, tb = op.params.get("ta", False), op.params.get("tb", False)
    if len(hot.shape) != 2 or np.ndim(a) != 2:
        return None
    idx, scale = hot.parts()
    size = idx.shape[0]
    col = reshape(idx, shape=(size, 1))
    if k == 1 and hot.shape[0 if tb else 1] == 1:          # op(A) @ (a column)
        rows, inner = a.shape[::-1] if ta else a.shape
        pos = col * rows + np.arange(rows, dtype=np.int64) if ta else \
            col + np.arange(rows, dtype=np.int64) * inner
    elif k == 0 and hot.shape[1 if ta else 0] == 1:        # (a row) @ op(A)
        inner, rows = a.shape[::-1] if tb else a.shape
        pos = col + np.arange(rows, dtype=np.int64) * inner if tb else \
            col * rows + np.arange(rows, dtype=np.int64)
    else:
        return None
    picked = gather(a, pos, bounded=True) * reshape(scale, shape=(size, 1))      # (size, rows)
    return reshape(picked, shape=(size,) + tuple(op.outvar.shape))


matmul = Primitive("matmul", _impl, _abstract, _jvp, _vjp, _lower, contiguous_args=True,
                   kind="product", complex=True, loop=_loop, sparsity=matmul_pairs,
                   batch_rule=_batching, one_hot_rule=_one_hot,
                   tests=[Case(np.matmul, ((3, 4), (4, 2)), ((-2, 2), (-2, 2)), name="mm"),
                          Case(np.matmul, ((2, 3, 4), (2, 4, 2)), ((-2, 2), (-2, 2)),
                               name="batched"),
                          Case(np.matmul, ((4,), (4, 3)), ((-2, 2), (-2, 2)), name="vec_mat"),
                          Case(np.matmul, ((4,), (4,)), ((-2, 2), (-2, 2)), name="dot"),
                          Case(np.matmul, ((2, 1, 3, 4), (5, 4, 2)), ((-2, 2), (-2, 2)),
                               name="broadcast_batch"),
                          Case(lambda a, b: np.dot(a, b), ((3, 4), (4,)),
                               ((-2, 2), (-2, 2)), name="np_dot")])


# -- np.linalg: factorisations and solves ---------------------------------------------------
# Each works on (..., m, n) arrays with equal leading (batch) dimensions (`numpy_api`
# broadcasts). A factorisation with several results returns them packed into one array
# along the last axes (`numpy_api` takes them apart with views), so that every primitive
# keeps one output. The rules are written with NumPy functions on traced values: they emit
# ops like any traced code, so derivatives of any order compose. NumPy's cholesky and eigh
# read only the lower triangle; their derivatives are those of that function (a change to
# the upper triangle changes nothing), so they match finite differences on any input.
from numpy.linalg import LinAlgError  # noqa: E402


def _T(x):
    return np.swapaxes(x, -1, -2)


def _square(name, a):
    shape, dtype = a
    if dtype.kind != "f":
        raise TypeError(f"{name} needs a floating array, got {dtype}")
    if len(shape) < 2 or shape[-1] != shape[-2]:
        raise LinAlgError(f"{name}: last 2 dimensions of the array must be square, got "
                          f"shape {shape}")
    return shape, dtype


def _lower_triangle_input(da):
    """The change of the matrix a routine reading the lower triangle sees."""
    return np.tril(da) + _T(np.tril(da, -1))


def _lower_triangle_cotangent(s):
    """The cotangent of the input of such a routine, given the cotangent ``s`` of the
    symmetric matrix it sees."""
    return np.tril(s) + np.tril(_T(s), -1)


def _eye_like(x):
    n = x.shape[-1]
    return np.broadcast_to(np.eye(n, dtype=x.dtype), tuple(x.shape[:-2]) + (n, n))


def _linalg_lower(helper, reads=None, params=(), double=False):
    """A lowering through a Numba helper that loops over a (batch, ...) stack of matrices:
    the inputs it ``reads`` (positions; default all) flattened to one batch axis, then the
    values of ``params``; the result reshaped back. ``double``: the helper runs float64
    (LAPACK's double-precision routines), other dtypes are cast there and back."""
    def lower(args, op):
        batch = op.invars[0].shape[:-2]
        nb = int(np.prod(batch, dtype=np.int64))
        cast = double and op.outvar.dtype != np.float64
        ins = [flat_as(args[i], (nb,) + op.invars[i].shape[len(batch):])
               + (".astype(np.float64)" if cast else "")
               for i in (range(len(args)) if reads is None else reads)]
        ins += [repr(op.params.get(p, False)) for p in params]
        if helper in OPAQUE:      # first, the dtype it runs on: it names the routine called
            first = "float64" if cast else op.invars[0 if reads is None else reads[0]].dtype
            ins.insert(0, repr(np.dtype(first).name))
        out = f"{helper}({', '.join(ins)})"
        if cast:
            out += f".astype(np.{op.outvar.dtype.name})"
        return f"{out}[0]" if op.outvar.shape == () else \
            f"_shaped({out}, {op.outvar.shape!r})"
    return lower


def _batched(prim):
    """Batching: the batch axis is one more leading (batch) dimension."""
    def rule(args, batched, size, **params):
        return prim(*[batch_all(x, b, size) for x, b in zip(args, batched)], **params)
    return rule


def _linalg(name, impl, abstract, jvp, vjp, helper, tests, reads=None, params=(),
            double=False, **fields):
    prim = Primitive(name, impl, abstract, jvp, vjp,
                     _linalg_lower(helper, reads, params, double), kind="other",
                     tapes=False, tests=tests, **fields)
    prim.batch_rule = _batched(prim)
    return prim


# LU: one factorisation of a matrix serves every solve, inverse and determinant with it.
# `lu` (no derivative) packs LAPACK's getrf result as (..., n, n + 1): the factors, then
# the row interchanges (0-based). The ops that use it take the matrix too and their rules
# differentiate through the matrix, so derivatives of any order are exact; in one program
# `lu(a)` is one op however many solves read it (common subexpressions are merged).
def _lu_numpy(a):
    import sys
    a = np.asarray(a)
    lu_factor = None
    if "scipy.linalg" in sys.modules:         # the getrf Numba's LAPACK also calls (not
        from scipy.linalg import lu_factor    # imported for it: 0.15 s on a first call)
    n = a.shape[-1]
    out = np.empty(a.shape[:-1] + (n + 1,), a.dtype)
    for idx in np.ndindex(a.shape[:-2]):
        if lu_factor is not None:
            import warnings
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")             # singular: reported by solves
                f, piv = lu_factor(a[idx], check_finite=False)
        else:
            f, piv = _lu_python(a[idx])
        out[idx][:, :n] = f
        out[idx][:, n] = piv
    return out


def _lu_python(a):
    """getrf's partial pivoting in NumPy (when SciPy is not installed)."""
    f = np.array(a, dtype=a.dtype, copy=True)
    n = f.shape[0]
    piv = np.arange(n)
    for k in range(n):
        p = k + int(np.argmax(np.abs(f[k:, k])))
        piv[k] = p
        if p != k:
            f[[k, p]] = f[[p, k]]
        if f[k, k] != 0:
            f[k + 1:, k] /= f[k, k]
            f[k + 1:, k + 1:] -= np.outer(f[k + 1:, k], f[k, k + 1:])
    return f, piv


lu = _linalg(
    "lu", _lu_numpy, lambda a: (_square("lu", a)[0][:-1] + (a[0][-1] + 1,), a[1]),
    None, None, "_lu_batched",
    [Case(lambda a: np.linalg.solve(a - 3.0 * np.eye(3), a[:, 0]), ((3, 3),), ((-1, 1),),
          name="lu_of_solve")], double=True, differentiable=False)


def _check_lu(a, f):
    (sa, _), (sf, _) = a, f
    if sf != sa[:-1] + (sa[-1] + 1,):
        raise ValueError(f"LU factors of shape {sf} do not belong to a matrix of shape {sa}")


# lu_solve: op(a) x = b for (..., n, n) a, its factors f and (..., n, k) b
def _lu_solve_abstract(a, f, b, trans=False):
    (sa, da), (sb, db) = _square("solve", a), b
    _check_lu(a, f)
    if db != da or len(sb) != len(sa) or sb[:-2] != sa[:-2] or sb[-2] != sa[-1]:
        raise ValueError(f"solve: shapes {sa} and {sb} do not match")
    return sb, da


def _op(x, trans):
    return _T(x) if trans else x


def _lu_solve_jvp(primals, tangents, x, trans=False):
    (a, f, b), (da, _, db) = primals, tangents
    rhs = db
    if da is not None:
        rhs = -(_op(da, trans) @ x) if rhs is None else rhs - _op(da, trans) @ x
    return None if rhs is None else lu_solve(a, f, rhs, trans=trans)


def _lu_solve_vjp(ct, primals, x, needs, trans=False):
    a, f, _ = primals
    gb = lu_solve(a, f, ct, trans=not trans)
    ga = None
    if needs[0]:
        ga = -(x @ _T(gb)) if trans else -(gb @ _T(x))
    return (ga, None, gb if needs[2] else None)


def _lu_solve_impl(a, f, b, trans=False):
    return np.linalg.solve(_T(a) if trans else a, b)


def solve(a, b, trans=False):
    """op(a)^-1 b through the LU factors of ``a`` (shared by every solve with ``a``)."""
    return lu_solve(a, lu(a), b, trans=trans)


lu_solve = _linalg(
    "lu_solve", _lu_solve_impl, _lu_solve_abstract, _lu_solve_jvp, _lu_solve_vjp,
    "_lu_solve_batched", reads=(1, 2), params=("trans",), double=True,
    tests=[Case(lambda a, b: np.linalg.solve(a + 3.0 * np.eye(3), b), ((3, 3), (3, 2)),
                ((-1, 1), (-2, 2)), name="solve"),
           Case(lambda a, b: np.linalg.solve(a + 3.0 * np.eye(3), b), ((2, 3, 3), (3,)),
                ((-1, 1), (-2, 2)), name="solve_batched_vector"),
           Case(lambda a: np.linalg.inv(a + 3.0 * np.eye(3)) @ np.linalg.solve(
               a.T + 3.0 * np.eye(3), a[0]), ((3, 3),), ((-1, 1),), name="inv_and_solve")])


# lu_inverse: a^-1 from the factors (LAPACK's getri)
def _lu_inverse_jvp(primals, tangents, x):
    (a, f), (da, _) = primals, tangents
    return None if da is None else -(x @ da @ x)


def _lu_inverse_vjp(ct, primals, x, needs):
    return (-(_T(x) @ ct @ _T(x)), None)


def _lu_inverse_abstract(a, f):
    _check_lu(a, f)
    return _square("inv", a)


lu_inverse = _linalg(
    "lu_inverse", lambda a, f: np.linalg.inv(a), _lu_inverse_abstract, _lu_inverse_jvp,
    _lu_inverse_vjp, "_lu_inverse_batched",
    [Case(lambda a: np.linalg.inv(a + 3.0 * np.eye(3)), ((3, 3),), ((-1, 1),), name="inv"),
     Case(lambda a: np.linalg.inv(a - 3.0 * np.eye(2)), ((2, 2, 2),), ((-1, 1),),
          name="inv_batched")], reads=(1,), double=True)     # the factors only


def inverse(a):
    return lu_inverse(a, lu(a))


# det
def _det_jvp(primals, tangents, out):
    (a,), (da,) = primals, tangents
    return None if da is None else out * np.trace(solve(a, da), axis1=-2, axis2=-1)


def _det_vjp(ct, primals, out, needs):
    (a,) = primals
    return ((ct * out)[..., None, None] * _T(inverse(a)),)


det = _linalg(
    "det", lambda a: np.linalg.det(a),
    lambda a: (_square("det", a)[0][:-2], a[1]), _det_jvp, _det_vjp, "_det_batched",
    [Case(lambda a: np.linalg.det(a + 3.0 * np.eye(3)), ((3, 3),), ((-1, 1),), name="det"),
     Case(lambda a: np.linalg.det(a - 3.0 * np.eye(2)), ((2, 2, 2),), ((-1, 1),),
          name="det_batched")])


# lu_logdet: packed (..., 2) = (sign, log |det|) from the factors; the sign has no derivative
def _lu_logdet_impl(a, f):
    sign, logabs = np.linalg.slogdet(a)
    return np.stack([sign, logabs], axis=-1)


def _lu_logdet_jvp(primals, tangents, out):
    (a, f), (da, _) = primals, tangents
    if da is None:
        return None
    dl = np.trace(lu_solve(a, f, da), axis1=-2, axis2=-1)
    return np.stack([np.zeros_like(dl), dl], axis=-1)


def _lu_logdet_vjp(ct, primals, out, needs):
    a, f = primals
    return (ct[..., 1][..., None, None] * _T(lu_inverse(a, f)), None)


def _lu_logdet_abstract(a, f):
    _check_lu(a, f)
    return _square("slogdet", a)[0][:-2] + (2,), a[1]


lu_logdet = _linalg(
    "lu_logdet", _lu_logdet_impl, _lu_logdet_abstract, _lu_logdet_jvp, _lu_logdet_vjp,
    "_lu_logdet_batched",
    [Case(lambda a: np.linalg.slogdet(a - 3.0 * np.eye(3))[1] *
          np.linalg.slogdet(a - 3.0 * np.eye(3))[0], ((3, 3),), ((-1, 1),), name="slogdet"),
     Case(lambda a: np.linalg.slogdet(a + 3.0 * np.eye(3)).logabsdet, ((2, 3, 3),),
          ((-1, 1),), name="slogdet_batched")], reads=(1,), double=True)


def slogdet(a):
    return lu_logdet(a, lu(a))


# cholesky: lower L with L L^T = the symmetric matrix of a's lower triangle
def _phi(x):
    """The lower triangle with half the diagonal."""
    return np.tril(x) - 0.5 * x * np.eye(x.shape[-1])


def _cholesky_jvp(primals, tangents, L):
    (a,), (da,) = primals, tangents
    if da is None:
        return None
    s = _lower_triangle_input(da)
    x = solve(L, _T(solve(L, _T(s))))          # L^-1 s L^-T (s symmetric)
    return L @ _phi(x)


def _cholesky_vjp(ct, primals, L, needs):
    p = _phi(_T(L) @ ct)
    s = solve(_T(L), _T(solve(_T(L), _T(p))))  # L^-T p L^-1
    return (_lower_triangle_cotangent(s),)


cholesky = _linalg(
    "cholesky", lambda a: np.linalg.cholesky(a), lambda a: _square("cholesky", a),
    _cholesky_jvp, _cholesky_vjp, "_cholesky_batched",
    [Case(lambda a: np.linalg.cholesky(a @ a.T + 3.0 * np.eye(3)), ((3, 3),),
          name="cholesky"),
     Case(lambda a: np.linalg.cholesky(a + 4.0 * np.eye(3)), ((2, 3, 3),), ((-1, 1),),
          name="cholesky_lower_triangle_only")])


# eigh: packed (..., n, n + 1) = [V | w], distinct eigenvalues
def _eigh_impl(a):
    w, v = np.linalg.eigh(a)
    return np.concatenate([v, w[..., None]], axis=-1)


def _eigh_parts(out):
    n = out.shape[-2]
    return out[..., n], out[..., :n]


def _gaps(w):
    """F[i, j] = 1 / (w[j] - w[i]) off the diagonal, 0 on it (distinct eigenvalues)."""
    eye = np.eye(w.shape[-1])
    d = w[..., None, :] - w[..., :, None]
    return (1.0 - eye) / (d + eye)


def _eigh_summary(a):
    """Eigenvalues and the projections v_i v_i^T (free of the eigenvectors' signs)."""
    w, v = np.linalg.eigh(a)
    proj = v[..., :, None, :] * v[..., None, :, :]
    return np.concatenate([np.reshape(proj, np.shape(w)[:-1] + (-1,)), w], axis=-1)


def _eigh_jvp(primals, tangents, out):
    (a,), (da,) = primals, tangents
    if da is None:
        return None
    w, v = _eigh_parts(out)
    m = _T(v) @ _lower_triangle_input(da) @ v
    dw = np.diagonal(m, axis1=-2, axis2=-1)
    dv = v @ (_gaps(w) * m)
    return np.concatenate([dv, dw[..., None]], axis=-1)


def _eigh_vjp(ct, primals, out, needs):
    w, v = _eigh_parts(out)
    n = w.shape[-1]
    gw, gv = ct[..., n], ct[..., :n]
    inner = _gaps(w) * (_T(v) @ gv) + gw[..., None] * np.eye(n)
    return (_lower_triangle_cotangent(v @ inner @ _T(v)),)


eigh = _linalg(
    "eigh", _eigh_impl, lambda a: (_square("eigh", a)[0][:-1] + (a[0][-1] + 1,), a[1]),
    _eigh_jvp, _eigh_vjp, "_eigh_batched",
    [Case(lambda a: np.linalg.eigh(a + a.T + np.diag([0.0, 3.0, 6.0]))[0], ((3, 3),),
          ((-1, 1),), name="eigvalsh"),
     Case(lambda a: _eigh_summary(a + np.diag([0.0, 3.0, 6.0])), ((2, 3, 3),),
          ((-1, 1),), name="eigh_vectors_lower_triangle"),
     Case(lambda a: np.linalg.eigh(a + np.diag([0.0, 3.0, 6.0]), UPLO="U").eigenvalues,
          ((3, 3),), ((-1, 1),), name="eigh_upper")])


# svd: packed (..., m k + k + k n) = [U | s | Vt] (reduced, k = min(m, n)), distinct
# singular values
def _svd_sizes(shape):
    m, n = shape[-2:]
    k = min(m, n)
    return m, n, k


def _svd_impl(a):
    u, s, vt = np.linalg.svd(a, full_matrices=False)
    lead = a.shape[:-2]
    return np.concatenate([u.reshape(lead + (-1,)), s, vt.reshape(lead + (-1,))], axis=-1)


def svd_parts(out, shape):
    """U, s, Vt out of the packed result of `svd` of an array of ``shape``."""
    m, n, k = _svd_sizes(shape)
    lead = tuple(out.shape[:-1])
    u = np.reshape(out[..., :m * k], lead + (m, k))
    s = out[..., m * k:m * k + k]
    vt = np.reshape(out[..., m * k + k:], lead + (k, n))
    return u, s, vt


def _pack_svd(u, s, vt):
    lead = tuple(s.shape[:-1])
    return np.concatenate([np.reshape(u, lead + (-1,)), s, np.reshape(vt, lead + (-1,))],
                          axis=-1)


def _svd_gaps(s):
    """F[i, j] = 1 / (s[j]^2 - s[i]^2) off the diagonal, 0 on it."""
    eye = np.eye(s.shape[-1])
    s2 = s * s
    d = s2[..., None, :] - s2[..., :, None]
    return (1.0 - eye) / (d + eye)


def _svd_jvp(primals, tangents, out):
    (a,), (da,) = primals, tangents
    if da is None:
        return None
    m, n, k = _svd_sizes(a.shape)
    u, s, vt = svd_parts(out, a.shape)
    v = _T(vt)
    ds_mat = _T(u) @ da @ v
    ds = np.diagonal(ds_mat, axis1=-2, axis2=-1)
    f = _svd_gaps(s)
    dss = ds_mat * s[..., None, :]           # dS diag(s)
    sds = s[..., :, None] * ds_mat           # diag(s) dS
    du = u @ (f * (dss + _T(dss)))
    dv = v @ (f * (sds + _T(sds)))
    if m > n:
        dav = da @ v
        du = du + (dav - u @ (_T(u) @ dav)) / s[..., None, :]
    if n > m:
        dau = _T(da) @ u
        dv = dv + (dau - v @ (_T(v) @ dau)) / s[..., None, :]
    return _pack_svd(du, ds, _T(dv))


def _svd_vjp(ct, primals, out, needs):
    (a,) = primals
    m, n, k = _svd_sizes(a.shape)
    u, s, vt = svd_parts(out, a.shape)
    gu, gs, gvt = svd_parts(ct, a.shape)
    v, gv = _T(vt), _T(gvt)
    f = _svd_gaps(s)
    ju = f * (_T(u) @ gu - _T(gu) @ u)
    jv = f * (_T(v) @ gv - _T(gv) @ v)
    core = ju * s[..., None, :] + gs[..., None] * np.eye(k) + s[..., :, None] * jv
    ga = u @ core @ vt
    if m > n:
        ga = ga + (gu - u @ (_T(u) @ gu)) / s[..., None, :] @ vt
    if n > m:
        ga = ga + u @ _T((gv - v @ (vt @ gv)) / s[..., None, :])
    return (ga,)


def _svd_summary(a):
    """U, s and Vt in one array, each singular pair's sign fixed (the SVD's own choice of
    signs is arbitrary; the products u_i v_i^T and the values are not)."""
    u, s, vt = np.linalg.svd(a, full_matrices=False)
    pairs = u[..., :, None, :] * np.swapaxes(vt, -1, -2)[..., None, :, :]    # (.., m, n, k)
    return np.concatenate([np.reshape(pairs, np.shape(s)[:-1] + (-1,)), s], axis=-1)


def _svd_abstract(a):
    shape, dtype = a
    if dtype.kind != "f":
        raise TypeError(f"svd needs a floating array, got {dtype}")
    if len(shape) < 2:
        raise LinAlgError(f"svd: {len(shape)}-dimensional array given. Array must be at "
                          f"least two-dimensional")
    m, n, k = _svd_sizes(shape)
    return tuple(shape[:-2]) + (m * k + k + k * n,), dtype


svd = _linalg(
    "svd", _svd_impl, _svd_abstract, _svd_jvp, _svd_vjp, "_svd_batched",
    [Case(lambda a: np.linalg.svd(a + np.diag([4.0, 2.0, 1.0]), compute_uv=False),
          ((3, 3),), ((-0.5, 0.5),), name="singular_values"),
     Case(lambda a: _svd_summary(a + np.eye(4, 3) * np.array([4.0, 2.0, 1.0])),
          ((4, 3),), ((-0.3, 0.3),), name="svd_tall"),
     Case(lambda a: _svd_summary(a + np.eye(2, 4) * np.array([3.0, 1.0, 0.0, 0.0])),
          ((2, 2, 4),), ((-0.3, 0.3),), name="svd_wide_batched")])


# qr: packed (..., m k + k n) = [Q | R] (reduced, k = min(m, n)); derivatives for m >= n
def _qr_impl(a):
    q, r = np.linalg.qr(a)
    lead = a.shape[:-2]
    return np.concatenate([q.reshape(lead + (-1,)), r.reshape(lead + (-1,))], axis=-1)


def qr_parts(out, shape):
    m, n, k = _svd_sizes(shape)
    lead = tuple(out.shape[:-1])
    return (np.reshape(out[..., :m * k], lead + (m, k)),
            np.reshape(out[..., m * k:], lead + (k, n)))


def _qr_wide(a):
    m, n = a.shape[-2:]
    if m < n:
        raise NotImplementedError("the derivative of numpy.linalg.qr of a wide matrix "
                                  "(more columns than rows) is not supported")


def _qr_jvp(primals, tangents, out):
    (a,), (da,) = primals, tangents
    if da is None:
        return None
    _qr_wide(a)
    q, r = qr_parts(out, a.shape)
    dx_rinv = _T(solve(_T(r), _T(da)))        # da r^-1
    qt = _T(q) @ dx_rinv
    low = np.tril(qt, -1)
    do = low - _T(low)
    dq = q @ (do - qt) + dx_rinv
    dr = (qt - do) @ r
    lead = tuple(a.shape[:-2])
    return np.concatenate([np.reshape(dq, lead + (-1,)), np.reshape(dr, lead + (-1,))], axis=-1)


def _qr_vjp(ct, primals, out, needs):
    (a,) = primals
    _qr_wide(a)
    q, r = qr_parts(out, a.shape)
    gq, gr = qr_parts(ct, a.shape)
    mm = r @ _T(gr) - _T(gq) @ q
    low = np.tril(mm, -1)
    sym = low + _T(low) + mm * np.eye(mm.shape[-1])
    b = gq + q @ sym
    return (_T(solve(r, _T(b))),)               # b r^-T


def _qr_abstract(a):
    shape, dtype = a
    if dtype.kind != "f":
        raise TypeError(f"qr needs a floating array, got {dtype}")
    if len(shape) < 2:
        raise LinAlgError("qr: array must be at least two-dimensional")
    m, n, k = _svd_sizes(shape)
    return tuple(shape[:-2]) + (m * k + k * n,), dtype


qr = _linalg(
    "qr", _qr_impl, _qr_abstract, _qr_jvp, _qr_vjp, "_qr_batched",
    [Case(lambda a: (lambda q, r: np.concatenate([q.ravel(), r.ravel()]))(
        *np.linalg.qr(a + np.eye(4, 3) * 3.0)), ((4, 3),), ((-1, 1),), avoid=0.0, gap=0.05,
        name="qr_tall"),
     Case(lambda a: np.linalg.qr(a + 3.0 * np.eye(3)).R, ((2, 3, 3),), ((-1, 1),),
          avoid=0.0, gap=0.05, name="qr_batched")])
# (LAPACK's Householder QR is not continuous where a column is zero below the diagonal:
# the reflection is skipped and the sign of R's diagonal flips; the cases stay off there)
