"""Array results of compiled kernels (small ones, and large ones computed by loop nests)
are written into arrays the caller side passes in, reused across calls only when nothing
else holds them (backend.tiers._direct): a
result the caller keeps, or a view of it, is never written again."""
import re
import threading
import weakref

import numpy as np
import pytest

import jvpvjp
import jvpvjp.testing


def _f(w, x):
    return np.sum(np.tanh(x @ w) ** 2)


def _want(w, x):
    t = np.tanh(x @ w)
    d = 2.0 * t * (1.0 - t * t)
    return np.sum(t ** 2), x.T @ d, d @ w.T


def _args(rng):
    return rng.normal(size=(3, 2)), rng.normal(size=(4, 3))


@pytest.mark.usefixtures("compiled")
def test_kept_results_and_views_are_never_overwritten(rng):
    vg = jvpvjp.value_and_grad(_f, argnums=(0, 1), compile="eager")
    w, x = _args(rng)
    kept = [vg(w * k, x) for k in range(1, 5)]                 # all held
    view = vg(w * 7, x)[1][1][1:]                             # a view only
    view_want = _want(w * 7, x)[2][1:].copy()
    for k in range(10, 20):                                   # more calls, results dropped
        vg(w * k, x)
    for k, (v, (gw, gx)) in zip(range(1, 5), kept):
        want = _want(w * k, x)
        np.testing.assert_allclose(v, want[0], rtol=1e-12)
        np.testing.assert_allclose(gw, want[1], rtol=1e-12, atol=1e-14)
        np.testing.assert_allclose(gx, want[2], rtol=1e-12, atol=1e-14)
    np.testing.assert_allclose(view, view_want, rtol=1e-12, atol=1e-14)
    # results of one call are distinct arrays, and distinct from the kept ones
    ids = {id(a) for _, g in kept for a in g}
    assert len(ids) == 8


@pytest.mark.usefixtures("compiled")
def test_a_loop_that_drops_its_results_reuses_two_sets(rng):
    vg = jvpvjp.value_and_grad(_f, argnums=(0, 1), compile="eager")
    w, x = _args(rng)
    g = vg(w, x)[1]                   # the first call: compiled, run by its wrapper
    seen = []
    for k in range(12):
        v, g = vg(w + k, x)           # the previous g is still bound during the call
        seen.append(weakref.ref(g[0]))
        np.testing.assert_allclose(g[0], _want(w + k, x)[1], rtol=1e-12, atol=1e-14)
    # the arrays of the last ten calls are two objects, alternating (kept by the pool)
    objects = [r() for r in seen[2:]]
    assert all(o is not None for o in objects)
    assert len({id(o) for o in objects}) == 2
    assert all(a is b for a, b in zip(objects[:-2], objects[2:]))


@pytest.mark.usefixtures("compiled")
def test_threads_never_share_result_arrays(rng):
    vg = jvpvjp.value_and_grad(_f, argnums=(0, 1), compile="eager")
    w, x = _args(rng)
    vg(w, x)
    errors = []

    def work(seed):
        try:
            for k in range(300):
                s = seed + k * 1e-3
                v, (gw, gx) = vg(w * s, x)
                want = _want(w * s, x)
                if not (np.allclose(v, want[0], rtol=1e-12) and
                        np.allclose(gw, want[1], rtol=1e-12, atol=1e-14) and
                        np.allclose(gx, want[2], rtol=1e-12, atol=1e-14)):
                    errors.append(seed)
                    return
        except Exception as e:           # reported below
            errors.append(e)

    threads = [threading.Thread(target=work, args=(i + 1.0,)) for i in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == []


@pytest.mark.parametrize("pinned", [True, False])
def test_same_shapes_with_another_dtype_layout_or_writeable_flag(rng, pinned, monkeypatch):
    """The inline cache checks arrays' shapes only while the compiled kernel refuses other
    dtypes, memory layouts and read-only arrays itself: each of those still gets its own
    (right) result, never the float64 kernel's."""
    if pinned:
        monkeypatch.setattr(jvpvjp.config, "backend", "numba")

    def f(a, b):
        return np.sum(np.tanh(a @ b) * a)

    def want(a, b):
        t = np.tanh(a @ b)
        s = a * (1.0 - t * t)
        return np.sum(t * a), t + s @ b.T, a.T @ s

    vg = jvpvjp.value_and_grad(f, argnums=(0, 1), compile="eager")
    a, b = rng.normal(size=(4, 4)), rng.normal(size=(4, 4))
    for _ in range(3):
        vg(a, b)
    ro = a.copy()
    ro.flags.writeable = False
    wide = rng.normal(size=(4, 8))
    for args in [(a.astype(np.float32), b.astype(np.float32)),  # dtype
                 (a.T, b),                                      # F order, same shape
                 (wide[:, ::2], b),                             # strided view
                 (ro, b)]:                                      # read-only
        v, (ga, gb) = vg(*args)
        w = want(*[np.asarray(x, np.float64) for x in args])
        dt = np.result_type(*args)
        assert np.result_type(v) == ga.dtype == gb.dtype == dt
        tol = 1e-12 if dt == np.float64 else 2e-5
        np.testing.assert_allclose(v, w[0], rtol=tol, atol=tol)
        np.testing.assert_allclose(ga, w[1], rtol=tol, atol=tol)
        np.testing.assert_allclose(gb, w[2], rtol=tol, atol=tol)
        v2, _ = vg(a, b)                  # and the float64 path still serves its own
        np.testing.assert_allclose(v2, want(a, b)[0], rtol=1e-12)


@pytest.mark.parametrize("jac", [jvpvjp.jacfwd, jvpvjp.jacrev])
def test_jacobians_with_another_dtype_layout_or_writeable_flag(jac, rng, monkeypatch):
    """A compiled Jacobian is called directly too (its kernel refusing other dtypes, layouts
    and read-only arrays itself): each of those still gets its own right Jacobian, and
    the float64 one keeps serving float64 calls."""
    monkeypatch.setattr(jvpvjp.config, "backend", "numba")
    W = rng.normal(size=(5, 6))

    def f(x):
        return np.tanh(W @ np.sin(x)) * 2.0

    def want(x):
        x = np.asarray(x, np.float64)
        t = np.tanh(W @ np.sin(x))
        return 2.0 * (1 - t * t)[:, None] * W * np.cos(x)[None, :]

    J = jac(f, compile="eager")
    x = rng.normal(size=6)
    for _ in range(3):
        np.testing.assert_allclose(J(x), want(x), rtol=1e-12)
    ro = x.copy()
    ro.flags.writeable = False
    wide = rng.normal(size=12)
    for arg in (x.astype(np.float32), wide[::2], ro):
        got = J(arg)
        tol = 1e-12 if arg.dtype == np.float64 else 2e-5
        assert got.dtype == np.float64 and got.shape == (5, 6)      # (W is float64)
        np.testing.assert_allclose(got, want(arg), rtol=tol, atol=tol)
        np.testing.assert_allclose(J(x), want(x), rtol=1e-12)


@pytest.mark.usefixtures("compiled")
def test_outputs_of_every_kind_through_the_passed_arrays(rng):
    """Outputs that are an input itself, a view of one (transpose), the same value twice,
    booleans and integers: each a distinct new array with the right values, also on later
    calls through the reused arrays."""
    def f(x, y):
        return x, x.T, x * 2.0, x * 2.0, x > 0.5, np.argmax(y, axis=0), y

    g = jvpvjp.jit(f)
    for k in range(4):
        x, y = rng.normal(size=(3, 4)) + k, rng.normal(size=(5, 2))
        want = f(x, y)
        got = g(x, y)
        for a, b in zip(got, want):
            assert type(a) is np.ndarray and a.dtype == b.dtype and a.shape == b.shape
            np.testing.assert_array_equal(a, b)
        assert got[0] is not x and got[6] is not y and got[2] is not got[3]
        assert not np.shares_memory(got[1], x)
        held = [a.copy() for a in got]
        g(x + 1.0, y + 1.0)                 # the held results are not written
        for a, b in zip(got, held):
            np.testing.assert_array_equal(a, b)


@pytest.mark.parametrize("backend", ["numba", "vtape", "numpy"])
def test_large_outputs_returned_twice_are_two_arrays(backend):
    """Outputs too large for the passed arrays are returned: one value returned twice (the
    same expression twice is one value once simplified) comes back as two arrays that
    share no memory."""
    x = np.linspace(0.0, 1.0, 5000)

    def f(x):
        return np.sin(x) * 2.0, np.sin(x) * 2.0, np.cumsum(x), np.cumsum(x)

    with jvpvjp.testing.use_backend(backend):
        got = jvpvjp.jit(f)(x)
    for a, b in zip(got, f(x)):
        np.testing.assert_allclose(a, b, rtol=1e-15)
    for a, b in (got[:2], got[2:]):
        assert not np.shares_memory(a, b)
        a[0] = -1.0
        assert b[0] != -1.0


def test_loop_values_that_are_outputs_are_stored_in_place():
    """A value computed in a loop nest and returned is written straight into its output
    argument: no array of its own, no copy at the end (a value returned twice is copied
    once, into its second place)."""
    from jvpvjp.backend import numba_backend as nb
    ol = jvpvjp.make_oplist(lambda x: (np.sin(x) * 2.0, np.sin(x) * 2.0 + x))(np.ones(5))
    src = nb.generate_source(ol)[0]
    lines = [line.strip() for line in src.splitlines()]
    assert not any(line.startswith("o0[") or line.startswith("o1[") for line in lines), src
    assert sum(line.endswith("= o0") or line.endswith("= o1") for line in lines) == 2, src
    twice = jvpvjp.make_oplist(lambda x: (lambda y: (y, y))(np.sin(x) * 2.0))(np.ones(5))
    lines = [line.strip() for line in nb.generate_source(twice)[0].splitlines()]
    assert sum(line.endswith("= o0") for line in lines) == 1
    assert sum(line.startswith("o1[") for line in lines) == 1
    assert not any(line.startswith("o0[") for line in lines)


def _softmax(x):
    e = np.exp(x - np.max(x))
    return e / np.sum(e)


def _softmax_and_a_later_read(x):
    e = np.exp(x - np.max(x))
    g = e / np.sum(e)
    return g, np.sum(e * g)            # e read again in g's nest, after g's element


def test_a_large_output_takes_the_array_of_a_value_dying_in_its_nest():
    """exp(x - m) is stored for its sum, then divided by it into the output: the output
    is written over exp's array (read and written at the same element), which is then the
    output's passed array (`Out`), not scratch; with ``outputs=False`` a new one. Not when
    the dying value is read after the output's element in that nest: it is scratch, and
    the output is stored into its passed array."""
    from jvpvjp.backend import numba_backend as nb
    x = np.linspace(-3.0, 3.0, 6000)
    allocs = {}
    for f, outputs in ((_softmax, True), (_softmax, False), (_softmax_and_a_later_read, True)):
        src = nb.generate_source(jvpvjp.make_oplist(f)(x), outputs=outputs)[0]
        allocs[f, outputs] = [line.split(" = ")[1] for line in src.splitlines()
                              if re.match(r"\s*v\d+ = (v\d+|_empty|w\d+|o\d+)", line)]
    assert allocs[_softmax, True] == ["o0", "v2"], allocs
    assert allocs[_softmax, False] == ["_empty((6000,), 'float64')", "v2"], allocs
    assert allocs[_softmax_and_a_later_read, True] == ["w0", "o0"], allocs


@pytest.mark.usefixtures("compiled")
def test_large_outputs_of_loop_nests_reuse_memory_the_caller_dropped():
    """A large output computed by a loop nest is written into a passed array too: a loop
    that drops its results gets the same two arrays back (no fresh memory to fault in),
    and one that keeps them gets new ones, never overwritten."""
    x = np.linspace(-3.0, 3.0, 50_000)
    vg = jvpvjp.value_and_grad(lambda x: np.log(np.sum(np.exp(x))), compile="eager")
    vg(x)
    seen = []
    for k in range(10):
        v, g = vg(x * (1.0 + k / 10))
        seen.append(weakref.ref(g))
        e = np.exp(x * (1.0 + k / 10))
        np.testing.assert_allclose(g, e / e.sum(), rtol=1e-12, atol=1e-300)
    objects = [r() for r in seen[2:]]          # kept alive by the pool, alternating
    assert all(o is not None for o in objects)
    assert len({id(o) for o in objects}) == 2
    kept = [vg(x * k)[1] for k in (1.0, 0.5)]
    assert not np.shares_memory(kept[0], kept[1])
    for k, g in zip((1.0, 0.5), kept):
        e = np.exp(x * k)
        np.testing.assert_allclose(g, e / e.sum(), rtol=1e-12, atol=1e-300)


@pytest.mark.usefixtures("compiled")
@pytest.mark.parametrize("f", [_softmax, _softmax_and_a_later_read])
def test_outputs_over_dying_values_are_right_and_new_each_call(f):
    x = np.linspace(-3.0, 3.0, 6000)
    jf = jvpvjp.jit(f, compile="eager")
    vg = jvpvjp.value_and_grad(lambda x: np.sum(f(x) if f is _softmax else f(x)[1]) *
                               np.log(2.0 + x[0] ** 2), compile="eager")
    kept = [(jf(x * k), vg(x * k)) for k in (1.0, 0.5, 2.0)]
    for k, (got, (v, g)) in zip((1.0, 0.5, 2.0), kept):
        with jvpvjp.testing.use_backend("numpy"):
            want = f(x * k)
            want_v, want_g = jvpvjp.value_and_grad(
                lambda x: np.sum(f(x) if f is _softmax else f(x)[1]) *
                np.log(2.0 + x[0] ** 2))(x * k)
        for a, b in zip(jvpvjp.tree_flatten(got)[0], jvpvjp.tree_flatten(want)[0]):
            np.testing.assert_allclose(a, b, rtol=1e-13, atol=1e-300)
        np.testing.assert_allclose(v, want_v, rtol=1e-13)
        np.testing.assert_allclose(g, want_g, rtol=1e-12, atol=1e-15)
    results = [jvpvjp.tree_flatten(r)[0][0] for r, _ in kept] + [g for _, (v, g) in kept]
    for i, a in enumerate(results):
        for b in results[i + 1:]:
            assert not np.shares_memory(a, b)


@pytest.mark.usefixtures("compiled")
def test_jvp_and_vjp_results_are_not_overwritten(rng):
    f = lambda x: np.tanh(x) * x
    x = rng.normal(size=6)
    outs = [jvpvjp.jvp(f, (x * k,), (np.ones(6),)) for k in range(1, 4)]
    for k, (y, t) in zip(range(1, 4), outs):
        np.testing.assert_allclose(y, f(x * k), rtol=1e-14)
        xk = x * k
        np.testing.assert_allclose(t, (1 - np.tanh(xk) ** 2) * xk + np.tanh(xk), rtol=1e-13)
    pulls = [jvpvjp.vjp(f, x * k)[1] for k in range(1, 4)]
    cts = [p(np.ones(6))[0] for p in pulls]
    for k, c in zip(range(1, 4), cts):
        xk = x * k
        np.testing.assert_allclose(c, (1 - np.tanh(xk) ** 2) * xk + np.tanh(xk), rtol=1e-13)


@pytest.mark.parametrize("compile", ["eager", "auto"])
def test_arrays_of_the_other_byte_order(rng, compile):
    """Big-endian arrays give the same values (as native ones), on the general path and
    where the fast path's shape check matches them."""
    vg = jvpvjp.value_and_grad(_f, argnums=(0, 1), compile=compile)
    w, x = _args(rng)
    for _ in range(3):
        vg(w, x)
    for args in [(w.astype(">f8"), x), (w, x.astype(">f8"))] * 2:
        v, (gw, gx) = vg(*args)
        want = _want(w, x)
        np.testing.assert_allclose(v, want[0], rtol=1e-12)
        np.testing.assert_allclose(gw, want[1], rtol=1e-12, atol=1e-14)
        np.testing.assert_allclose(gx, want[2], rtol=1e-12, atol=1e-14)
        assert gw.dtype.isnative and gx.dtype.isnative
