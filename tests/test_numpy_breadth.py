"""NumPy functions built from primitives (no rules of their own): values as NumPy's, both
modes against finite differences, on the interpreter and compiled."""
import os

import numpy as np
import pytest

import jvpvjp
from jvpvjp.testing import check_grads, use_backend

rng = np.random.default_rng(0)
A = rng.uniform(0.2, 0.8, size=(2, 3))        # between the jumps of floor / round / mod
B = rng.uniform(2.2, 2.9, size=(3,))
S = np.array([-1.3, 0.0, 0.7, 2.4])

COMPOSITES = {
    "logaddexp2": (lambda a, b: np.logaddexp2(a, b), (A, B)),
    "heaviside": (lambda a, b: np.heaviside(a - 0.5, b) * a, (A, B)),
    "floor_divide": (lambda a, b: (a * 7.0) // b + a, (A, B)),
    "mod operator": (lambda a, b: (a + 3.0) % b, (A, B)),
    "np.mod": (lambda a, b: np.mod(a + 3.0, b) * b, (A, B)),
    "fix": (lambda a: np.fix(a * 10.0) * a, (A,)),
    "round": (lambda a: np.round(a) + np.round(a, 1) * a + np.around(a, 2), (A,)),
    "sinc": (lambda a: np.sinc(a - 0.5), (A,)),
    "isfinite": (lambda a: np.where(np.isfinite(np.log(a - 0.5)), a, -a), (A,)),
    "isnan/isinf": (lambda a: np.where(np.isnan(np.sqrt(a - 0.5)) | np.isinf(1.0 / a), a, a * a),
                    (A,)),
    "nan_to_num": (lambda a: np.nan_to_num(np.log(a - 0.5), nan=-1.0, neginf=-9.0) * a, (A,)),
}


M = rng.normal(size=(3, 4))
V = rng.normal(size=4)
C3 = rng.normal(size=(2, 3, 4))
U = rng.permutation(20).reshape(5, 4) / 7.0 - 1.0      # distinct values: no ties in sorts


def _put_along(a):
    y = np.zeros_like(a)
    np.put_along_axis(y, np.array([[0], [2], [1]]), a[:, :1] ** 2, 1)
    return y


def _sorted_in_place(a):
    y = a * 1.0
    y.sort(axis=0)
    return y


def _from_lists(x):
    y = np.array([x[0] ** 2, 3.0, x[1] * x[0]])
    z = np.asarray([[x[0], 1.0], [2.0, x[1]]])
    nested = np.stack([[x[0], 1.0], [2.0, x[1]]]) + np.vstack([[x[0], x[1]], [1.0, 2.0]])
    return np.concatenate([y, np.ravel(z @ z), np.r_[x, 5.0, y], np.ravel(np.c_[x, x ** 2]),
                           np.asarray(x), np.array(x, ndmin=2)[0], np.ascontiguousarray(x),
                           np.ravel(nested), np.concatenate([[x[0], 3.0], x])])


def _scipy_rosen(x):
    scipy_optimize = pytest.importorskip("scipy.optimize")
    return scipy_optimize.rosen(x)


MOVEMENT = {
    "tile": (lambda a: np.tile(a, (2, 1, 3)), (M,)),
    "repeat": (lambda a: np.repeat(a, [1, 2, 0], axis=0) + np.repeat(a, 2)[:12].reshape(3, 4),
               (M,)),
    "roll": (lambda a: np.roll(a, 2, axis=1) * np.roll(a, -1), (M,)),
    "flip": (lambda a: np.flip(a) + np.fliplr(a) * np.flipud(a), (M,)),
    "rot90": (lambda a: np.rot90(a, 3), (M,)),
    "diagonal": (lambda c: np.diagonal(c, 1, 1, 2), (C3,)),
    "take": (lambda a: np.take(a, [0, 5, 5, 11]) + np.take(a, [1, 0], axis=1).sum(), (M,)),
    "pad constant": (lambda a: np.pad(a, ((1, 2), (0, 1)), constant_values=3.0), (M,)),
    "pad modes": (lambda a: np.pad(a, 2, mode="reflect").sum() + np.pad(a, 2, "wrap") ** 2
                  + np.pad(a, 2, "edge") * np.pad(a, 2, "symmetric"), (M,)),
    "diag of vector": (lambda v: np.diag(v, 1) @ np.diag(v, 1).T, (V,)),
    "diag of matrix": (lambda a: np.diag(a, -1) + np.diagflat(a[:2, :2]).sum(), (M,)),
    "tril/triu": (lambda a: np.tril(a, 1) + np.triu(a) ** 2 + np.tril(a[0])[:3], (M,)),
    "trace": (lambda a: np.trace(a) + np.trace(a, 1) + np.trace(C3, 0, 1, 2).sum() * a, (M,)),
    "split": (lambda a: np.concatenate([p * (i + 1) for i, p in
                                        enumerate(np.split(a, 2, axis=1))]), (M,)),
    "array_split": (lambda a: np.array_split(a.ravel(), 5)[3], (M,)),
    "hsplit/vsplit": (lambda a: np.hsplit(a, [1, 3])[1] + np.vsplit(a, 3)[2].sum(), (M,)),
    "append": (lambda a, v: np.append(a, v) + np.append(a, a, axis=0).sum(), (M, V)),
    "column_stack": (lambda v: np.column_stack([v, v ** 2]), (V,)),
    "dstack": (lambda a: np.dstack([a, a * 2]), (M,)),
    "block": (lambda a: np.block([[a, a], [a * 2, a]]), (M,)),
    "meshgrid": (lambda v: builtins_sum(m * (i + 1) for i, m in
                                        enumerate(np.meshgrid(v, v[:2] ** 2))), (V,)),
    "where of one argument": (lambda a: a[np.where(a > 0)] ** 2, (M,)),
    "delete": (lambda a: np.delete(a, 1, axis=1), (M,)),
    "put_along_axis": (_put_along, (M,)),
    "reduction where/initial": (lambda a: np.sum(a, where=a > 0) + np.max(a, initial=0.5)
                                + np.max(a, axis=0, where=a < 1, initial=-5.0), (M,)),
    "sort": (lambda a: np.sort(a) * np.arange(4) + np.sort(a, axis=0)[1], (U,)),
    "sort flat": (lambda a: np.sort(a, axis=None)[-3:], (U,)),
    "argsort/take_along_axis": (lambda a: np.take_along_axis(a, np.argsort(a, axis=1),
                                                             axis=1)[:, ::2], (U,)),
    "argmax/argmin index": (lambda a: a[np.arange(5), np.argmax(a, axis=1)]
                            + a.ravel()[a.argmin()] + a[np.argmax(a[:, 0])].sum(), (U,)),
    "median": (lambda a: np.median(a) + np.median(a, axis=0).sum()
               + np.median(a[:, :3], axis=1, keepdims=True).sum(), (U,)),
    "percentile/quantile": (lambda a: np.percentile(a, [10, 50, 95], axis=0)
                            + np.quantile(a, 0.3), (U,)),
    "ndarray.sort": (_sorted_in_place, (U,)),
    "arrays from lists": (_from_lists, (V[:2],)),
    "scipy.optimize.rosen": (_scipy_rosen, (V,)),
}
COMPOSITES.update(MOVEMENT)

MB, Q4, W3 = rng.normal(size=(4, 5)), rng.normal(size=(4, 4)) * 0.5, rng.normal(size=3)
T3, U3 = rng.normal(size=(2, 3, 4)), rng.normal(size=(2, 4, 5))
PRODUCTS = {
    "einsum ij,jk->ik": (lambda a, b: np.einsum("ij,jk->ik", a, b), (M, MB)),
    "einsum bij,bjk->bik": (lambda t, u: np.einsum("bij,bjk->bik", t, u), (T3, U3)),
    "einsum ii-> and ii->i": (lambda q: np.einsum("ii->", q) + np.einsum("ii->i", q), (Q4,)),
    "einsum transpose, sum, outer": (lambda a, w: np.einsum("ij->ji", a) * np.einsum("ij->", a)
                                     + np.einsum("i,j->ji", w, a[0]), (M, W3)),
    "einsum implicit output": (lambda a, b: np.einsum("ij,jk", a, b) + np.einsum("i,i", a[0], a[1]),
                               (M, MB)),
    "einsum ellipsis, broadcast": (lambda t, b: np.einsum("...ij,...jk->...ik", t, U3)
                                   + np.einsum("...ij,jk->...ik", t, b), (T3, MB)),
    "einsum three operands": (lambda a, b, q: np.einsum("ij,jk,lj->ikl", a, b, q), (M, MB, Q4)),
    "einsum bilinear form": (lambda v, q: np.einsum("i,ij,j->", v, q, v), (V, Q4)),
    "einsum diagonal and trace of product": (lambda q, v: np.einsum("ii,i->i", q, v)
                                             + np.einsum("ij,ji->", q, q), (Q4, V)),
    "tensordot": (lambda t, u: np.tensordot(t, u, axes=([0, 2], [0, 1])), (T3, U3)),
    "tensordot integer axes": (lambda a, b: np.tensordot(a, b, 1) + np.tensordot(a, a, 2),
                               (M, MB)),
    "inner/vdot": (lambda a, v: np.inner(a, v) + np.inner(a, a).sum() + np.vdot(a, a * 2),
                   (M, V)),
    "kron": (lambda a, q, v: np.kron(a, q[:2, :3]).sum() + np.kron(v, a[0]), (M, Q4, V)),
    "cross": (lambda a: np.cross(a[:, :3], a[:, 1:]) + np.cross(a[:, :3], a[:, 1:], axis=1),
              (M,)),
    "multi_dot": (lambda a, b, q, v: np.linalg.multi_dot([a, q, b]).sum()
                  + np.linalg.multi_dot([v, q, q, v]), (M, MB, Q4, V)),
    "matrix_power": (lambda q: np.linalg.matrix_power(q, 5) + np.linalg.matrix_power(q, 0)
                     + np.linalg.matrix_power(q, 1), (Q4,)),
    "dot of N-d arrays": (lambda t, u: np.dot(t, u), (T3, U3)),
}
COMPOSITES.update(PRODUCTS)

SQ = rng.normal(size=(4, 4)) + 4.0 * np.eye(4)
SPD = SQ @ SQ.T
SQ3 = rng.normal(size=(2, 3, 3)) + 3.0 * np.eye(3)
TALL, WIDE = rng.normal(size=(5, 3)), rng.normal(size=(3, 5))


def _svd_products(t):
    u, s, vt = np.linalg.svd(t, full_matrices=False)
    return (u * s) @ vt + np.abs(u).sum() + np.abs(vt).sum()


def _qr_parts(t):
    q, r = np.linalg.qr(t)
    return np.concatenate([q.ravel(), r.ravel()])


def _lstsq(t, y):
    x, residuals, rank, s = np.linalg.lstsq(t, y)
    return np.concatenate([x, residuals, s * rank])


LINALG = {
    "solve vector and matrix": (lambda a, b: np.linalg.solve(a, b[:, 0]).sum()
                                + np.linalg.solve(a, b), (SQ, TALL[:4, :2])),
    "solve batched, broadcast": (lambda a: np.linalg.solve(a, a[0, :, :1]), (SQ3,)),
    "inv": (lambda a: np.linalg.inv(a), (SQ,)),
    "det": (lambda a: np.linalg.det(a) + np.linalg.det(SQ3).sum() * a, (SQ,)),
    "slogdet": (lambda a: np.linalg.slogdet(a)[1] * np.linalg.slogdet(a).sign, (SQ3,)),
    "cholesky": (lambda s: np.linalg.cholesky(s), (SPD,)),
    "cholesky reads one triangle": (lambda s: np.linalg.cholesky(s + np.triu(s, 1) * 0.3)
                                    + np.linalg.cholesky(s + np.tril(s, -1) * 0.3, upper=True),
                                    (SPD,)),
    "eigvalsh": (lambda s: np.linalg.eigvalsh(s), (SPD,)),
    "eigh": (lambda s: (lambda w, v: np.concatenate([w, (v[:, 1:2] @ v[:, 1:2].T).ravel()]))(
        *np.linalg.eigh(s + np.triu(s, 1))), (SPD,)),
    "eigh UPLO=U": (lambda s: np.linalg.eigh(s + np.tril(s, -1), UPLO="U")[0], (SPD,)),
    "svd values": (lambda t: np.linalg.svd(t, compute_uv=False) + np.linalg.svdvals(t), (TALL,)),
    "svd tall": (_svd_products, (TALL,)),
    "svd wide": (_svd_products, (WIDE,)),
    "svd square, full_matrices": (lambda a: np.abs(np.linalg.svd(a)[0]), (SQ,)),
    "qr": (_qr_parts, (TALL,)),
    "qr mode r": (lambda t: np.linalg.qr(t, mode="r"), (TALL,)),
    "pinv": (lambda t: np.linalg.pinv(t) + np.linalg.pinv(t.T).T, (TALL,)),
    "lstsq": (_lstsq, (TALL, rng.normal(size=5))),
    "matrix norms": (lambda a: np.stack([np.linalg.norm(a, o) for o in
                                         (None, "fro", "nuc", 1, -1, 2, -2, np.inf, -np.inf)]),
                     (SQ,)),
    "vector norms": (lambda v: np.stack([np.linalg.norm(v, o) for o in
                                         (None, 1, 2, 3, 0.5, np.inf, -np.inf)]), (V,)),
    "norm over axes": (lambda a: np.linalg.norm(SQ3, axis=(1, 2), ord=2)
                       + np.linalg.norm(a, axis=0).sum()
                       + np.linalg.norm(a, ord=1, axis=(0, 1), keepdims=True).sum()
                       + np.linalg.matrix_norm(a, ord="nuc") + np.linalg.vector_norm(a, ord=3),
                       (SQ,)),
    "matrix_power, negative": (lambda a: np.linalg.matrix_power(a, -2), (SQ,)),
}
COMPOSITES.update(LINALG)

W4 = rng.uniform(0.5, 1.5, size=4)
V6 = rng.normal(size=6)
SCANS = {
    "degrees/radians": (lambda a: np.degrees(a) + np.radians(a), (M,)),
    "real/imag/conj/angle of reals": (lambda a: np.real(a) + np.imag(a) + np.conj(a) *
                                      np.conjugate(a) + np.angle(a), (M,)),
    "diff": (lambda a: np.diff(a).sum() + np.diff(a, 2, axis=0).sum()
             + np.diff(a, prepend=0.0, append=a[:, :1]), (M,)),
    "ediff1d": (lambda v: np.ediff1d(v, to_begin=v[:1], to_end=3.0), (V6,)),
    "cumprod": (lambda a: np.cumprod(a, axis=1) + np.cumprod(a).reshape(3, 4)
                + np.cumprod(a, axis=0), (M,)),
    "cumprod, 6 long": (lambda v: np.cumprod(v * 0.5), (V6,)),
    "ptp": (lambda a: np.ptp(a) + np.ptp(a, axis=0), (M,)),
    "average": (lambda a, w: np.average(a, axis=1, weights=w) + np.average(a)
                + np.average(a, weights=a * a).sum(), (M, W4)),
    "average returned": (lambda a, w: np.stack(np.average(a, axis=1, weights=w,
                                                          returned=True)), (M, W4)),
    "gradient": (lambda a: np.gradient(a)[0] + np.gradient(a, 0.5)[1]
                 + np.gradient(a, axis=1), (M,)),
    "convolve": (lambda v, w: np.concatenate([np.convolve(v, w), np.convolve(v, w, "same"),
                                              np.convolve(w, v, "valid")]), (V6, W4)),
    "correlate": (lambda v, w: np.concatenate([np.correlate(v, w), np.correlate(v, w, "full"),
                                               np.correlate(w, v, "same")]), (V6, W4)),
}
COMPOSITES.update(SCANS)


def _flat_assign(x):
    y = np.zeros_like(x)
    y.flat[::2] = x.flat[1::2] ** 2
    y.flat[1] = x.flat[0]
    return y


COMPOSITES.update({
    "linspace": (lambda v, w: np.linspace(v, w, 5) ** 2 + np.linspace(v, 2.0, 4, endpoint=False,
                                                                       axis=1).sum(), (V[:3], W3)),
    "ndarray.flat": (_flat_assign, (M,)),
})
builtins_sum = sum


# Compiled, every composite in the "thorough" profile; in CI a sample of each family (the
# registry tests compile every primitive's own cases).
_THOROUGH = os.environ.get("JVPVJP_HYPOTHESIS_PROFILE", "ci") == "thorough"
COMPILED = sorted(COMPOSITES) if _THOROUGH else sorted(
    ["logaddexp2", "heaviside", "round", "nan_to_num", "tile", "pad modes", "diag of vector",
     "tril/triu", "split", "block", "put_along_axis", "sort", "argmax/argmin index",
     "arrays from lists", "einsum diagonal and trace of product", "kron",
     "solve vector and matrix", "svd tall", "cumprod", "average", "convolve", "linspace",
     "ndarray.flat"])


@pytest.mark.parametrize("name,backend", [(n, "numpy") for n in sorted(COMPOSITES)] +
                         [(n, "numba") for n in COMPILED])
def test_composites_match_numpy_and_finite_differences(name, backend):
    f, args = COMPOSITES[name]
    with np.errstate(all="ignore"):
        want = f(*args)
        with use_backend(backend):
            got = jvpvjp.jit(f)(*args)
            assert np.shape(got) == np.shape(want)
            tol = 1e-10 if name in LINALG else 1e-13       # LAPACK in NumPy and Numba
            np.testing.assert_allclose(got, want, rtol=tol, atol=tol / 10)
            check_grads(f, args, order=1, atol=1e-6, rtol=1e-5)


def test_sinc_at_zero_is_one_with_zero_slope():
    g = jvpvjp.grad(lambda x: np.sum(np.sinc(x)))
    # d/dx sinc(x) = (cos(pi x) - sinc(x)) / x: -4/pi at 1/2, the limit 0 at 0
    np.testing.assert_allclose(g(np.array([0.0, 0.5])), [0.0, -4.0 / np.pi], atol=1e-12)
    assert jvpvjp.jit(lambda x: np.sinc(x))(np.array([0.0]))[0] == 1.0


def test_nan_semantics_of_fmax_and_maximum_differ_as_in_numpy():
    a = np.array([np.nan, 1.0, np.nan, 2.0])
    b = np.array([1.0, np.nan, np.nan, 3.0])
    for backend in ("numpy", "numba", "vtape"):
        with use_backend(backend):
            for fn in (np.fmax, np.fmin, np.maximum, np.minimum):
                np.testing.assert_array_equal(jvpvjp.jit(lambda x, y: fn(x, y))(a, b), fn(a, b))


def test_round_half_to_even_and_integer_derivatives_are_zero():
    x = np.array([0.5, 1.5, 2.5, -0.5, 0.25])
    np.testing.assert_array_equal(jvpvjp.jit(np.round)(x), np.round(x))
    for fn in (np.floor, np.ceil, np.trunc, np.rint, np.fix, np.round):
        np.testing.assert_array_equal(jvpvjp.grad(lambda v: np.sum(fn(v) * v))(S + 0.01),
                                      fn(S + 0.01))


def test_numpy_is_itself_again_after_a_trace_and_other_threads_see_numpy():
    import threading
    originals = np.array, np.asarray, np.r_
    seen = {}

    def f(x):
        t = threading.Thread(target=lambda: seen.update(a=np.array([1.0, 2.0])))
        t.start()
        t.join()
        return np.sum(np.array([x, x * x]))

    assert jvpvjp.grad(f)(2.0) == 5.0
    assert (np.array, np.asarray, np.r_) == originals
    assert type(seen["a"]) is np.ndarray and seen["a"].tolist() == [1.0, 2.0]
    with pytest.raises(ValueError, match="inhomogeneous|sequence"):
        jvpvjp.grad(lambda x: np.sum(np.array([x, [x, x]])))(1.0)
    assert (np.array, np.asarray, np.r_) == originals


def test_predicates_on_traced_values():
    def f(x):
        y = x * 1.0
        if np.allclose(y, x) and np.all(x > -5) and not np.any(np.isnan(x)) and \
                np.array_equal(y, x) and (x > 0).any():
            return np.sum(np.where(np.isclose(x, 0.5), 0.0, x ** 2))
        return np.sum(x)
    x = np.array([0.5, 1.0, 2.0])
    for backend in ("numpy", "numba"):
        with use_backend(backend):
            np.testing.assert_allclose(jvpvjp.grad(f)(x), [0.0, 2.0, 4.0])
            # a replay where the branch flips retraces (the predicates are guards)
            np.testing.assert_allclose(jvpvjp.grad(f)(np.array([-0.5, -1.0, -2.0])),
                                       [1.0, 1.0, 1.0])


def test_traced_index_out_of_bounds_raises_on_replay():
    f = jvpvjp.jit(lambda x, i: x[i] * 2.0)
    assert f(np.arange(3.0), np.int64(2)) == 4.0
    assert f(np.arange(3.0), np.int64(-3)) == 0.0
    with pytest.raises(IndexError, match="out of bounds"):
        f(np.arange(3.0), np.int64(3))


def test_linear_algebra_to_second_order():
    for name in ("solve vector and matrix", "cholesky reads one triangle", "eigh", "svd tall",
                 "qr", "matrix norms"):
        f, args = COMPOSITES[name]
        check_grads(f, args, order=2, atol=1e-5, rtol=1e-4)


def test_singular_matrix_raises_numpys_error_traced_and_replayed():
    f = jvpvjp.grad(lambda a: np.sum(np.linalg.inv(a)))
    f(np.eye(2) * 2.0)
    for backend in ("numpy", "numba"):
        with use_backend(backend), pytest.raises(np.linalg.LinAlgError):
            f(np.ones((2, 2)))


def test_wide_qr_and_full_svd_of_a_rectangle_raise_clearly():
    with pytest.raises(NotImplementedError, match="wide"):
        jvpvjp.grad(lambda a: np.sum(np.linalg.qr(a)[1]))(np.ones((2, 3)) + np.eye(2, 3))
    with pytest.raises(NotImplementedError, match="full_matrices=False"):
        jvpvjp.grad(lambda a: np.sum(np.linalg.svd(a)[1]))(np.ones((3, 2)))


def test_nan_reductions_match_numpy_and_skip_nans_in_the_gradient():
    a = M.copy()
    a[0, 1] = np.nan
    a[2, :] = np.nan
    fns = [np.nansum, np.nanmean, np.nanmax, np.nanmin, np.nanprod, np.nanvar,
           lambda x: np.nanstd(x, ddof=1), lambda x: np.nanmean(x, axis=1),
           lambda x: np.nanmax(x, axis=1), lambda x: np.nanvar(x, axis=1, keepdims=True)]
    import warnings
    for fn in fns:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", RuntimeWarning)
            want = fn(a)
        for backend in ("numpy", "numba") if fn in (np.nansum, np.nanmax) else ("numpy",):
            with use_backend(backend):
                np.testing.assert_allclose(jvpvjp.jit(fn)(a), want, rtol=1e-13)
    g = jvpvjp.grad(lambda x: np.nansum(x) * 2.0)(a)
    np.testing.assert_array_equal(g, np.where(np.isnan(a), 0.0, 2.0))
    g = jvpvjp.grad(lambda x: np.nanmean(x))(a)
    np.testing.assert_allclose(g, np.where(np.isnan(a), 0.0, 1.0 / 7.0))   # 7 numbers


def test_take_along_axis_at_traced_indices_checks_them_along_the_axis():
    """An index past its axis but inside the array (row 0, index 5 of 4: flat position 5,
    in row 1) raises NumPy's IndexError, compiled or not, on a first call and on a later
    call of the same compiled function; in bounds, values and gradients are NumPy's."""
    from jvpvjp.testing import use_backend
    x = np.arange(12.0).reshape(3, 4)

    def f(x, y):
        idx = np.argmax(y, axis=1)[:, None] + 2
        return np.sum(np.take_along_axis(x, idx, axis=1) ** 2)

    ok, bad = np.zeros((3, 4)), np.zeros((3, 4))
    ok[0, 1] = bad[0, 3] = 1.0
    with pytest.raises(IndexError, match="out of bounds for axis 1"):
        f(x, bad)
    for backend in ("numpy", "numba"):
        with use_backend(backend):
            g = jvpvjp.jit(f, compile="eager")
            assert g(x, ok) == f(x, ok)
            with pytest.raises(IndexError, match="index 5 is out of bounds for axis 1"):
                g(x, bad)
            with pytest.raises(IndexError, match="index 5 is out of bounds for axis 1"):
                jvpvjp.grad(f)(x, bad)
            expected = np.zeros_like(x)
            expected[[0, 1, 2], [3, 2, 2]] = 2 * x[[0, 1, 2], [3, 2, 2]]
            np.testing.assert_array_equal(jvpvjp.grad(f)(x, ok), expected)


@pytest.mark.parametrize("backend", ["numpy", "numba"])
def test_take_at_traced_indices(backend, rng):
    """np.take at indices computed in the program: flat or along any axis, indices of any
    shape, negative ones wrapping; values and derivatives as NumPy's, and an index out of
    bounds raises NumPy's IndexError naming the axis."""
    x, y = rng.normal(size=(3, 4, 5)), rng.normal(size=(6, 4))
    cases = [lambda x, y: np.take(x, np.argmax(y, axis=1) * 7),
             lambda x, y: np.take(x, np.argmax(y, axis=1) % 3, axis=0),
             lambda x, y: np.take(x, np.argmax(y, axis=1).reshape(2, 3), axis=1),
             lambda x, y: np.take(x, np.argmax(y, axis=1) - 5, axis=-1)]
    with use_backend(backend):
        for f in cases:
            got = jvpvjp.jit(f, compile="eager")(x, y)
            np.testing.assert_array_equal(got, f(x, y))
            check_grads(lambda v: np.sin(f(v, y)), (x,))
        with pytest.raises(IndexError, match="out of bounds for axis 1 with size 4"):
            jvpvjp.jit(lambda x, y: np.take(x, np.argmax(y, axis=1) + 2, axis=1))(x, y)
